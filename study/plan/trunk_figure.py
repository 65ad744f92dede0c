"""The figure of what every trial runs: a peak-LR trunk and a cooldown branch per schedule.

``python -m study.plan.trunk_figure --preset toy-paper docs/trunk_and_branches.png`` draws it
for a preset's first arm (the figure in docs/how_a_trial_runs.md). It needs the schedule's
rule (trainables/engine/schedule.py), which analysis does not import; nothing that trains
imports it.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from trainables.engine.branches import branches  # noqa: E402
from trainables.engine.schedule import lr_at  # noqa: E402


def trunk_and_branches(
    base_iters: int, schedules: tuple[float, ...], warmup_iters: int = 0, warmup_factor: float = 1 / 3
) -> Figure:
    """LR against iteration for one trial: a peak-LR trunk and each schedule's cooldown branch.

    What every trial of the study runs (trainables/engine/branches.py).
    """
    plan = branches(base_iters, tuple(schedules), max(schedules))
    fig, ax = plt.subplots(figsize=(9, 3.4))
    kw = dict(peak_lr=1.0, base_iters=base_iters, warmup_iters=warmup_iters, warmup_factor=warmup_factor)
    trunk_x = np.arange(0, plan[-1].fork)
    ax.plot(
        trunk_x,
        [lr_at(int(i), schedule=plan[-1].schedule, **kw) for i in trunk_x],
        color="0.2",
        lw=2.2,
        label="trunk (peak LR)",
    )
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
    ax.set_title(
        "one trial: a trunk, and at each schedule's first LR drop (v) a branch evaluated at its end (o)", fontsize=9
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    from study.spec.presets import get_preset
    from study.spec.resolved import resolve
    from study.spec.study_config import at_global_batch

    parser = argparse.ArgumentParser(prog="python -m study.plan.trunk_figure", description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="toy-paper", help="the preset whose first arm is drawn")
    parser.add_argument("out", help="the image file to write (PNG)")
    args = parser.parse_args(argv)
    spec = resolve(at_global_batch(get_preset(args.preset))).arms[0]
    s = spec.solver
    fig = trunk_and_branches(s.base_iters, spec.schedules, s.warmup_iters, s.warmup_factor)
    fig.savefig(args.out, dpi=120)
    print(f"{args.out}: {spec.name}, schedules {', '.join(f'{x:g}x' for x in spec.schedules)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
