"""The study's figures, each a function of ``load_results``'s DataFrame returning a Figure.

Scratch and pretrained keep the same two colours in every figure. Functions return a
matplotlib Figure even when data is missing: the axes then say what is missing.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis.results import final_rows  # noqa: E402
from analysis.tables import completed, scaling  # noqa: E402
from trainables.branches import branches  # noqa: E402  (pure Python, no torch)
from trainables.schedule import drop_iterations, lr_at  # noqa: E402

COLOURS = {"scratch": "#d62728", "pretrained": "#1f77b4"}
SCHEDULE_STYLES = ["-", "--", ":", "-."]


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _showcase(done: pd.DataFrame, init: str, objective: str) -> pd.Series | None:
    """The trial drawn for an init: the best result at the longest schedule scored."""
    pool = done[done["init"] == init]
    if pool.empty:
        return None
    pool = pool[pool["schedule"] == pool["schedule"].max()]
    return pool.loc[pool[objective].idxmax()]


def _fork(row: pd.Series) -> int:
    """Where a final row's branch left the trunk: its schedule's first LR drop."""
    return drop_iterations(round(row["max_iterations"] / row["schedule"]), row["schedule"])[0]


def training_curves(df: pd.DataFrame, objective: str = "bbox_AP") -> Figure:
    """AP against iteration: one trial's trunk per init, and each schedule's branch off it.

    One panel per (model, data fraction). The trunk (solid) is evaluated at the peak LR; a
    branch (dashed) leaves it at its schedule's first LR drop (v) and ends at the
    schedule's final result (o) (paper Figs. 1, 3, 4, drawn as trunk and branches). A fork
    past the trunk's last evaluation is joined to it by a dotted line at that last value.
    """
    done = completed(df)
    groups = sorted(done.groupby(["model", "data_fraction"]).groups) if not done.empty else []
    fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(6.5 * max(1, len(groups)), 4.5), squeeze=False)
    if not groups:
        _empty(axes[0, 0], "no schedule result yet")
        fig.suptitle(f"{objective} during training")
        return fig
    for ax, (model, fraction) in zip(axes[0], groups):
        sub = done[(done["model"] == model) & (done["data_fraction"] == fraction)]
        for init in ("scratch", "pretrained"):
            pick = _showcase(sub, init, objective)
            if pick is None:
                continue
            rows = df[df["trial_id"] == pick["trial_id"]]
            trunk = rows[rows["phase"] == "trunk"].sort_values("iteration")
            # Before training the detector's heads are random: AP 0 at iteration 0.
            tx = np.concatenate([[0], trunk["iteration"].to_numpy(float)])
            ty = np.concatenate([[0.0], trunk[objective].to_numpy(float)])
            ax.plot(tx, ty, "-", color=COLOURS[init], marker=".", markersize=5,
                    label=f"{init} trunk (lr {pick['lr']:.3g}, wd {pick['weight_decay']:.2g})")
            finals = rows[(rows["phase"] == "final") & (rows["status"] == "completed")].sort_values("schedule")
            for _, f in finals.iterrows():
                fork = _fork(f)
                y0 = float(np.interp(fork, tx, ty))
                if fork > tx[-1]:  # the trunk was not evaluated up to this fork: dotted, not drawn as known
                    ax.plot([tx[-1], fork], [ty[-1], y0], ":", color=COLOURS[init], alpha=0.6)
                ax.plot([fork, f["iteration"]], [y0, f[objective]], "--", color=COLOURS[init], alpha=0.8)
                ax.plot([fork], [y0], marker="v", color=COLOURS[init], markersize=7, alpha=0.7)
                ax.plot([f["iteration"]], [f[objective]], marker="o", color=COLOURS[init], markersize=7)
                ax.annotate(f"{f['schedule']:g}x", (f["iteration"], f[objective]), textcoords="offset points",
                            xytext=(4, 4), fontsize=8, color=COLOURS[init])
        ax.set_title(f"{model}, data fraction {fraction:g}")
        ax.set_xlabel("iteration")
        ax.set_ylabel(objective)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="dashed: a schedule's cooldown from its first LR drop (v)", title_fontsize=8)
    fig.suptitle(f"{objective} during training: trunk and branches of one trial per init")
    fig.tight_layout()
    return fig


def ap_vs_images(df: pd.DataFrame, objective: str = "bbox_AP") -> Figure:
    """Each schedule's final AP against the images behind it, counting pretraining (the
    argument of paper Fig. 2).

    For each init, the trial of :func:`training_curves`: a pretrained point sits at the
    images its backbone saw in pretraining plus its detection training.
    """
    done = completed(df)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if done.empty:
        _empty(ax, "no schedule result yet")
        return fig
    for init in ("scratch", "pretrained"):
        pick = _showcase(done, init, objective)
        if pick is None:
            continue
        curve = done[done["trial_id"] == pick["trial_id"]].sort_values("schedule")
        offset = curve["pretrain_images_seen"].fillna(0).astype(float) if init == "pretrained" else 0.0
        x = curve["images_seen"].astype(float) + offset
        ax.plot(x, curve[objective], marker="o", markersize=5, color=COLOURS[init],
                label=f"{init} ({pick['arm']}, lr {pick['lr']:.3g})")
        for xi, (_, r) in zip(x, curve.iterrows()):
            ax.annotate(f"{r['schedule']:g}x", (xi, r[objective]), textcoords="offset points", xytext=(4, -10),
                        fontsize=8, color=COLOURS[init])
        if init == "pretrained" and float(np.max(offset)) > 0:
            start = float(curve["pretrain_images_seen"].iloc[0])
            ax.axvspan(0, start, color=COLOURS[init], alpha=0.08)
            ax.text(start / 2, 0.97, "pretraining", transform=ax.get_xaxis_transform(), ha="center", va="top",
                    color=COLOURS[init], fontsize=9)
    ax.set_xlabel("images seen (pretraining + detection training)")
    ax.set_ylabel(f"final {objective}")
    ax.set_title(f"{objective} of each schedule against all images seen")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def landscape(df: pd.DataFrame, objective: str = "bbox_AP") -> Figure:
    """Each schedule's final AP against lr and against weight decay per arm, coloured by
    schedule (every trial gives one point per schedule it scored); best marked.

    Diverged results are drawn hollow at AP 0.
    """
    final = final_rows(df)
    arms = sorted(final["arm"].unique()) if not final.empty else []
    fig, axes = plt.subplots(max(1, len(arms)), 2, figsize=(11, 3.6 * max(1, len(arms))), squeeze=False)
    if not arms:
        _empty(axes[0, 0], "no trial yet")
        _empty(axes[0, 1], "no trial yet")
        return fig
    schedules = sorted(final["schedule"].unique())
    cmap = plt.get_cmap("viridis", max(2, len(schedules)))
    for row, arm in zip(axes, arms):
        sub = final[final["arm"] == arm]
        init = sub["init"].iloc[0]
        best = sub.loc[sub[objective].idxmax()] if sub[objective].notna().any() else None
        for ax, param in zip(row, ("lr", "weight_decay")):
            for k, sched in enumerate(schedules):
                pts = sub[sub["schedule"] == sched]
                if pts.empty:
                    continue
                full = pts[pts["status"] == "completed"]
                other = pts[pts["status"] != "completed"]
                ax.scatter(full[param], full[objective], color=cmap(k), s=36, label=f"{sched:g}x")
                ax.scatter(other[param], other[objective], facecolors="none", edgecolors=cmap(k), s=36)
            if best is not None:
                ax.scatter([best[param]], [best[objective]], marker="*", s=260, color=COLOURS[init],
                           edgecolors="k", zorder=5, label="best")
            ax.set_xscale("log")
            ax.set_xlabel(param + (" (at 16 images)" if param == "lr" else ""))
            ax.set_ylabel(f"final {objective}")
            ax.set_title(f"{arm}", color=COLOURS[init])
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=8, title="schedule (hollow: diverged)", title_fontsize=8)
    fig.tight_layout()
    return fig


def scaling_plot(df: pd.DataFrame, objective: str = "bbox_AP") -> Figure:
    """Best AP against training-set size per init (paper Sec. 5.2)."""
    table = scaling(df, objective)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if table.empty or table["train_images"].nunique() < 2:
        _empty(ax, "the study has a single training-set size" if not table.empty else "no completed trial yet")
        return fig
    for (model, init), group in table.groupby(["model", "init"]):
        ax.plot(group["train_images"], group[objective], marker="o", color=COLOURS[init], label=f"{init} ({model})")
    ax.set_xscale("log")
    ax.set_xlabel("training images")
    ax.set_ylabel(f"best final {objective}")
    ax.set_title("where pre-training starts to matter")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig


def trunk_and_branches(base_iters: int, schedules: tuple[float, ...], warmup_iters: int = 0,
                       warmup_factor: float = 1 / 3) -> Figure:
    """LR against iteration for one trial: a peak-LR trunk and each schedule's cooldown branch.

    What every trial of the study runs (trainables/branches.py), for the README and reports.
    """
    plan = branches(base_iters, tuple(schedules), max(schedules))
    fig, ax = plt.subplots(figsize=(9, 3.4))
    kw = dict(peak_lr=1.0, base_iters=base_iters, warmup_iters=warmup_iters, warmup_factor=warmup_factor)
    trunk_x = np.arange(0, plan[-1].fork)
    ax.plot(trunk_x, [lr_at(int(i), schedule=plan[-1].schedule, **kw) for i in trunk_x], color="0.2", lw=2.2,
            label="trunk (peak LR)")
    colours = ["#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
    for k, b in enumerate(plan):
        colour = colours[k % len(colours)]
        x = np.arange(b.fork, b.end)
        y = [lr_at(int(i), schedule=b.schedule, **kw) for i in x]
        ax.plot([b.fork, b.fork], [1.0, y[0]], ":", color=colour, lw=1.2)
        ax.plot(x, y, color=colour, lw=1.8, label=f"{b.schedule:g}x: branch {b.fork:,} -> {b.end:,}")
        ax.plot([b.fork], [1.0], marker="v", color=colour, markersize=8)
        ax.plot([b.end], [y[-1]], marker="o", color=colour, markersize=6)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("LR / peak LR")
    ax.set_title("one trial: a trunk, and at each schedule's first LR drop (v) a branch evaluated at its end (o)",
                 fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig
