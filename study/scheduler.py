"""Early stopping at schedules: a trial is compared only with its arm's trials at the same
cooled-down schedule.

Ray's ASHA (like Optuna's pruners, Determined, NNI and Syne Tune) compares
trials at global rungs of training time. In this study that is wrong: a trial judged before
its LR drops looks worse than it ends up (the higher its LR, the more), and scratch and
pretrained start from different places. Here a trial scores every schedule of its arm's set
on a branch off its trunk (trainables/branches.py), so the *rungs are the schedules*: when a
trial reports schedule s's final result, it joins the rung (arm, s) and, if its score lies
below the rung's cutoff — the same ``(1 - 1/reduction_factor)`` percentile ASHA uses — it
stops before training more trunk. Values at a rung are finished, fully comparable results.

Two rules keep the comparison honest:

- **The recipe is never stopped.** Each arm's first trial is the preset's recipe over the
  arm's whole schedule set (the paper's Table 1 design); its scores join every rung, but it
  runs to its end even when a peer did better, so the recipe row is complete for both inits.
- **Only a gap beyond the noise stops a trial.** A trial stops only when its score lies
  below the rung's cutoff by more than ``min_gap`` (the study's equivalence margin: a gap
  that counts as "no worse" cannot make a trial worse). Early in a from-scratch run every
  trial sits at AP near 0, where differences are far smaller: such a rung stops nobody,
  and its trials go on to a schedule where their results can differ.

Ties are broken by the training loss (lower is better), which moves a score by at most a
tenth of an AP point.

Tune does not checkpoint schedulers: after ``--resume`` it hands back the scheduler as it was
when the study started, with empty rungs. Given ``history`` (the study's Parquet rows), the
scheduler rebuilds its rungs from the final rows on its first call, so a resumed study
stops the same trials an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from trainables.rows import COMPLETED, FINAL, is_branch_final

# Tie-break weight: the loss (capped at 10) moves the score by at most 0.001, a tenth of
# one AP point, so it only decides between trials whose AP is (nearly) equal.
LOSS_WEIGHT = 1e-4
LOSS_CAP = 10.0


def rung_score(result: dict[str, Any], metric: str) -> float:
    """The objective, with the training loss as a tie-breaker (missing loss = worst)."""
    loss = result.get("loss")
    penalty = LOSS_CAP if loss is None or not math.isfinite(loss) else min(loss, LOSS_CAP)
    return float(result[metric]) - LOSS_WEIGHT * penalty


def is_final(result: dict[str, Any], metric: str) -> bool:
    """A schedule's final result (completed or diverged) with a value."""
    return result.get("phase") == FINAL and result.get(metric) is not None


class Rungs:
    """Recorded scores per (arm, schedule); one per trial, the first it reported there."""

    def __init__(self, reduction_factor: int, min_gap: float = 0.0) -> None:
        self.reduction_factor = reduction_factor
        self.min_gap = min_gap
        self.scores: dict[tuple[str, float], dict[str, float]] = {}

    def record(self, arm: str, schedule: float, trial_id: str, score: float) -> None:
        self.scores.setdefault((arm, float(schedule)), {}).setdefault(trial_id, score)

    def cutoff(self, arm: str, schedule: float) -> float | None:
        recorded = list(self.scores.get((arm, float(schedule)), {}).values())
        if not recorded:
            return None
        return float(np.nanpercentile(recorded, (1 - 1 / self.reduction_factor) * 100))

    def should_stop(self, arm: str, schedule: float, trial_id: str) -> bool:
        """Whether the trial's recorded score at the rung lies below the rung's cutoff by more
        than ``min_gap``."""
        cutoff = self.cutoff(arm, schedule)
        return cutoff is not None and self.scores[(arm, float(schedule))][trial_id] < cutoff - self.min_gap


class ScheduleRungs(FIFOScheduler):
    """Stops a trial whose final result at a schedule is in the bottom 1 - 1/reduction_factor.

    Args:
        metric: the objective (bbox_AP, segm_AP or a keypoint task's keypoints_AP), maximised.
        reduction_factor: at each rung this fraction of trials goes on (ASHA's eta).
        history: the study's rows so far (to rebuild the rungs after ``--resume``).
        min_gap: how far below the cutoff a score must lie to stop its trial (AP units).
        recipes: arm -> its recipe's (lr, weight decay, schedule); a trial of exactly these
            values is the arm's recipe and is never stopped.
    """

    def __init__(
        self,
        metric: str,
        reduction_factor: int,
        history: Callable[[], Iterable[dict[str, Any]]] | None = None,
        min_gap: float = 0.0,
        recipes: dict[str, tuple[float, float, float]] | None = None,
    ) -> None:
        super().__init__()
        self.recipes = dict(recipes or {})
        self.history = history  # picklable (Tune pickles the scheduler with the experiment)
        self.rebuilt = history is None
        self._metric = metric
        self._mode = "max"
        self.rungs = Rungs(reduction_factor, min_gap)
        self.num_stopped = 0

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # fixed at construction: the objective, maximised

    def rebuild_rungs(self) -> int:
        """Record the final rows in ``history`` in the order written; returns how many."""
        self.rebuilt = True
        rows = sorted((r for r in self.history() if is_final(r, self._metric)), key=lambda r: r["written_at"] or 0.0)
        for row in rows:
            self.rungs.record(row["arm"], row["schedule"], row["trial_id"], rung_score(row, self._metric))
        return len(rows)

    def _rebuild_once(self) -> None:
        if not self.rebuilt:
            count = self.rebuild_rungs()
            if count:
                print(f"early stopping: rungs rebuilt from {count} earlier schedule results")

    def on_trial_add(self, tune_controller, trial) -> None:
        self._rebuild_once()

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self._rebuild_once()
        if not is_final(result, self._metric):
            return TrialScheduler.CONTINUE
        arm, schedule = result["arm"], float(result["schedule"])
        self.rungs.record(arm, schedule, trial.trial_id, rung_score(result, self._metric))
        more_trunk = is_branch_final(result) and result.get("status") == COMPLETED
        if more_trunk and not self.is_recipe(result) and self.rungs.should_stop(arm, schedule, trial.trial_id):
            self.num_stopped += 1
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def is_recipe(self, result: dict[str, Any]) -> bool:
        """Whether the result is from its arm's recipe trial (its lr, weight decay and trunk)."""
        recipe = self.recipes.get(result.get("arm"))
        if recipe is None:
            return False
        values = (result.get("lr"), result.get("weight_decay"), result.get("trunk_schedule"))
        return all(v is not None and math.isclose(float(v), r, rel_tol=1e-9) for v, r in zip(values, recipe))

    def debug_string(self) -> str:
        rungs = ", ".join(f"{arm} {s:g}x: {len(v)}" for (arm, s), v in sorted(self.rungs.scores.items()))
        return f"ScheduleRungs: {self.num_stopped} stopped early; results per rung: {rungs or 'none yet'}"
