"""The study's figures, each a function of ``load_results``'s DataFrame returning a Figure.

Scratch and pretrained keep the same two colours in every figure. Functions return a
matplotlib Figure even when data is missing: the axes then say what is missing.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis.results import best_row, final_rows  # noqa: E402
from analysis.tables import completed, scaling  # noqa: E402
from trainables.contract.rows import COMPLETED, is_completed_final  # noqa: E402

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
    return best_row(pool, objective)


def reported(done: pd.DataFrame, objective: str) -> tuple[str, str]:
    """(column, label) of the final results a figure reports: the test split's, where the
    study has one; else the search split's, said so."""
    test = f"test_{objective}"
    if test in done and done[test].notna().any():
        return test, f"{objective} (test split)"
    return objective, f"{objective} (search split)"


def _fork(row: pd.Series) -> int | None:
    """Where a final row's branch left the trunk: its schedule's first LR drop (a column of
    final rows; None for rows written before it existed)."""
    fork = row.get("fork_iteration")
    return None if fork is None or pd.isna(fork) else int(fork)


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
        fig.suptitle(f"{objective} (search split) during training")
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
            ax.plot(
                tx,
                ty,
                "-",
                color=COLOURS[init],
                marker=".",
                markersize=5,
                label=f"{init} trunk (lr {pick['lr']:.3g}, wd {pick['weight_decay']:.2g})",
            )
            finals = rows[is_completed_final(rows)].sort_values("schedule")
            for _, f in finals.iterrows():
                fork = _fork(f)
                if fork is None:  # where the branch started is unknown: its result alone
                    ax.plot([f["iteration"]], [f[objective]], marker="o", color=COLOURS[init], markersize=7)
                    continue
                y0 = float(np.interp(fork, tx, ty))
                if fork > tx[-1]:  # the trunk was not evaluated up to this fork: dotted, not drawn as known
                    ax.plot([tx[-1], fork], [ty[-1], y0], ":", color=COLOURS[init], alpha=0.6)
                ax.plot([fork, f["iteration"]], [y0, f[objective]], "--", color=COLOURS[init], alpha=0.8)
                ax.plot([fork], [y0], marker="v", color=COLOURS[init], markersize=7, alpha=0.7)
                ax.plot([f["iteration"]], [f[objective]], marker="o", color=COLOURS[init], markersize=7)
                ax.annotate(
                    f"{f['schedule']:g}x",
                    (f["iteration"], f[objective]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=8,
                    color=COLOURS[init],
                )
        ax.set_title(f"{model}, data fraction {fraction:g}")
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"{objective} (search split)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="dashed: a schedule's cooldown from its first LR drop (v)", title_fontsize=8)
    fig.suptitle(f"{objective} (search split) during training: trunk and branches of one trial per init")
    fig.tight_layout()
    return fig


def ap_vs_images(df: pd.DataFrame, objective: str = "bbox_AP") -> Figure:
    """Each schedule's final AP against the images behind it, counting pretraining (the
    argument of paper Fig. 2), on a log axis so that detection training stays visible.

    For each init, the trial of :func:`training_curves`. A pretrained result is drawn at its
    detection images plus the images its backbone saw in pretraining (filled), with a band
    back to its detection images alone (hollow); where the pretraining images are not
    known, only the hollow point is drawn and the legend says "unknown". The AP is the test
    split's where the study has one.
    """
    done = completed(df)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    column, label_y = reported(done, objective) if not done.empty else (objective, objective)
    ax.set_title(f"final {label_y} of each schedule against all images seen")
    if done.empty:
        _empty(ax, "no schedule result yet")
        return fig
    for init in ("scratch", "pretrained"):
        pick = _showcase(done, init, objective)
        if pick is None:
            continue
        curve = done[done["trial_id"] == pick["trial_id"]].sort_values("schedule")
        detection = curve["images_seen"].astype(float).to_numpy()
        ap = curve[column].to_numpy(float)
        label = f"{init} ({pick['arm']}, lr {pick['lr']:.3g})"
        pretrain = curve["pretrain_images_seen"].astype(float).to_numpy() if init == "pretrained" else None
        if pretrain is not None and np.isnan(pretrain).any():
            ax.plot(
                detection, ap, marker="o", mfc="none", color=COLOURS[init], label=f"{label}; pretraining images unknown"
            )
            x = detection
        elif pretrain is not None:
            x = detection + pretrain
            for d, t, y in zip(detection, x, ap):  # the pretraining behind each result
                ax.plot([d, t], [y, y], "-", color=COLOURS[init], alpha=0.25, lw=5, solid_capstyle="butt")
            ax.plot(detection, ap, "o", mfc="none", color=COLOURS[init], alpha=0.6)
            ax.plot(
                x, ap, marker="o", color=COLOURS[init], label=f"{label}; band: {pretrain[0]:,.0f} pretraining images"
            )
        else:
            x = detection
            ax.plot(x, ap, marker="o", color=COLOURS[init], label=label)
        for xi, (_, r) in zip(x, curve.iterrows()):
            ax.annotate(
                f"{r['schedule']:g}x",
                (xi, r[column]),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=8,
                color=COLOURS[init],
            )
    ax.set_xscale("log")
    _readable_log_ticks(ax.xaxis)
    ax.set_xlabel("images seen (pretraining + detection training), log scale")
    ax.set_ylabel(f"final {label_y}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def landscape(
    df: pd.DataFrame, objective: str = "bbox_AP", ranges: dict[str, dict[str, tuple[float, float]]] | None = None
) -> Figure:
    """Each schedule's final AP against lr and against weight decay per arm, coloured by
    schedule (every trial gives one point per schedule it scored); best marked.

    ``ranges`` (arm -> searched (low, high) of lr and weight_decay; analysis.report's
    search_ranges reads them from study.json): each x axis spans the arm's searched range,
    shaded, so where the points sit in it is visible. Diverged results are hollow at AP 0.
    """
    final = final_rows(df)
    arms = sorted(final["arm"].unique()) if not final.empty else []
    fig, axes = plt.subplots(max(1, len(arms)), 2, figsize=(11, 3.6 * max(1, len(arms))), squeeze=False)
    fig.suptitle(f"final {objective} (search split) against the searched hyperparameters, per arm")
    if not arms:
        _empty(axes[0, 0], "no trial yet")
        _empty(axes[0, 1], "no trial yet")
        return fig
    schedules = sorted(final["schedule"].unique())
    cmap = plt.get_cmap("viridis", max(2, len(schedules)))
    for row, arm in zip(axes, arms):
        sub = final[final["arm"] == arm]
        init = sub["init"].iloc[0]
        best = best_row(sub, objective) if sub[objective].notna().any() else None
        for ax, param in zip(row, ("lr", "weight_decay")):
            for k, sched in enumerate(schedules):
                pts = sub[sub["schedule"] == sched]
                if pts.empty:
                    continue
                full = pts[pts["status"] == COMPLETED]
                other = pts[pts["status"] != COMPLETED]
                ax.scatter(full[param], full[objective], color=cmap(k), s=36, label=f"{sched:g}x")
                ax.scatter(other[param], other[objective], facecolors="none", edgecolors=cmap(k), s=36)
            if best is not None:
                ax.scatter(
                    [best[param]],
                    [best[objective]],
                    marker="*",
                    s=260,
                    color=COLOURS[init],
                    edgecolors="k",
                    zorder=5,
                    label="best",
                )
            ax.set_xscale("log")
            searched = (ranges or {}).get(arm, {}).get(param)
            values = sub[param].astype(float)
            lo, hi = searched if searched else (values.min(), values.max())
            ax.set_xlim(lo / 1.25, hi * 1.25)
            if searched:
                ax.axvspan(lo, hi, color="0.85", alpha=0.35, zorder=0, label="searched range")
            _readable_log_ticks(ax.xaxis)
            ax.set_xlabel(param.replace("_", " ") + (" (at 16 images), log scale" if param == "lr" else ", log scale"))
            ax.set_ylabel(f"final {objective} (search split)")
            ax.set_title(f"{arm}", color=COLOURS[init])
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=8, title="schedule (hollow: diverged)", title_fontsize=8)
    fig.tight_layout()
    return fig


def _plain_number(value: float, _pos=None) -> str:
    """0.02, 0.5, 500, 20,000; 1e-04 below a thousandth."""
    if value >= 1:
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:.3g}"
    return f"{value:.3g}" if value >= 1e-3 else f"{value:.0e}"


def _readable_log_ticks(axis) -> None:
    """Log-axis labels at 1, 2 and 5 times powers of ten, written plainly (0.02, 1e-4),
    and unlabelled minor ticks, so that labels never overlap, also on narrow ranges."""
    axis.set_major_locator(mticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=12))
    axis.set_major_formatter(mticker.FuncFormatter(_plain_number))
    axis.set_minor_formatter(mticker.NullFormatter())


def scaling_plot(df: pd.DataFrame, objective: str = "bbox_AP") -> Figure:
    """Best AP against training-set size per init (paper Sec. 5.2): the result best on the
    search split, drawn at its test AP where the study has a test split."""
    table = scaling(df, objective)
    column, label_y = reported(table, objective)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if table.empty or table["train_images"].nunique() < 2:
        _empty(ax, "the study has a single training-set size" if not table.empty else "no completed trial yet")
        return fig
    for (model, init), group in table.groupby(["model", "init"]):
        ax.plot(group["train_images"], group[column], marker="o", color=COLOURS[init], label=f"{init} ({model})")
    ax.set_xscale("log")
    ax.set_xlabel("training images")
    ax.set_ylabel(f"final {label_y}, best trial")
    ax.set_title("where pre-training starts to matter")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig
