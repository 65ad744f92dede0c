"""Loading a trial's checkpoint at resume, with a fall-back past a damaged one.

A checkpoint cut short (a disk that filled up while it was written, a node lost mid-copy)
would otherwise fail every restart of the trial the same way: Ray Train retries the latest
checkpoint, which cannot load, ``max_failures`` times. Here a checkpoint that cannot be
loaded is reported once, naming its file, and the one before it is tried (Ray Train keeps
``num_to_keep`` of them, trainables/engine/ray_entry.py); with none left the trial starts over.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

# What torch.load raises for a truncated, empty or garbled file, or one gone missing.
UNREADABLE = (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError)


def first_loadable(
    candidates: Sequence[str], load: Callable[[str], dict[str, Any]], log: Callable[[str], None] | None
) -> tuple[dict[str, Any] | None, str | None]:
    """The newest checkpoint in ``candidates`` (newest first) that loads, and its folder;
    ``(None, None)`` when none does. ``log`` (rank 0's, None on other ranks) hears of each
    one skipped."""
    for index, folder in enumerate(candidates):
        try:
            return load(folder), folder
        except UNREADABLE as err:
            if log is not None:
                after = (
                    f"falling back to {candidates[index + 1]}"
                    if index + 1 < len(candidates)
                    else "no earlier checkpoint: the trial starts over"
                )
                log(f"checkpoint {folder} cannot be loaded ({type(err).__name__}: {err}); {after}")
    return None, None


def older_first_newest(latest: str, siblings: Sequence[str]) -> list[str]:
    """``latest`` and then the checkpoints beside it that sort before it, newest first (Ray
    Train names them ``checkpoint_<time or index>``, which sort in the order written)."""
    name = latest.rstrip("/").rsplit("/", 1)[-1]
    older = sorted(
        (s for s in siblings if s.rstrip("/").rsplit("/", 1)[-1] < name and "checkpoint_" in s.rsplit("/", 1)[-1]),
        reverse=True,
    )
    return [latest, *older]
