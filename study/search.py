"""One Optuna search per arm, behind a single Ray Tune searcher.

A Tune experiment has one search algorithm, but the study needs an independent Optuna
study for every arm (scratch and pretrained must never share a sampler: their good learning
rates differ, and pooling would let one arm's trials steer the other's). ``ArmSearch``
routes: it asks the arm with the fewest trials so far for the next suggestion (arms advance
together and share the cluster; between arms with as many, the one with fewer finished
trials, which lags behind) and sends each result back to the OptunaSearch that made it.
Each OptunaSearch has its own seeded TPESampler and its own named study in one SQLite
file, so ``optuna-dashboard sqlite:///DIR/NAME/optuna.db`` shows every arm.

A Tune trial searches (lr, weight_decay, schedule S) and scores every schedule s <= S of its
arm's set on a branch (trainables/branches.py). Its own Optuna trial gets S's final result
(the Tune objective); each shorter schedule's final result is added to the arm's study as a
finished trial of its own with (lr, weight_decay, s), so TPE learns from every schedule
scored and the dashboard shows each one. Trunk evaluations (at the peak LR) never reach
Optuna: a trial stopped early is PRUNED with no value, so nothing compares a peak-LR number
with cooled-down finals; the schedules it did finish are trials of their own.
"""

from __future__ import annotations

import logging
import pickle
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from study import failures
from study.config import SearchSpace, startup_trials
from study.sampler import ConfigurationStartupSampler
from study.tune_compat import optuna_study, optuna_trials, restore_searcher_state, searcher_state
from trainables.rows import COMPLETED, DIVERGED, FINAL, RECIPE_KEYS, is_branch_final, is_own_final

logger = logging.getLogger(__name__)


def optuna_space(space: SearchSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    return {
        "lr": optuna.distributions.FloatDistribution(*space.lr, log=True),
        "weight_decay": optuna.distributions.FloatDistribution(*space.weight_decay, log=True),
        "schedule": optuna.distributions.CategoricalDistribution(list(space.schedule)),
    }


def arm_searcher(
    arm: str,
    space: SearchSpace,
    *,
    storage: optuna.storages.BaseStorage,
    seed: int,
    metric: str,
    num_samples: int,
    first_point: dict[str, Any] | None,
) -> OptunaSearch:
    """An OptunaSearch for one arm; ``first_point`` (the paper's recipe) is tried first."""
    # A few random configurations before TPE models the space (about half of a small
    # budget), counted as (lr, weight decay), not as schedule results; TPE's constant liar
    # keeps parallel trials from all landing on the same point.
    sampler = ConfigurationStartupSampler(startup_trials(num_samples), seed=seed)
    points = None
    if first_point is not None:
        point = {k: first_point[k] for k in RECIPE_KEYS}
        if point["schedule"] in space.schedule and _inside(point, space):
            points = [point]
        else:
            logger.warning("%s's recipe %s lies outside its search ranges; its search starts without it", arm, point)
    return OptunaSearch(
        space=optuna_space(space),
        metric=metric,
        mode="max",
        sampler=sampler,
        study_name=arm,
        storage=storage,
        points_to_evaluate=points,
    )


def _inside(point: dict[str, Any], space: SearchSpace) -> bool:
    return (
        space.lr[0] <= point["lr"] <= space.lr[1]
        and space.weight_decay[0] <= point["weight_decay"] <= space.weight_decay[1]
    )


def is_branch_result(result: dict[str, Any], metric: str) -> bool:
    """A completed final result of a schedule shorter than the trial's own."""
    return (
        result.get("phase") == FINAL
        and result.get("status") == COMPLETED
        and result.get(metric) is not None
        and is_branch_final(result)
    )


def record_branch(
    study: optuna.Study,
    tune_trial_id: str,
    result: dict[str, Any],
    metric: str,
    distributions: dict[str, optuna.distributions.BaseDistribution],
    branch: bool = True,
) -> bool:
    """Add a schedule's final result to the arm's Optuna study as a finished trial, once.

    For a branch, and (``branch=False``) for the own result of a trial that Optuna was told
    had failed and that ``--resume`` then finished. Returns False when it is there already
    (a resumed trial reports its branches again). The trial carries ``tune_trial`` and
    ``trunk_schedule`` as user attributes.
    """
    schedule = float(result["schedule"])
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if t.user_attrs.get("tune_trial") == tune_trial_id and t.params.get("schedule") == schedule:
            return False
    params = {"lr": float(result["lr"]), "weight_decay": float(result["weight_decay"]), "schedule": schedule}
    study.add_trial(
        optuna.trial.create_trial(
            params=params,
            distributions=distributions,
            value=float(result[metric]),
            user_attrs={
                "tune_trial": tune_trial_id,
                "trunk_schedule": float(result["trunk_schedule"]),
                "branch": branch,
            },
        )
    )
    return True


def _is_own_final(result: dict[str, Any], metric: str) -> bool:
    return (
        result.get("phase") == FINAL
        and result.get("status") == COMPLETED
        and result.get(metric) is not None
        and is_own_final(result)
    )


class ArmSearch(Searcher):
    """Routes suggestions and results between Tune and one OptunaSearch per arm."""

    def __init__(
        self,
        searchers: dict[str, OptunaSearch],
        num_samples: int,
        metric: str,
        fixed: dict[str, Any] | None = None,
        spaces: dict[str, SearchSpace] | None = None,
        results_uri: str | None = None,
        arm_configs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """``results_uri`` and ``arm_configs`` let a trial that failed on bad input close the
        arms that would fail the same way (study/failures.py)."""
        super().__init__(metric=metric, mode="max")
        self.searchers = searchers
        # Each arm's distributions, for the trials its branches add (record_branch).
        self.spaces = dict(spaces or {})
        self.num_samples = num_samples
        self.fixed = dict(fixed or {})
        self.suggested = {arm: 0 for arm in searchers}
        self.finished = {arm: 0 for arm in searchers}
        self.trial_arm: dict[str, str] = {}
        # Trials Optuna was told had failed; --resume may still finish them.
        self.failed: set[str] = set()
        # Arms that get no more trials in this run (their input is bad); not saved, so a
        # --resume after fixing the input opens them again.
        self.closed: dict[str, str] = {}
        self.results_uri = results_uri
        self.arm_configs = dict(arm_configs or {})

    def close_arm(self, arm: str, reason: str) -> None:
        """Suggest no more trials for ``arm`` in this run."""
        self.closed.setdefault(arm, reason)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # each arm's space and objective are fixed at construction

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        open_arms = [a for a in self.searchers if self.suggested[a] < self.num_samples and a not in self.closed]
        if not open_arms:
            return Searcher.FINISHED
        arm = min(open_arms, key=lambda a: (self.suggested[a], self.finished[a]))
        params = self.searchers[arm].suggest(trial_id)
        if params is None:
            return None
        self.suggested[arm] += 1
        self.trial_arm[trial_id] = arm
        return {"arm": arm, **params, **self.fixed}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self.trial_arm:
            return
        searcher = self.searchers[self.trial_arm[trial_id]]
        if is_branch_result(result, self.metric) or (trial_id in self.failed and _is_own_final(result, self.metric)):
            arm = self.trial_arm[trial_id]
            # OptunaSearch keeps its study private (study/tune_compat.py); add_trial is Optuna's public call for
            # results computed outside a sampler's ask/tell. A trial told FAIL that --resume
            # finished joins the same way, here: after a restore Tune's ConcurrencyLimiter
            # no longer passes its completion on.
            record_branch(
                optuna_study(searcher),
                trial_id,
                result,
                self.metric,
                optuna_space(self.spaces[arm]),
                branch=is_branch_result(result, self.metric),
            )

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.trial_arm:
            return
        if (
            result is not None
            and not (result.get("phase") == FINAL and result.get("status") == DIVERGED)
            and not is_own_final(result)
        ):
            # Stopped early, after a shorter schedule's result or on the trunk: its own
            # schedule has no final value. Told as PRUNED (no intermediate values: the
            # trunk's are at the peak LR), while the schedules it did finish are trials
            # of their own.
            result = None
        arm = self.trial_arm[trial_id]
        self.finished[arm] += 1
        if trial_id in self.failed:
            return  # told FAIL before --resume finished it; its result joined in on_trial_result
        if error:
            self.failed.add(trial_id)
            self._close_after(trial_id)
        self.searchers[arm].on_trial_complete(trial_id, result=result, error=error)

    def _close_after(self, trial_id: str) -> None:
        record = failures.input_failure(self.results_uri, trial_id) if self.results_uri else None
        if record is None:
            return
        arms, reason = failures.arms_to_close(record, self.arm_configs)
        fresh = [a for a in arms if a in self.searchers and a not in self.closed]
        for arm in fresh:
            self.close_arm(arm, reason)
        if fresh:
            which = "no arm" if len(self.closed) == len(self.searchers) else ", ".join(fresh)
            logger.warning(
                "bad input: %s; %s in this run (running trials meet the same error; fix it and --resume)",
                reason,
                "no further trial starts" if which == "no arm" else f"{which} gets no further trials",
            )

    def save(self, checkpoint_path: str) -> None:
        state = {
            "suggested": self.suggested,
            "finished": self.finished,
            "trial_arm": self.trial_arm,
            "num_samples": self.num_samples,
            "fixed": self.fixed,
            "spaces": self.spaces,
            "searchers": {a: searcher_state(s) for a, s in self.searchers.items()},
        }
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.suggested, self.trial_arm = state["suggested"], state["trial_arm"]
        self.finished = state.get("finished", dict.fromkeys(self.suggested, 0))
        self.num_samples, self.fixed, self.spaces = (
            state["num_samples"],
            state["fixed"],
            state.get("spaces", self.spaces),
        )
        for arm, blob in state["searchers"].items():
            restore_searcher_state(self.searchers[arm], blob)
        # Arms closed by bad input open again; an ArmSearch pickled by an older version
        # lacks these attributes.
        self.closed = {}
        self.__dict__.setdefault("results_uri", None)
        self.__dict__.setdefault("arm_configs", {})
        # Trials Optuna holds as FAIL, from Optuna itself: a resumed one must not report
        # to its finished Optuna trial.
        self.failed = set()
        for searcher in self.searchers.values():
            numbers = {
                t.number
                for t in optuna_study(searcher).get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
            }
            self.failed |= {tid for tid, trial in optuna_trials(searcher).items() if trial.number in numbers}
        self.fail_orphans()

    def fail_orphans(self) -> int:
        """Mark Optuna trials that no Tune trial will ever finish as FAIL.

        A driver killed between asking Optuna and saving Tune's experiment state leaves
        RUNNING trials in the database that the restored experiment does not know.
        """
        count = 0
        for arm, searcher in self.searchers.items():
            known = {t.number for t in optuna_trials(searcher).values()}
            study = optuna_study(searcher)
            for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                if frozen.number not in known:
                    study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)
                    logger.warning(
                        "Optuna trial %d of %s was asked for before the driver stopped and never started: marked FAIL",
                        frozen.number,
                        arm,
                    )
                    count += 1
        return count
