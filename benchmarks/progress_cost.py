"""What the trial's progress reporting costs per step (trainables/engine/progress.py).

The loop (trainables/engine/loop.py's Trainer) runs a step that costs almost nothing (a
3-input linear model, one sample), so the hooks' own time is what differs between runs:

- ``none``: no progress hook;
- ``every-n``: the line of 2026-12-06, printed every 1/20 of the trial's iterations (its
  code is kept below, as it was);
- ``timed``: the line on a clock (``ProgressLog`` with ``TimedBatches``), its scalars to a
  TensorBoard writer too (``TrialBoard``), at a cadence short enough to print several lines.

Runs are interleaved (none, every-n, timed, none, ...), medians of ``--repeats``; the
differences are microseconds per step, against a Mask R-CNN step of about 0.1 s (an H200
trains 21 images/s at 2 images per step; the CPU toy's step is longer).

    python benchmarks/progress_cost.py [--steps 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from trainables.engine.branches import branches, trial_iterations
from trainables.engine.loop import HookBase, Trainer, TrainState
from trainables.engine.losses import LossWindow
from trainables.engine.progress import ProgressLog, TimedBatches
from trainables.engine.tensorboard import TrialBoard


class EveryNLine(HookBase):
    """The progress line before time cadence: every ``every`` computed iterations."""

    def __init__(self, every: int, log) -> None:
        self.every, self.log, self.started = max(1, every), log, time.time()

    def after_step(self, trainer: Trainer) -> None:
        pos = trainer.position
        if pos.cost % self.every == 0:
            where = f"{trainer.branch.schedule:g}x cooldown" if pos.in_branch else "trunk"
            end = trainer.branch.end if pos.in_branch else trainer.plan[-1].end
            self.log(
                f"[t] {where} iter {pos.iteration}/{end}  loss {trainer.state.window.mean()[0]:.3f}  "
                f"lr {trainer.state.window.lr:.5f}  {time.time() - self.started:.0f}s"
            )


def trainer(steps: int, hooks, batches=None) -> Trainer:
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    state = TrainState(net, opt, torch.amp.GradScaler("cuda", enabled=False), LossWindow(1))
    data = torch.randn(64, 3)

    def stream(start):
        i = start
        while True:
            yield data[i % 64 : i % 64 + 1]
            i += 1

    def step(batch):
        loss = net(batch).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return [loss.item()], 0.01

    plan = branches(steps // 3, (1.0, 2.0), 2.0)
    return Trainer(plan, state, step, batches or stream, lambda final: {}, _NoRows(), hooks)


class _NoRows:
    def trunk(self, *a):
        return {}

    def final(self, *a):
        return {}

    def checkpoint(self, *a):
        return {}

    def diverged(self, *a):
        return {}


def run(kind: str, steps: int, folder: str) -> tuple[float, int]:
    lines: list[str] = []
    if kind == "none":
        t = trainer(steps, [])
    elif kind == "every-n":
        t = trainer(steps, [])
        t.hooks.append(EveryNLine(trial_iterations(t.plan) // 20, lines.append))
    else:
        board = TrialBoard(folder, "arm", f"trial-{time.time_ns()}")
        base = trainer(steps, [])
        timed = TimedBatches(base._batches)
        base._batches = timed
        base.hooks.append(ProgressLog(0.05, lines.append, "[t]", 2, batches=timed, sinks=(board.scalars,)))
        t = base
    start = time.perf_counter()
    t.run()
    seconds = time.perf_counter() - start
    return seconds / trial_iterations(t.plan) * 1e6, len(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    kinds = ("none", "every-n", "timed")
    times: dict[str, list[float]] = {k: [] for k in kinds}
    printed: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            for kind in kinds:
                us, printed[kind] = run(kind, args.steps, folder)
                times[kind].append(us)
    base = statistics.median(times["none"])
    total = trial_iterations(branches(args.steps // 3, (1.0, 2.0), 2.0))
    print(f"per step, median of {args.repeats} interleaved runs of {total:,} steps:")
    for kind in kinds:
        med = statistics.median(times[kind])
        print(f"  {kind:<8} {med:7.1f} us  (+{med - base:5.1f} us over none; {printed[kind]} lines)")


if __name__ == "__main__":
    main()
