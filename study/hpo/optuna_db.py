"""Where the Optuna studies live: one SQLite file per study folder on the driver's disk, or a
storage the preset names (``optuna_storage``: an RDB URL or a journal file) that outlives the
head node."""

from __future__ import annotations

import contextlib
import os
import sqlite3

import optuna

from trainables.contract import storage
from trainables.contract.errors import ConfigError
from trainables.contract.optuna_store import JOURNAL, open_url


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


def publish(results_uri: str, url: str = "") -> None:
    """For s3:// results with the default storage, copy the local Optuna database next to
    the results (a storage of the preset's own needs no copy)."""
    if storage.is_uri(results_uri) and not url:
        with open(local_path(results_uri), "rb") as f:
            storage.write_bytes_atomic(storage.join(results_uri, "optuna.db"), f.read())


def open_storage(results_uri: str, url: str = "") -> optuna.storages.BaseStorage:
    """The Optuna storage for every arm's study.

    By default one SQLite file (``optuna-dashboard sqlite:///...``): only the Tune driver
    writes to it, so SQLite's single writer is enough; on shared storage (s3://) it is kept
    on the driver's disk beside the Tune folder's local copy. ``url``: an RDB URL or
    ``journal:PATH`` instead.
    """
    return open_url(url or f"sqlite:///{local_path(results_uri)}")


def dashboard_command(results_uri: str, url: str = "") -> str:
    """How to watch the studies with optuna-dashboard."""
    if url.startswith(JOURNAL):
        return f"optuna-dashboard {url[len(JOURNAL) :]}"
    return f"optuna-dashboard {url or 'sqlite:///' + local_path(results_uri)}"


def check(results_uri: str, url: str = "") -> None:
    """A study's Optuna storage can be used, or a ConfigError that names it (before Ray
    starts: a damaged or unreachable one would otherwise end the study at its first trial,
    in Optuna's words)."""
    if url:
        _check_named(url)
        return
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


def _check_named(url: str) -> None:
    if url.startswith(JOURNAL):
        folder = os.path.dirname(os.path.abspath(url[len(JOURNAL) :]))
        if not os.path.isdir(folder):
            raise ConfigError(f"optuna_storage={url}: the folder {folder} does not exist", "optuna_storage")
        return
    try:
        optuna.storages.RDBStorage(url).get_all_studies()
    except Exception as err:  # the database driver's own errors: unreachable, refused, missing module
        raise ConfigError(
            f"optuna_storage={url} cannot be used ({type(err).__name__}: {str(err).splitlines()[0]})",
            "optuna_storage",
        ) from None
