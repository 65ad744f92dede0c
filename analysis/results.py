"""Load a study's evaluation rows into pandas: de-duplicated, typed, ordered.

Needs only pandas and pyarrow (no Ray, no torch), so results can be read on any laptop;
the rows' contract and the storage helpers are the trials' own (trainables/contract/rows.py,
trainables/contract/storage.py), which import nothing else.
"""

from __future__ import annotations

import os

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from trainables.contract import storage
from trainables.contract.rows import (
    COMPLETED,
    FINAL,
    METRICS_DIR,
    ROW_KEY,
    SCHEMA,
    STOPPED,
    is_own_final,
    ranking_score,
)

KEY = list(ROW_KEY)


def metrics_path(path: str | os.PathLike) -> str:
    """``DIR/NAME`` or ``DIR/NAME/metrics`` (local or s3://) -> the metrics folder."""
    path = os.fspath(path).rstrip("/")
    if os.path.basename(path) == METRICS_DIR:
        return path
    return f"{path}/{METRICS_DIR}"


def load_results(path: str | os.PathLike) -> pd.DataFrame:
    """Every evaluation row of a study, one row per (trial_id, cost_iterations).

    Rows are read with the results schema, so columns have stable dtypes even when a
    study has no pretrained arm or no evaluation yet (an empty frame with all columns).
    Should a (trial_id, cost_iterations) appear twice, the row written last wins.
    """
    folder = metrics_path(path)
    fs, inner = storage.filesystem(folder)
    info = fs.get_file_info(inner)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"no results at {folder} (expected DIR/NAME or DIR/NAME/metrics)")
    table = pq.read_table(inner, filesystem=fs, schema=SCHEMA)
    df = table.to_pandas()
    if df.empty:
        return df
    df = (
        df.sort_values("written_at")
        .drop_duplicates(KEY, keep="last")
        .sort_values(["arm", "trial_id", "cost_iterations"])
        .reset_index(drop=True)
    )
    for col in ("pretrain_images_seen", "resumed_from", "fork_iteration", "skipped_images", "left_out_annotations"):
        df[col] = df[col].astype("Int64")
    for col in ("study", "arm", "trial_id", "init", "model", "norm", "phase", "status", "code_version"):
        df[col] = df[col].astype("string")
    return df


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Every schedule's final result: one row per (trial, schedule) that ended its cooldown
    (status "completed") or diverged on the way ("diverged")."""
    if df.empty:
        return df
    return df[df["phase"] == FINAL].sort_values(["arm", "trial_id", "schedule"])


def ranked(df: pd.DataFrame, objective: str) -> pd.DataFrame:
    """Rows best first by the rule the early-stopping rungs use (trainables/contract/rows.py's
    ``ranking_score``: the objective, the training loss as tie-breaker), then by trial id and
    iteration, so that equal scores (every AP is 0 in a smoke run) choose the same row however
    the files were listed or the trials named. Rows without a value come last."""
    score = [
        ranking_score(v, None if pd.isna(loss) else float(loss)) if pd.notna(v) else float("nan")
        for v, loss in zip(df[objective], df["loss"])
    ]
    keyed = df.assign(_score=pd.Series(score, index=df.index, dtype=float))
    keys = ["_score", "trial_id", "iteration"]
    ordered = keyed.sort_values(keys, ascending=[False, True, True], na_position="last", kind="stable")
    return ordered.drop(columns="_score")


def best_row(df: pd.DataFrame, objective: str) -> pd.Series:
    """The row :func:`ranked` puts first (``df`` not empty)."""
    return ranked(df, objective).iloc[0]


def trial_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The last row of every trial, with ``trial_status``: one of :data:`TRIAL_STATUSES`.

    "completed": it reached its own (trunk) schedule's final result; "stopped": early
    stopping ended it after a shorter schedule's result, or on its trunk.
    """
    if df.empty:
        return df.assign(trial_status=pd.Series(dtype="string"))
    last = df.sort_values("cost_iterations").groupby("trial_id", sort=False).tail(1).sort_values(["arm", "trial_id"])
    reached = is_own_final(last)
    status = last["status"].astype(object).copy()
    status[(status == COMPLETED) & ~reached] = STOPPED
    return last.assign(trial_status=status.astype("string"))
