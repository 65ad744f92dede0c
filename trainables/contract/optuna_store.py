"""Where a study's Optuna studies are and what each is called: shared by the driver, which
writes them (study/hpo/optuna_db.py), and the report, which draws them (analysis/optuna_plots.py).

By default one SQLite file per study folder (``optuna.db``); a preset may name a storage of
its own (``optuna_storage``: an RDB URL or ``journal:PATH``), which several studies may
share, so there each arm's study is named FOLDER:ARM.
"""

from __future__ import annotations

import os

import optuna

JOURNAL = "journal:"
DEFAULT_FILE = "optuna.db"


def study_name(results_uri: str, arm: str, url: str = "") -> str:
    """An arm's Optuna study name: the arm's own in the study folder's database; FOLDER:ARM
    in a storage several studies may share."""
    return f"{os.path.basename(results_uri.rstrip('/'))}:{arm}" if url else arm


def open_url(url: str) -> optuna.storages.BaseStorage:
    """An RDB URL (``sqlite:///...``, ``postgresql://...``) or ``journal:PATH``."""
    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url[len(JOURNAL) :]))
    return optuna.storages.RDBStorage(url)
