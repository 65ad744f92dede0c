"""Early stopping at schedules: a trial is compared only with its arm's trials at the same
cooled-down schedule.

Ray's ASHA (like Optuna's pruners, Determined, NNI and Syne Tune) compares
trials at global rungs of training time. In this study that is wrong: a trial judged before
its LR drops looks worse than it ends up (the higher its LR, the more), and scratch and
pretrained start from different places. Here a trial scores every schedule of its arm's set
on a branch off its trunk (trainables/engine/branches.py), so the *rungs are the schedules*: when a
trial reports schedule s's final result, it joins the rung (arm, s) and, if its score lies
below the rung's cutoff — the same ``(1 - 1/reduction_factor)`` percentile ASHA uses — it
stops before training more trunk. Values at a rung are finished, fully comparable results.

Two rules keep the comparison honest:

- **The recipe is never stopped.** Each arm's first trial is the preset's recipe over the
  arm's whole schedule set (the paper's Table 1 design); its scores join every rung, but it
  runs to its end even when a peer did better, so the recipe row is complete for both inits.
- **Only a gap beyond the seed noise stops a trial.** Two trials equally good differ at a
  rung by two draws of seed noise, whose difference has standard deviation sqrt(2) x σ. A
  trial stops only when its score lies below the rung's cutoff by more than z_0.95 x
  sqrt(2) x σ, so an equally good trial is cut by chance at most one time in twenty. σ is
  the rung's measured seed std where the study's rows hold two or more seeds of one
  configuration at that schedule (the replicate phase's, seen on ``--resume``), else the
  preset's prior (``early_stopping.seed_std``). The non-inferiority margin plays no part:
  it says which gap between inits matters, not how far two draws of one trial scatter.

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

from study.spec.study_config import NOISE_GAPS
from trainables.contract.rows import COMPLETED, FINAL, is_branch_final, is_completed_final, ranking_score


def rung_score(result: dict[str, Any], metric: str) -> float:
    """The objective, with the training loss as a tie-breaker (trainables/contract/rows.py's one rule)."""
    return ranking_score(result[metric], result.get("loss"))


def is_final(result: dict[str, Any], metric: str) -> bool:
    """A schedule's final result (completed or diverged) with a value."""
    return result.get("phase") == FINAL and result.get(metric) is not None


class Rungs:
    """Recorded scores per (arm, schedule); one per trial, the first it reported there."""

    def __init__(self, reduction_factor: int, seed_std: float = 0.0) -> None:
        self.reduction_factor = reduction_factor
        self.seed_std = seed_std  # the prior, where a rung has no measured noise
        self.scores: dict[tuple[str, float], dict[str, float]] = {}
        # (arm, schedule) -> (measured seed std, seeds it came from)
        self.noise: dict[tuple[str, float], tuple[float, int]] = {}

    def record(self, arm: str, schedule: float, trial_id: str, score: float) -> None:
        self.scores.setdefault((arm, float(schedule)), {}).setdefault(trial_id, score)

    def cutoff(self, arm: str, schedule: float) -> float | None:
        recorded = list(self.scores.get((arm, float(schedule)), {}).values())
        if not recorded:
            return None
        return float(np.nanpercentile(recorded, (1 - 1 / self.reduction_factor) * 100))

    def min_gap(self, arm: str, schedule: float) -> float:
        """How far below the cutoff a score must lie to stop its trial: z_0.95 x sqrt(2) x σ."""
        sigma = self.noise.get((arm, float(schedule)), (self.seed_std, 0))[0]
        return NOISE_GAPS * sigma

    def should_stop(self, arm: str, schedule: float, trial_id: str) -> bool:
        """Whether the trial's recorded score at the rung lies below the rung's cutoff by more
        than two draws of seed noise differ by chance."""
        cutoff = self.cutoff(arm, schedule)
        return cutoff is not None and self.scores[(arm, float(schedule))][trial_id] < cutoff - self.min_gap(
            arm, schedule
        )

    def measure_noise(self, rows: Iterable[dict[str, Any]], metric: str) -> None:
        """The seed std of each rung from completed finals of one configuration under two or
        more seeds (pooled over configurations, by degrees of freedom)."""
        values: dict[tuple, dict[int, float]] = {}
        for r in rows:
            if not is_completed_final(r, metric) or r.get("seed") is None or r.get("lr") is None:
                continue
            key = (r["arm"], float(r["schedule"]), float(r["lr"]), float(r["weight_decay"]))
            values.setdefault(key, {}).setdefault(int(r["seed"]), float(r[metric]))
        pooled: dict[tuple[str, float], list[float]] = {}
        for (arm, schedule, *_), by_seed in values.items():
            if len(by_seed) >= 2:
                acc = pooled.setdefault((arm, schedule), [0.0, 0.0, 0])
                acc[0] += float(np.var(list(by_seed.values()), ddof=1)) * (len(by_seed) - 1)
                acc[1] += len(by_seed) - 1
                acc[2] += len(by_seed)
        self.noise = {k: (math.sqrt(ss / df), int(n)) for k, (ss, df, n) in pooled.items()}


class ScheduleRungs(FIFOScheduler):
    """Stops a trial whose final result at a schedule is in the bottom 1 - 1/reduction_factor.

    Args:
        metric: the objective (bbox_AP, segm_AP or a keypoint task's keypoints_AP), maximised.
        reduction_factor: at each rung this fraction of trials goes on (ASHA's eta).
        history: the study's rows so far (to rebuild the rungs after ``--resume``, and to
            measure each rung's seed noise where seeds of one configuration exist).
        seed_std: the prior seed std of a rung's score (AP units), where none is measured;
            0 stops on any gap below the cutoff.
        recipes: arm -> its recipe's (lr, weight decay, schedule); a trial of exactly these
            values is the arm's recipe and is never stopped.
    """

    def __init__(
        self,
        metric: str,
        reduction_factor: int,
        history: Callable[[], Iterable[dict[str, Any]]] | None = None,
        seed_std: float = 0.0,
        recipes: dict[str, tuple[float, float, float]] | None = None,
    ) -> None:
        super().__init__()
        self.recipes = dict(recipes or {})
        self.history = history  # picklable (Tune pickles the scheduler with the experiment)
        self.rebuilt = history is None
        self._metric = metric
        self._mode = "max"
        self.rungs = Rungs(reduction_factor, seed_std)
        self.num_stopped = 0

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # fixed at construction: the objective, maximised

    def rebuild_rungs(self) -> int:
        """Record the final rows in ``history`` in the order written; returns how many."""
        self.rebuilt = True
        rows = sorted((r for r in self.history() if is_final(r, self._metric)), key=lambda r: r["written_at"] or 0.0)
        self.rungs.measure_noise(rows, self._metric)
        for row in rows:
            self.rungs.record(row["arm"], row["schedule"], row["trial_id"], rung_score(row, self._metric))
        return len(rows)

    def _rebuild_once(self) -> None:
        if not self.rebuilt:
            count = self.rebuild_rungs()
            if count:
                print(f"early stopping: rungs rebuilt from {count} earlier schedule results")
            for (arm, schedule), (sigma, seeds) in sorted(self.rungs.noise.items()):
                print(f"early stopping: {arm} {schedule:g}x seed std {sigma:.4f} measured over {seeds} seeds")

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
