"""Interrupts: SIGINT (Ctrl-C), SIGTERM and SIGHUP stop a study cleanly and say how to resume it.

The driver installs one ``Interrupts`` for its whole run. The first signal during Tune's
loop asks Tune to stop as on Ctrl-C (Ray docs, "Stop a Tune experiment manually"): it saves
the experiment's state, leaves unfinished trials resumable from their last checkpoints, and
returns; outside Tune's loop, and at a second signal, ``Interrupted`` is raised at once.
Either way the driver prints no summary, ends with its own ``--resume`` command and exits
with the shell's convention, 128 + the signal's number (130, 143, 129).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """Raised in the driver's main thread; a BaseException like KeyboardInterrupt, so that no
    ``except Exception`` on the way (Tune's own included) delays the exit."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Interrupts:
    """The driver's handler of SIGINT, SIGTERM and SIGHUP; ``signum`` is the first received."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._in_tune = False
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        """Take the signals; again after ``ray.init``, whose core installs its own SIGTERM
        handler (it logs and aborts the driver)."""
        # This handler decides what Ctrl-C does, not Tune's: Tune's environment variable
        # (Ray docs, "Environment variables used by Ray Tune").
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        for sig in SIGNALS:
            previous = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, previous)

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    @contextlib.contextmanager
    def tune_running(self) -> Iterator[None]:
        """While Tune's loop may run: a first signal stops it gracefully instead of raising."""
        if self.signum is not None:
            raise Interrupted(self.signum)
        self.install()  # Ray is running by now
        self._in_tune = True
        try:
            yield
        finally:
            self._in_tune = False
        if self.signum is not None:
            raise Interrupted(self.signum)

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is None:
            self.signum = signum
            if self._in_tune and _stop_tune():
                print(
                    f"\n{name}: stopping the study; its trials keep their last checkpoints "
                    f"({name} again stops at once)",
                    file=sys.stderr,
                    flush=True,
                )
                return
        raise Interrupted(self.signum)

    @property
    def exit_status(self) -> int:
        return 128 + (self.signum or 0)


def _stop_tune() -> bool:
    from study.hpo import tune_compat  # Ray is imported only once the study runs

    return tune_compat.stop_tune_gracefully()


def resume_line(uri: str, signum: int) -> str:
    """The closing lines of an interrupted driver: what stopped it and the command to go on."""
    results, name = uri.rstrip("/").rsplit("/", 1)
    return (
        f"study {name} interrupted by {signal.Signals(signum).name}: the rows written so far are in {uri}/metrics; "
        f"no trial was lost. Continue it with:\n  python study/run.py --results {results} --name {name} --resume"
    )
