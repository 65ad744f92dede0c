"""The study's own progress line in the driver's log: iterations done against the plan, the
pace measured since this driver started, and the study's ETA.

A Tune callback (Ray docs, "Tune Callbacks": ``tune.Callback.on_trial_result``): every
result a trial reports carries its ``cost_iterations`` (iterations computed so far, trunk
and branches), so the study's done work is the sum over trials of the last one seen, the
rows already written counting for trials of an earlier run (``--resume``). The plan's
count assumes no trial stops early, so the ETA is an upper bound while early stopping is on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ray import tune

from study.spec.resolved import ResolvedStudy
from trainables.contract import row_store
from trainables.contract.durations import duration
from trainables.engine.branches import trial_iterations


class StudyProgress(tune.Callback):
    """``planned``: the iterations the plan expects this experiment to compute; ``counted``:
    the rows already written are its work (a resumed search), else it starts from none (a
    replicate round, whose rows the search's would swamp)."""

    def __init__(
        self,
        results_uri: str,
        planned: int,
        every_s: float,
        what: str = "study",
        counted: bool = True,
        log: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.results_uri, self.planned, self.every_s, self.what = results_uri, planned, every_s, what
        self.counted = counted
        # None: print (looked up when used: a Tuner pickles its callbacks, and a test's or
        # Ray's patched print is not the builtin pickle finds by name).
        self.log, self.clock = log, clock
        self.setup()

    def setup(self, **info: Any) -> None:
        """Called by Tune as a run starts, also a restored one: the pace is this driver's."""
        self.cost: dict[str, int] = {}
        try:
            for row in row_store.read_rows(self.results_uri) if self.counted else ():
                self.cost[row["trial_id"]] = max(self.cost.get(row["trial_id"], 0), int(row["cost_iterations"]))
        except FileNotFoundError:
            pass
        self.started, self.done_at_start = self.clock(), self.done
        self.last: float | None = None

    @property
    def done(self) -> int:
        return sum(self.cost.values())

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict[str, Any], **info: Any) -> None:
        if "cost_iterations" not in result or "trial_id" not in result:
            return
        tid = result["trial_id"]
        self.cost[tid] = max(self.cost.get(tid, 0), int(result["cost_iterations"]))
        now = self.clock()
        if self.last is not None and now - self.last < self.every_s:
            return
        line = self.line(now)
        if line is not None:
            self.last = now
            (self.log or print)(line)

    def line(self, now: float) -> str | None:
        """None until this driver has seen work done (no pace to tell yet)."""
        done, elapsed = self.done, now - self.started
        gained = done - self.done_at_start
        if gained <= 0 or elapsed <= 0:
            return None
        rate = gained / elapsed
        left = max(0, self.planned - done)
        return (
            f"{self.what}: {done:,} of ~{self.planned:,} planned iterations ({min(done / self.planned, 1):.0%}) "
            "as of the trials' last evaluations, "
            f"{rate:.2f} iterations/s over this driver's {duration(elapsed)}, eta {duration(left / rate)} "
            "(the plan counts no early stopping: stopped trials end it sooner)"
        )


def callbacks(results_uri: str, planned: int, what: str, every_s: float, counted: bool = True) -> list[tune.Callback]:
    """The progress line as Tune callbacks (none without a plan's count)."""
    return [StudyProgress(results_uri, planned, every_s, what, counted)] if planned else []


def iterations(resolved: ResolvedStudy, points: list[dict[str, Any]]) -> int:
    """Iterations the trials at ``points`` compute (trunk and branches): a replicate round's plan."""
    specs = {spec.name: spec for spec in resolved.arms}
    return sum(trial_iterations(specs[p["arm"]].branches_of(p["schedule"])) for p in points)
