"""TPE whose random start-up counts configurations, not schedule results.

Each Tune trial scores every schedule of its arm up to its own on a branch, and each of
those results joins the arm's Optuna study as a finished trial (study/hpo/search.py), so TPE
learns from every schedule scored. Optuna's ``TPESampler`` ends its random start-up after
``n_startup_trials`` finished trials, which would count the recipe's branches too: one
configuration of (lr, weight decay) scored at three schedules would end the start-up, and
TPE would model the learning rate from a single point. This sampler samples at random
until the arm's study holds ``startup`` distinct (lr, weight decay) configurations, then
hands every call to TPE. It is an Optuna sampler through Optuna's public ``BaseSampler``
interface ("User-Defined Sampler" in Optuna's docs).
"""

from __future__ import annotations

from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

# The parameters that make a configuration; the schedule is a rung of the same one.
CONFIG_KEYS = ("lr", "weight_decay")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def configurations(study: Study) -> int:
    """Distinct (lr, weight decay) among the study's finished trials (COMPLETE or PRUNED)."""
    seen = set()
    for trial in study.get_trials(deepcopy=False, states=FINISHED):
        if all(k in trial.params for k in CONFIG_KEYS):
            # Rounded to 12 significant digits: a branch's values went through Tune and
            # Parquet and may differ from its trunk's in the last bit.
            seen.add(tuple(float(f"{trial.params[k]:.12g}") for k in CONFIG_KEYS))
    return len(seen)


class ConfigurationStartupSampler(BaseSampler):
    """Random until ``startup`` configurations are finished, TPE (constant liar) after."""

    def __init__(self, startup: int, seed: int | None = None) -> None:
        self.startup = startup
        self.random = RandomSampler(seed=seed)
        # TPE's own start-up is this sampler's, so it models from its first call on.
        self.tpe = TPESampler(seed=seed, n_startup_trials=0, constant_liar=True)

    def in_startup(self, study: Study) -> bool:
        return configurations(study) < self.startup

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.tpe.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if self.in_startup(study):
            return {}
        return self.tpe.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        sampler = self.random if self.in_startup(study) else self.tpe
        return sampler.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.tpe.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: list[float] | None) -> None:
        self.tpe.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.random.reseed_rng()
        self.tpe.reseed_rng()


__all__ = ["ConfigurationStartupSampler", "configurations"]
