"""Where the Optuna studies live: one SQLite file per study folder, on the driver's disk."""

from __future__ import annotations

import contextlib
import os
import sqlite3

import optuna

from trainables.contract import storage
from trainables.contract.trial_config import ConfigError


def local_path(results_uri: str) -> str:
    """The SQLite file behind the Optuna studies (on the driver's disk for s3:// results).

    For s3:// results a copy published earlier is fetched first, so a study resumed on a
    new head keeps its Optuna trials.
    """
    if not storage.is_uri(results_uri):
        os.makedirs(os.path.abspath(results_uri), exist_ok=True)
        return os.path.join(os.path.abspath(results_uri), "optuna.db")
    folder = storage.cache_dir() / "optuna" / results_uri.split("://", 1)[1].replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "optuna.db"
    remote = storage.join(results_uri, "optuna.db")
    if not path.exists() and storage.exists(remote):
        path.write_bytes(storage.read_bytes(remote))
    return str(path)


def publish(results_uri: str) -> None:
    """For s3:// results, copy the local Optuna database next to the results."""
    if storage.is_uri(results_uri):
        with open(local_path(results_uri), "rb") as f:
            storage.write_bytes_atomic(storage.join(results_uri, "optuna.db"), f.read())


def open_storage(results_uri: str) -> optuna.storages.RDBStorage:
    """One SQLite file for every arm's study (``optuna-dashboard sqlite:///...``).

    Only the Tune driver writes to it, so SQLite's single writer is enough. On shared
    storage (s3://) it is kept on the driver's disk beside the Tune folder's local copy.
    """
    return optuna.storages.RDBStorage(f"sqlite:///{local_path(results_uri)}")


def check(results_uri: str) -> None:
    """A study's Optuna database is whole, or a ConfigError that names it (before Ray starts:
    a damaged file would otherwise end the study at its first trial, in Optuna's words)."""
    path = local_path(results_uri)
    if not os.path.exists(path):
        return  # a study killed before its first trial: the search starts afresh
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
            db.execute("SELECT count(*) FROM studies").fetchone()
    except sqlite3.DatabaseError as err:
        verdict = str(err)
    if verdict != "ok":
        raise ConfigError(
            f"{path} is damaged ({verdict}); nothing was changed. Restore it from a copy (the rows in metrics/ are "
            f"intact), or move it away to resume with a search that starts afresh",
            "optuna.db",
        )
