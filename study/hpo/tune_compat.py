"""Every private Ray Tune name the study uses, in one place (Ray is pinned in
pyproject.toml; tests/test_compat.py fails when an upgrade moves one).

Resuming the per-arm search (study/hpo/search.py) depends on the layout of Tune's
``SearchGenerator`` state; stopping Tune's loop from the driver's own signal handler
(study/guards/interrupts.py) on the signal Tune listens to besides SIGINT.
"""

from __future__ import annotations

import signal

from ray.tune.search import SearchGenerator


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


def stop_tune_gracefully() -> bool:
    """Ask a running ``Tuner.fit`` to stop as on Ctrl-C; False when no Tune loop listens.

    Tune stops gracefully on SIGINT, and on SIGUSR1 whatever ``TUNE_DISABLE_SIGINT_HANDLER``
    says (``_setup_signal_catching`` in ray/tune/tune.py, installed when ``tune.run``
    starts): the driver handles SIGINT itself and passes the stop on through SIGUSR1. Before
    Tune's handler is in place SIGUSR1 would kill the process, so then nothing is sent.
    """
    if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, signal.SIG_IGN, None):
        return False
    signal.raise_signal(signal.SIGUSR1)
    return True
