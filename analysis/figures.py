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
from trainables.schedule import drop_iterations  # noqa: E402  (pure Python, no torch)

COLOURS = {"scratch": "#d62728", "pretrained": "#1f77b4"}
SCHEDULE_STYLES = ["-", "--", ":", "-."]


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _base_iters(row: pd.Series) -> int:
    return round(row["max_iterations"] / row["schedule"])


def training_curves(df: pd.DataFrame, objective: str = "bbox_AP") -> Figure:
    """AP against iterations for the best completed trial of each init at each schedule.

    One panel per (model, data fraction); the LR drops of each curve are marked with ticks
    on the curve (paper Figs. 1, 3, 4).
    """
    done = completed(df)
    groups = sorted(done.groupby(["model", "data_fraction"]).groups) if not done.empty else []
    fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(6.5 * max(1, len(groups)), 4.5), squeeze=False)
    if not groups:
        _empty(axes[0, 0], "no completed trial yet")
        fig.suptitle(f"{objective} during training")
        return fig
    for ax, (model, fraction) in zip(axes[0], groups):
        sub = done[(done["model"] == model) & (done["data_fraction"] == fraction)]
        schedules = sorted(sub["schedule"].unique())
        for init in ("scratch", "pretrained"):
            for k, sched in enumerate(schedules):
                pool = sub[(sub["init"] == init) & (sub["schedule"] == sched)]
                if pool.empty:
                    continue
                best = pool.loc[pool[objective].idxmax()]
                curve = df[df["trial_id"] == best["trial_id"]].sort_values("iteration")
                style = SCHEDULE_STYLES[k % len(SCHEDULE_STYLES)]
                ax.plot(curve["iteration"], curve[objective], style, color=COLOURS[init], marker="o", markersize=3,
                        label=f"{init} {sched:g}x (lr {best['lr']:.3g})")
                for drop in drop_iterations(_base_iters(best), sched):
                    y = np.interp(drop, curve["iteration"], curve[objective])
                    ax.plot([drop], [y], marker="v", color=COLOURS[init], markersize=8, alpha=0.7)
        ax.set_title(f"{model}, data fraction {fraction:g}")
        ax.set_xlabel("iteration")
        ax.set_ylabel(objective)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="init, schedule (v = LR drop)", title_fontsize=8)
    fig.suptitle(f"{objective} during training: best trial per init and schedule")
    fig.tight_layout()
    return fig


def ap_vs_images(df: pd.DataFrame, objective: str = "bbox_AP") -> Figure:
    """AP against images seen, counting pretraining (the argument of paper Fig. 2).

    A pretrained curve starts at the images its backbone saw in pretraining.
    """
    done = completed(df)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if done.empty:
        _empty(ax, "no completed trial yet")
        return fig
    for init in ("scratch", "pretrained"):
        pool = done[done["init"] == init]
        if pool.empty:
            continue
        best = pool.loc[pool[objective].idxmax()]
        curve = df[df["trial_id"] == best["trial_id"]].sort_values("iteration")
        offset = curve["pretrain_images_seen"].fillna(0).astype(float) if init == "pretrained" else 0.0
        x = curve["images_seen"].astype(float) + offset
        ax.plot(x, curve[objective], marker="o", markersize=3, color=COLOURS[init],
                label=f"{init} ({best['arm']}, {best['schedule']:g}x)")
        if init == "pretrained" and float(np.max(offset)) > 0:
            start = float(curve["pretrain_images_seen"].iloc[0])
            ax.axvspan(0, start, color=COLOURS[init], alpha=0.08)
            ax.text(start / 2, 0.97, "pretraining", transform=ax.get_xaxis_transform(), ha="center", va="top",
                    color=COLOURS[init], fontsize=9)
    ax.set_xlabel("images seen (pretraining + detection training)")
    ax.set_ylabel(objective)
    ax.set_title(f"{objective} against all images seen")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def landscape(df: pd.DataFrame, objective: str = "bbox_AP") -> Figure:
    """Final AP against lr and against weight decay per arm, coloured by schedule; best marked.

    Stopped and diverged trials are drawn hollow at their last AP (diverged at 0).
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
        row[0].legend(fontsize=8, title="schedule (hollow: stopped/diverged)", title_fontsize=8)
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
