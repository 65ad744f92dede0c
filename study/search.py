"""One Optuna search per arm, behind a single Ray Tune searcher.

A Tune experiment has one search algorithm, but the study needs an independent Optuna
study for every arm (scratch and pretrained must never share a sampler: their good learning
rates differ, and pooling would let one arm's trials steer the other's). ``ArmSearch``
routes: it asks the arm with the fewest trials so far for the next suggestion (arms advance
together and share the cluster) and sends each result back to the OptunaSearch that made
it. Each OptunaSearch has its own seeded TPESampler and its own named study in one SQLite
file, so ``optuna-dashboard sqlite:///DIR/NAME/optuna.db`` shows every arm.
"""

from __future__ import annotations

import pickle
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from study.config import RECIPE_KEYS, SearchSpace


def optuna_space(space: SearchSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    return {
        "lr": optuna.distributions.FloatDistribution(*space.lr, log=True),
        "weight_decay": optuna.distributions.FloatDistribution(*space.weight_decay, log=True),
        "schedule": optuna.distributions.CategoricalDistribution(list(space.schedule)),
    }


def arm_searcher(arm: str, space: SearchSpace, *, storage: optuna.storages.BaseStorage, seed: int, metric: str,
                 num_samples: int, first_point: dict[str, Any] | None) -> OptunaSearch:
    """An OptunaSearch for one arm; ``first_point`` (the paper's recipe) is tried first."""
    sampler = optuna.samplers.TPESampler(
        seed=seed,
        # A few random trials before TPE models the space (about half of a small budget).
        n_startup_trials=min(10, max(2, num_samples // 2)),
        constant_liar=True,  # parallel trials do not all land on the same point
    )
    points = None
    if first_point is not None:
        point = {k: first_point[k] for k in RECIPE_KEYS}
        if point["schedule"] in space.schedule and _inside(point, space):
            points = [point]
        else:
            print(f"note: {arm}'s recipe {point} lies outside its search ranges; its search starts without it")
    return OptunaSearch(space=optuna_space(space), metric=metric, mode="max", sampler=sampler, study_name=arm,
                        storage=storage, points_to_evaluate=points)


def _inside(point: dict[str, Any], space: SearchSpace) -> bool:
    return space.lr[0] <= point["lr"] <= space.lr[1] and space.weight_decay[0] <= point["weight_decay"] <= space.weight_decay[1]


class ArmSearch(Searcher):
    """Routes suggestions and results between Tune and one OptunaSearch per arm."""

    def __init__(self, searchers: dict[str, OptunaSearch], num_samples: int, metric: str,
                 fixed: dict[str, Any] | None = None) -> None:
        super().__init__(metric=metric, mode="max")
        self.searchers = searchers
        self.num_samples = num_samples
        self.fixed = dict(fixed or {})
        self.suggested = {arm: 0 for arm in searchers}
        self.trial_arm: dict[str, str] = {}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # each arm's space and objective are fixed at construction

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        open_arms = [a for a in self.searchers if self.suggested[a] < self.num_samples]
        if not open_arms:
            return Searcher.FINISHED
        arm = min(open_arms, key=lambda a: self.suggested[a])
        params = self.searchers[arm].suggest(trial_id)
        if params is None:
            return None
        self.suggested[arm] += 1
        self.trial_arm[trial_id] = arm
        return {"arm": arm, **params, **self.fixed}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.trial_arm:
            self.searchers[self.trial_arm[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.trial_arm:
            return
        if result is not None and result.get("status") == "running":
            # Stopped early: its AP is a mid-schedule value, before its LR drops. Told as
            # PRUNED (no final value), TPE ranks it by its reported intermediate values
            # instead of mistaking it for a finished trial of that quality.
            result = None
        self.searchers[self.trial_arm[trial_id]].on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        state = {"suggested": self.suggested, "trial_arm": self.trial_arm, "num_samples": self.num_samples,
                 "fixed": self.fixed, "searchers": {a: s.__dict__.copy() for a, s in self.searchers.items()}}
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.suggested, self.trial_arm = state["suggested"], state["trial_arm"]
        self.num_samples, self.fixed = state["num_samples"], state["fixed"]
        for arm, blob in state["searchers"].items():
            self.searchers[arm].__dict__.update(blob)
        self.fail_orphans()

    def fail_orphans(self) -> int:
        """Mark Optuna trials that no Tune trial will ever finish as FAIL.

        A driver killed between asking Optuna and saving Tune's experiment state leaves
        RUNNING trials in the database that the restored experiment does not know.
        """
        count = 0
        for searcher in self.searchers.values():
            known = {t._trial_id for t in searcher._ot_trials.values()}
            study = searcher._ot_study
            for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                if frozen._trial_id not in known:
                    study._storage.set_trial_user_attr(frozen._trial_id, "failed_because", "driver interrupted")
                    study._storage.set_trial_state_values(frozen._trial_id, optuna.trial.TrialState.FAIL)
                    count += 1
        return count
