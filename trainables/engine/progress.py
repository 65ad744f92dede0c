"""Progress a person can read while a trial runs for hours: a line on a time cadence.

Like detectron2's ``CommonMetricPrinter`` (detectron2/utils/events.py: iteration, eta, time,
data_time, lr, max_mem every 20 iterations), but on a clock instead of an iteration count,
so the toy prints every few seconds and a COCO trial every minute or two whatever its step
costs. A line says where the trial is (trunk, or which schedule's cooldown), the training
images/s over the steps since the last line and the share of that time spent waiting for
the data loader, the LR and the loss, the peak GPU memory where there is a GPU, and the
trial's ETA from its own pace since this run started (evaluations and checkpoints
included, set-up not). Rank 0 alone decides and prints: no collective, and one device sync
per line (reading the loss window's sums, which the steps keep on the device).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from trainables.contract.durations import duration
from trainables.engine.branches import trial_iterations
from trainables.engine.loop import HookBase, Trainer


class TimedBatches:
    """A trainer's ``batches`` that counts the seconds spent waiting for the next batch."""

    def __init__(self, batches: Callable[[int], Iterator[Any]], clock: Callable[[], float] = time.perf_counter):
        self.batches, self.clock = batches, clock
        self.wait = 0.0

    def __call__(self, start: int) -> Iterator[Any]:
        stream = self.batches(start)
        while True:
            begin = self.clock()
            try:
                batch = next(stream)
            except StopIteration:
                return
            self.wait += self.clock() - begin
            yield batch


class ProgressLog(HookBase):
    """A line about every ``seconds`` (rank 0's ``log``; other ranks pass a no-op), and the
    same numbers to ``sinks`` (each ``sink(scalars, iteration, phase)``, e.g. TensorBoard's,
    with ``phase`` "trunk" or "cooldown_Nx")."""

    def __init__(
        self,
        seconds: float,
        log: Callable[[str], None],
        prefix: str,
        images_per_step: int,
        *,
        batches: TimedBatches | None = None,
        memory: Callable[[], float] | None = None,
        sinks: tuple[Callable[[dict[str, float], int, str], None], ...] = (),
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.seconds, self.log, self.prefix, self.images = seconds, log, prefix, images_per_step
        self.batches, self.memory, self.sinks, self.clock = batches, memory, sinks, clock
        self.started = self.last = 0.0
        self.cost0 = self.steps = 0
        self.busy = self.wait0 = self.step_began = 0.0

    def before_train(self, trainer: Trainer) -> None:
        self.started = self.last = self.clock()
        self.cost0 = trainer.position.cost
        self._restart()

    def _restart(self) -> None:
        self.steps, self.busy = 0, 0.0
        self.wait0 = self.batches.wait if self.batches is not None else 0.0

    def before_step(self, trainer: Trainer) -> None:
        self.step_began = self.clock()

    def after_step(self, trainer: Trainer) -> None:
        now = self.clock()
        self.busy += now - self.step_began
        self.steps += 1
        if now - self.last < self.seconds:
            return
        self.last = now
        scalars = self.scalars(trainer, now)
        self.log(self.line(trainer, scalars))
        pos = trainer.position
        phase = f"cooldown_{trainer.branch.schedule:g}x" if pos.in_branch else "trunk"
        for sink in self.sinks:
            sink(scalars, pos.iteration, phase)
        self._restart()

    def scalars(self, trainer: Trainer, now: float) -> dict[str, float]:
        """The numbers of one line, keyed as TensorBoard tags."""
        pos = trainer.position
        wait = (self.batches.wait - self.wait0) if self.batches is not None else None
        done, total = pos.cost - self.cost0, trial_iterations(trainer.plan)
        out = {
            "train/loss": trainer.state.window.mean()[0],
            "train/lr": trainer.state.window.lr,
            "speed/images_per_s": self.steps * self.images / self.busy if self.busy > 0 else 0.0,
            "progress/cost_iterations": float(pos.cost),
            "progress/eta_s": (now - self.started) / done * (total - pos.cost) if done > 0 else float("nan"),
        }
        if wait is not None:
            out["speed/data_wait_share"] = wait / self.busy if self.busy > 0 else 0.0
        if self.memory is not None:
            out["memory/peak_gib"] = self.memory()
        return out

    def line(self, trainer: Trainer, scalars: dict[str, float]) -> str:
        pos = trainer.position
        end = trainer.branch.end if pos.in_branch else trainer.plan[-1].end
        total = trial_iterations(trainer.plan)
        parts = [
            f"{self.prefix} {trainer.where} iter {pos.iteration}/{end}",
            f"{scalars['speed/images_per_s']:.1f} img/s"
            + (f" (data wait {scalars['speed/data_wait_share']:.0%})" if "speed/data_wait_share" in scalars else ""),
            f"lr {scalars['train/lr']:.5f}  loss {scalars['train/loss']:.3f}",
        ]
        if "memory/peak_gib" in scalars:
            parts.append(f"max mem {scalars['memory/peak_gib']:.1f} GiB")
        eta = scalars["progress/eta_s"]
        parts.append(
            f"trial {pos.cost / total:.0%} of {total:,} iterations, eta {duration(eta) if eta == eta else '?'}"
        )
        return "  ".join(parts)
