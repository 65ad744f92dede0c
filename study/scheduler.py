"""Early stopping that never compares unlike trials: ASHA per (arm, schedule length).

Ray's ASHA (like Optuna's pruners, Determined, NNI, Syne Tune; hpo_systems.md) compares all
trials at the same global rungs. In this study that is wrong twice over: a longer schedule
keeps the high learning rate longer and decays it later, so it looks worse early and wins
late (the effect He et al. are about), and scratch and pretrained start from different
places. So each (arm, schedule) group gets its own ASHA whose rungs are fractions of *its
own* schedule, on the monotonic ``iteration`` attribute (``training_iteration`` restarts
after a restore and repeats after a worker failure; ray_notes.md section 4).

Early in a from-scratch run every trial can sit at AP 0.0; ties are broken by the training
loss (lower is better) so the rung can still tell trials apart.

Tune does not checkpoint schedulers: after ``--resume`` it hands back the scheduler as it was
when the study started, with empty rungs. Given ``history`` (the study's Parquet rows), the
scheduler rebuilds its rungs from them on its first call, so a resumed study stops the same
trials an uninterrupted one would.
"""

from __future__ import annotations

import math
import types
from typing import Any, Callable, Iterable

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

TIME_ATTR = "iteration"
SCORE = "_rung_score"
# Tie-break weight: the loss (capped at 10) moves the score by at most 0.001, a tenth of
# one AP point, so it only decides between trials whose AP is (nearly) equal.
LOSS_WEIGHT = 1e-4
LOSS_CAP = 10.0


def rung_score(result: dict[str, Any], metric: str) -> float:
    """The objective, with the training loss as a tie-breaker (missing loss = worst)."""
    loss = result.get("loss")
    penalty = LOSS_CAP if loss is None or not math.isfinite(loss) else min(loss, LOSS_CAP)
    return float(result[metric]) - LOSS_WEIGHT * penalty


class ScheduleAwareASHA(FIFOScheduler):
    """Stops trials whose rung score is in the bottom 1/reduction_factor of their group.

    Args:
        metric: the objective (bbox_AP or segm_AP), maximised.
        max_iterations: a trial config -> its total iterations (the length of its schedule).
        grace_fraction: the first rung, as a fraction of the trial's own schedule.
        reduction_factor: rungs grow by this factor; this fraction of trials continue.
    """

    def __init__(self, metric: str, max_iterations: Callable[[dict[str, Any]], int], grace_fraction: float,
                 reduction_factor: int, history: Callable[[], Iterable[dict[str, Any]]] | None = None) -> None:
        super().__init__()
        self.history = history  # picklable (Tune pickles the scheduler with the experiment)
        self.rebuilt = history is None
        self._metric = metric
        self._mode = "max"
        self.max_iterations = max_iterations
        self.grace_fraction = grace_fraction
        self.reduction_factor = reduction_factor
        self.groups: dict[tuple[str, float], ASHAScheduler] = {}
        self.trial_group: dict[str, tuple[str, float]] = {}
        self.num_stopped = 0

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # fixed at construction: the objective, maximised

    def _group(self, config: dict[str, Any]) -> tuple[tuple[str, float], ASHAScheduler]:
        key = (config["arm"], float(config["schedule"]))
        if key not in self.groups:
            total = self.max_iterations(config)
            self.groups[key] = ASHAScheduler(
                time_attr=TIME_ATTR, metric=SCORE, mode="max", max_t=total,
                grace_period=max(1, math.ceil(self.grace_fraction * total)), reduction_factor=self.reduction_factor)
        return key, self.groups[key]

    def _asha(self, trial) -> ASHAScheduler:
        key, asha = self._group(trial.config)
        self.trial_group[trial.trial_id] = key
        return asha

    def rebuild_rungs(self) -> int:
        """Record the evaluations in ``history`` at the rungs they reached; returns how many.

        A trial's first evaluation at or past a rung is its value there, as in a live run;
        a trial that reports again after resuming keeps the value it already has.
        """
        self.rebuilt = True
        rows = sorted((r for r in self.history() if r.get(self._metric) is not None and r.get(TIME_ATTR) is not None),
                      key=lambda r: (r["trial_id"], r[TIME_ATTR]))
        for row in rows:
            trial = types.SimpleNamespace(trial_id=row["trial_id"],
                                          config={"arm": row["arm"], "schedule": row["schedule"]})
            _, asha = self._group(trial.config)
            # ASHAScheduler(brackets=1) keeps its rungs in its one _Bracket; its on_result
            # records exactly as a live result would (Ray 2.60 async_hyperband.py).
            asha._brackets[0].on_result(trial, row[TIME_ATTR], rung_score(row, self._metric))
        return len(rows)

    def _rebuild_once(self) -> None:
        if not self.rebuilt:
            count = self.rebuild_rungs()
            if count:
                print(f"early stopping: rungs rebuilt from {count} earlier evaluations")

    def on_trial_add(self, tune_controller, trial) -> None:
        self._rebuild_once()
        self._asha(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self._rebuild_once()
        if TIME_ATTR not in result or self._metric not in result or result[self._metric] is None:
            return TrialScheduler.CONTINUE
        key = self.trial_group.get(trial.trial_id)
        if key is None:  # a trial restored into a fresh scheduler
            self.on_trial_add(tune_controller, trial)
            key = self.trial_group[trial.trial_id]
        decision = self.groups[key].on_trial_result(tune_controller, trial, {**result, SCORE: rung_score(result, self._metric)})
        if decision == TrialScheduler.STOP and result[TIME_ATTR] < self.groups[key]._max_t:
            self.num_stopped += 1
        return decision

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        key = self.trial_group.pop(trial.trial_id, None)
        if key is not None and result and result.get(self._metric) is not None and TIME_ATTR in result:
            self.groups[key].on_trial_complete(tune_controller, trial, {**result, SCORE: rung_score(result, self._metric)})
        elif key is not None:
            self.groups[key]._trial_info.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller, trial) -> None:
        key = self.trial_group.pop(trial.trial_id, None)
        if key is not None:
            self.groups[key]._trial_info.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        groups = ", ".join(f"{arm} {s:g}x" for arm, s in sorted(self.groups))
        return f"ScheduleAwareASHA: {self.num_stopped} stopped early; groups: {groups or 'none yet'}"
