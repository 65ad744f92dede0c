"""Evaluation rows as an append-only Parquet dataset: ``DIR/NAME/metrics/*.parquet``.

Each evaluation is one single-row file named ``{trial_id}-{cost:09d}.parquet``, where
``cost`` is the iterations the trial had computed (trunk plus branches; unique within a
trial, while a branch's final and a trunk row may share an ``iteration``), written
atomically, so ``pandas.read_parquet("DIR/NAME/metrics")`` works at any moment, also while
a study is running. The name is deterministic: when a restored run repeats an evaluation
(the checkpoint before it was the last one saved), it rewrites the same file instead of
adding a duplicate row. The final status of a trial that Tune stopped or that
failed is set by rewriting its last row the same way.

The columns and their types are fixed by the rows' contract (trainables/contract/rows.py), so shards always
concatenate.
"""

from __future__ import annotations

import io
import math
import time
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from trainables.contract import storage
from trainables.contract.rows import (
    COLUMNS,
    LOSS_KEYS,
    METRICS_DIR,
    RUNNING,
    SCHEMA,
    is_branch_final,
    is_completed_final,
    is_own_final,
)

__all__ = ["COLUMNS", "LOSS_KEYS", "SCHEMA", "write_row", "read_row", "read_rows", "last_row", "mark_status"]


def metrics_dir(results_uri: str) -> str:
    return storage.join(results_uri, METRICS_DIR)


def shard_path(results_uri: str, trial_id: str, cost: int) -> str:
    return storage.join(metrics_dir(results_uri), f"{trial_id}-{cost:09d}.parquet")


def write_row(results_uri: str, row: dict[str, Any]) -> str:
    """Write one evaluation row; returns the shard's path. Unknown columns are an error."""
    extra = set(row) - set(COLUMNS)
    if extra:
        raise KeyError(f"not result columns: {sorted(extra)}")
    full = {name: _clean(row.get(name)) for name in COLUMNS}
    full["written_at"] = time.time()
    table = pa.Table.from_pylist([full], schema=SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    path = shard_path(results_uri, full["trial_id"], full["cost_iterations"])
    storage.write_bytes_atomic(path, buf.getvalue())
    return path


def _clean(value: Any) -> Any:
    # Parquet keeps NaN, but the study promises none: a non-finite number is "missing".
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def trial_shards(results_uri: str, trial_id: str) -> list[str]:
    return [
        p
        for p in storage.list_files(metrics_dir(results_uri), ".parquet")
        if p.rsplit("/", 1)[-1].startswith(f"{trial_id}-")
    ]


def read_row(path: str) -> dict[str, Any]:
    return pq.read_table(io.BytesIO(storage.read_bytes(path)), schema=SCHEMA).to_pylist()[0]


def read_rows(results_uri: str) -> list[dict[str, Any]]:
    """Every row written so far (one per shard), in no particular order."""
    return [read_row(p) for p in storage.list_files(metrics_dir(results_uri), ".parquet")]


def last_row(results_uri: str, trial_id: str) -> dict[str, Any] | None:
    shards = trial_shards(results_uri, trial_id)  # zero-padded costs sort in the order written
    return read_row(shards[-1]) if shards else None


def finished_row(results_uri: str, trial_id: str) -> dict[str, Any] | None:
    """The trial's own final result if its rows end with it, completed: the trial finished,
    whatever a driver stopped at that moment last heard of it."""
    row = last_row(results_uri, trial_id)
    if row is not None and is_completed_final(row) and is_own_final(row):
        return row
    return None


def mark_status(results_uri: str, trial_id: str, status: str, only_if: tuple[str, ...] = (RUNNING,)) -> bool:
    """Set the status of a trial's last row (e.g. "stopped" after an early stop).

    Only rows whose status is in ``only_if`` change, so a completed or diverged trial keeps
    its status; a shorter schedule's final result (a finished branch) is never rewritten.
    Returns whether a row was rewritten.
    """
    row = last_row(results_uri, trial_id)
    if row is None or row["status"] not in only_if:
        return False
    if is_branch_final(row):
        return False
    row["status"] = status
    row.pop("written_at", None)
    write_row(results_uri, row)
    return True
