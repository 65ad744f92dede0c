"""Every private Ray Tune name the study uses, in one place (Ray is pinned in
pyproject.toml; tests/test_tune_compat.py fails when an upgrade moves one).

The per-arm searcher (study/search.py) wraps Tune's ``OptunaSearch``, whose Optuna study
and its map of Tune trial ids to Optuna trials are private attributes; resuming also
needs the searcher's pickled state and Tune's ``SearchGenerator`` state layout.
"""

from __future__ import annotations

from typing import Any

import optuna
from ray.tune.search import SearchGenerator
from ray.tune.search.optuna import OptunaSearch


def optuna_study(searcher: OptunaSearch) -> optuna.Study:
    """The Optuna study behind an ``OptunaSearch``."""
    return searcher._ot_study


def optuna_trials(searcher: OptunaSearch) -> dict[str, optuna.trial.Trial]:
    """Tune trial id -> the Optuna trial an ``OptunaSearch`` asked for it."""
    return searcher._ot_trials


def searcher_state(searcher: OptunaSearch) -> dict[str, Any]:
    """What ``OptunaSearch.save`` would write, as a dict to pickle with other state."""
    return searcher.__dict__.copy()


def restore_searcher_state(searcher: OptunaSearch, state: dict[str, Any]) -> None:
    searcher.__dict__.update(state)


class ResumableSearch(SearchGenerator):
    """Tune's wrapper of a Searcher, which asks it again after a restore.

    Once the searcher has said FINISHED (every arm used up, or closed by bad input), Tune's
    SearchGenerator remembers it in its saved state ("finished") and a restored experiment
    would never ask again; arms that bad input closed would then never get their remaining
    trials after the input was fixed. A restored run asks once more: the searcher answers
    FINISHED again if nothing is left.
    """

    def set_state(self, state: dict) -> None:
        super().set_state({**state, "finished": False})
