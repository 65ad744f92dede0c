"""One Optuna search per arm, behind a single Ray Tune searcher.

A Tune experiment has one search algorithm, but the study needs an independent Optuna
study for every arm (scratch and pretrained must never share a sampler: their good learning
rates differ, and pooling would let one arm's trials steer the other's). ``ArmSearch``
routes: it asks the arm with the fewest trials so far for the next suggestion (arms advance
together and share the cluster; between arms with as many, the one with fewer finished
trials, which lags behind) and tells each result to the arm's study. Every arm has its own
seeded sampler and its own named study in one SQLite file, so
``optuna-dashboard sqlite:///DIR/NAME/optuna.db`` shows every arm. Only Optuna's public
ask-and-tell interface is used ("Ask-and-Tell Interface" in Optuna's docs): ``ask`` for a
trial's parameters, ``tell`` for its end, ``add_trial`` for a branch's result.

A Tune trial searches (lr, weight_decay, schedule S) and scores every schedule s <= S of its
arm's set on a branch (trainables/engine/branches.py). Its own Optuna trial gets S's final result
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

from study.hpo import failures, optuna_db
from study.hpo.sampler import ConfigurationStartupSampler
from study.hpo.tune_compat import stop_tune_gracefully
from study.spec.resolved import ResolvedStudy
from study.spec.study_config import SearchSpace, startup_trials
from trainables.contract import optuna_store, row_store
from trainables.contract.rows import DIVERGED, FINAL, RECIPE_KEYS, is_branch_final, is_completed_final, is_own_final

logger = logging.getLogger(__name__)


def optuna_space(space: SearchSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    return {
        "lr": optuna.distributions.FloatDistribution(*space.lr, log=True),
        "weight_decay": optuna.distributions.FloatDistribution(*space.weight_decay, log=True),
        "schedule": optuna.distributions.CategoricalDistribution(list(space.schedule)),
    }


def arm_study(
    arm: str,
    space: SearchSpace,
    *,
    storage: optuna.storages.BaseStorage,
    seed: int,
    num_samples: int,
    first_point: dict[str, Any] | None,
    study_name: str | None = None,
) -> optuna.Study:
    """One arm's Optuna study (created, or loaded when it exists); ``first_point`` (the
    paper's recipe) is enqueued as its first trial when the study is new."""
    # A few random configurations before TPE models the space (about half of a small
    # budget), counted as (lr, weight decay), not as schedule results; TPE's constant liar
    # keeps parallel trials from all landing on the same point.
    sampler = ConfigurationStartupSampler(startup_trials(num_samples), seed=seed)
    study = optuna.create_study(
        study_name=study_name or arm, storage=storage, sampler=sampler, direction="maximize", load_if_exists=True
    )
    if first_point is not None and not study.get_trials(deepcopy=False):
        point = {k: first_point[k] for k in RECIPE_KEYS}
        if point["schedule"] in space.schedule and _inside(point, space):
            study.enqueue_trial(point)
        else:
            logger.warning("%s's recipe %s lies outside its search ranges; its search starts without it", arm, point)
    return study


def _inside(point: dict[str, Any], space: SearchSpace) -> bool:
    return (
        space.lr[0] <= point["lr"] <= space.lr[1]
        and space.weight_decay[0] <= point["weight_decay"] <= space.weight_decay[1]
    )


def is_branch_result(result: dict[str, Any], metric: str) -> bool:
    """A completed final result of a schedule shorter than the trial's own."""
    return is_completed_final(result, metric) and is_branch_final(result)


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
    return is_completed_final(result, metric) and is_own_final(result)


class ArmSearch(Searcher):
    """Routes suggestions and results between Tune and one Optuna study per arm."""

    def __init__(
        self,
        studies: dict[str, optuna.Study],
        num_samples: int,
        metric: str,
        spaces: dict[str, SearchSpace],
        fixed: dict[str, Any] | None = None,
        results_uri: str | None = None,
        arm_configs: dict[str, dict[str, Any]] | None = None,
        optuna_storage: str = "",
    ) -> None:
        """``results_uri`` and ``arm_configs`` let a trial that failed on bad input close the
        arms that would fail the same way (study/hpo/failures.py). With s3:// results and
        the default storage (``optuna_storage`` empty) the Optuna database is published
        beside them after every finished trial, so a head lost mid-study loses none of it."""
        super().__init__(metric=metric, mode="max")
        self.studies = studies
        # Each arm's ranges: the distributions its trials are asked with and its branches added with.
        self.spaces = dict(spaces)
        self.num_samples = num_samples
        self.fixed = dict(fixed or {})
        self.suggested = {arm: 0 for arm in studies}
        self.finished = {arm: 0 for arm in studies}
        self.trial_arm: dict[str, str] = {}
        # Tune trial id -> the number of the Optuna trial asked for it in its arm's study.
        self.numbers: dict[str, int] = {}
        # Tune trials whose Optuna trial has ended (told once, whatever Tune reports later).
        self.told: set[str] = set()
        # Trials suggested and not yet complete, and how many may be (set_max_concurrency).
        # Kept here, saved with the rest, rather than in Tune's ConcurrencyLimiter, whose
        # count is not restored with a Tuner: a trial resumed by --resume would never have
        # its completion passed on.
        self.live: set[str] = set()
        self.max_concurrent = 0
        # Trials Optuna was told had failed; --resume may still finish them.
        self.failed: set[str] = set()
        # Arms that get no more trials in this run (their input is bad); not saved, so a
        # --resume after fixing the input opens them again.
        self.closed: dict[str, str] = {}
        self.results_uri = results_uri
        self.arm_configs = dict(arm_configs or {})
        self.optuna_storage = optuna_storage

    def close_arm(self, arm: str, reason: str) -> None:
        """Suggest no more trials for ``arm`` in this run."""
        self.closed.setdefault(arm, reason)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # each arm's space and objective are fixed at construction

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """At most ``max_concurrent`` trials at once (0: no limit); Tune's Searcher API."""
        self.max_concurrent = max_concurrent
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        open_arms = [a for a in self.studies if self.suggested[a] < self.num_samples and a not in self.closed]
        if not open_arms:
            return Searcher.FINISHED
        if self.max_concurrent and len(self.live) >= self.max_concurrent:
            return None  # asked again when a trial completes
        arm = min(open_arms, key=lambda a: (self.suggested[a], self.finished[a]))
        trial = self.studies[arm].ask(optuna_space(self.spaces[arm]))
        self.suggested[arm] += 1
        self.trial_arm[trial_id] = arm
        self.numbers[trial_id] = trial.number
        self.live.add(trial_id)
        return {"arm": arm, **trial.params, **self.fixed}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self.trial_arm:
            return
        branch = is_branch_result(result, self.metric)
        if branch or (trial_id in self.failed and _is_own_final(result, self.metric)):
            # A trial told FAIL that --resume finished joins the arm's study here, like a
            # branch: its Optuna trial has ended already.
            arm = self.trial_arm[trial_id]
            record_branch(
                self.studies[arm], trial_id, result, self.metric, optuna_space(self.spaces[arm]), branch=branch
            )

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.trial_arm:
            return
        self._complete(trial_id, result, error)
        if self.results_uri:
            optuna_db.publish(self.results_uri, self.optuna_storage)

    def _complete(self, trial_id: str, result: dict | None, error: bool) -> None:
        if result is not None and not is_own_final(result) and self.results_uri:
            # Its own final may be in the rows and not in this result: a driver stopped as
            # the trial reported it (tuning.py's reconcile_statuses keeps that row).
            result = row_store.finished_row(self.results_uri, trial_id) or result
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
        self.live.discard(trial_id)
        if trial_id in self.failed or trial_id in self.told:
            return  # told before (FAIL before --resume finished it: it joined in on_trial_result)
        if error:
            self.failed.add(trial_id)
            self._close_after(trial_id)
        value = None if result is None else result.get(self.metric)
        if value is not None:
            state = optuna.trial.TrialState.COMPLETE
        else:
            state = optuna.trial.TrialState.FAIL if error else optuna.trial.TrialState.PRUNED
        try:
            self.studies[arm].tell(self.numbers[trial_id], value, state=state)
        except ValueError as exc:  # a value Optuna refuses (NaN): the trial stays as it was
            logger.warning("Optuna trial %d of %s: %s", self.numbers[trial_id], arm, exc)
        self.told.add(trial_id)

    def _close_after(self, trial_id: str) -> None:
        record = failures.input_failure(self.results_uri, trial_id) if self.results_uri else None
        if record is None:
            return
        arms, reason = failures.arms_to_close(record, self.arm_configs)
        fresh = [a for a in arms if a in self.studies and a not in self.closed]
        for arm in fresh:
            self.close_arm(arm, reason)
        if not fresh:
            return
        if len(self.closed) < len(self.studies):
            logger.warning(
                "bad input: %s; %s gets no further trials in this run (fix it and --resume)", reason, ", ".join(fresh)
            )
            return
        # Every arm would meet it: the trials still running stop too, as on Ctrl-C (Tune
        # saves them resumable from their last checkpoints), instead of running on into it.
        stopping = stop_tune_gracefully()
        logger.warning(
            "bad input: %s; no further trial starts in this run%s (fix it and --resume)",
            reason,
            ", and the trials still running stop" if stopping else "",
        )

    def save(self, checkpoint_path: str) -> None:
        # The studies live in their database; what is saved is the routing and each arm's
        # sampler (its random state, so a resumed search draws what an uninterrupted one would).
        state = {
            "suggested": self.suggested,
            "finished": self.finished,
            "trial_arm": self.trial_arm,
            "numbers": self.numbers,
            "live": self.live,
            "max_concurrent": self.max_concurrent,
            "num_samples": self.num_samples,
            "fixed": self.fixed,
            "spaces": self.spaces,
            "samplers": {arm: study.sampler for arm, study in self.studies.items()},
        }
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        if "numbers" not in state:
            raise ValueError(
                f"{checkpoint_path}: the search state was saved by an older version of study/hpo/search.py "
                "(around Tune's OptunaSearch); finish this study with that version, or start a new one"
            )
        self.suggested, self.finished, self.trial_arm = state["suggested"], state["finished"], state["trial_arm"]
        self.numbers, self.num_samples, self.fixed = state["numbers"], state["num_samples"], state["fixed"]
        self.spaces = state["spaces"]
        self.live, self.max_concurrent = state["live"], state["max_concurrent"]
        for arm, sampler in state["samplers"].items():
            self.studies[arm].sampler = sampler
        # Arms closed by bad input open again.
        self.closed = {}
        # Which trials Optuna holds as ended, and which as FAIL (a resumed one of those
        # must not report to its ended Optuna trial), from Optuna itself.
        self.told, self.failed = set(), set()
        for arm, study in self.studies.items():
            states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
            for trial_id, number in self.numbers.items():
                if self.trial_arm[trial_id] != arm or number not in states:
                    continue
                if states[number].is_finished():
                    self.told.add(trial_id)
                if states[number] == optuna.trial.TrialState.FAIL:
                    self.failed.add(trial_id)
        self.fail_orphans()
        self.rejoin_branches()

    def rejoin_branches(self) -> int:
        """Add the branch results that the rows hold and the arms' studies lack.

        A trial reports a branch's final after writing its row and checkpoint; a driver
        stopped in between (Ctrl-C, a kill) never passed that report on, and the resumed
        trial, restored from the checkpoint after it, does not report it again.
        """
        if not self.results_uri:
            return 0
        added = 0
        for row in row_store.read_rows(self.results_uri):
            trial_id = row.get("trial_id")
            if trial_id in self.trial_arm and is_branch_result(row, self.metric):
                arm = self.trial_arm[trial_id]
                added += record_branch(self.studies[arm], trial_id, row, self.metric, optuna_space(self.spaces[arm]))
        return added

    def fail_orphans(self) -> int:
        """Mark Optuna trials that no Tune trial will ever finish as FAIL, and ask for them again.

        A driver killed between asking Optuna and saving Tune's experiment state leaves
        RUNNING trials in the database that the restored experiment does not know. Each is
        enqueued again, so the resumed search runs what it had asked for (the recipe above all).
        """
        count = 0
        for arm, study in self.studies.items():
            known = {n for tid, n in self.numbers.items() if self.trial_arm[tid] == arm}
            for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                if frozen.number not in known:
                    study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)
                    study.enqueue_trial(frozen.params)
                    logger.warning(
                        "Optuna trial %d of %s was asked for before the driver stopped and never started: "
                        "marked FAIL and asked for again",
                        frozen.number,
                        arm,
                    )
                    count += 1
        return count


def build_search(
    resolved: ResolvedStudy,
    num_samples: int,
    results_uri: str,
    arm_configs: dict[str, dict[str, Any]] | None = None,
) -> ArmSearch:
    study = resolved.study
    db = optuna_db.open_storage(results_uri, study.optuna_storage)
    studies, spaces = {}, {}
    for index, spec in enumerate(resolved.arms):
        spaces[spec.name] = spec.space
        studies[spec.name] = arm_study(
            spec.name,
            spec.space,
            storage=db,
            seed=study.seed * 1000 + index,
            num_samples=num_samples,
            first_point=dict(spec.recipe),
            study_name=optuna_store.study_name(results_uri, spec.name, study.optuna_storage),
        )
    return ArmSearch(
        studies,
        num_samples,
        study.objective,
        spaces,
        fixed={"seed": study.seed},
        results_uri=results_uri,
        arm_configs=arm_configs,
        optuna_storage=study.optuna_storage,
    )
