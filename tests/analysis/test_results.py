"""Parquet rows: typed, one file per evaluation, rewrites instead of duplicates."""

import os

import pandas as pd
import pytest

from trainables.contract import row_store


def _row(trial="t1", iteration=10, status="running", cost=None, **kw):
    return {
        "study": "s",
        "arm": "scratch-tiny-f1",
        "trial_id": trial,
        "init": "scratch",
        "iteration": iteration,
        "cost_iterations": iteration if cost is None else cost,
        "max_iterations": 20,
        "bbox_AP": 0.25,
        "schedule": 2.0,
        "trunk_schedule": 2.0,
        "phase": "trunk" if status == "running" else "final",
        "status": status,
        **kw,
    }


def test_rows_read_back_typed(tmp_path):
    uri = str(tmp_path)
    row_store.write_row(uri, _row(iteration=10))
    row_store.write_row(uri, _row(iteration=20, status="completed", loss=float("nan")))
    df = pd.read_parquet(tmp_path / "metrics")
    assert list(df.columns) == list(row_store.COLUMNS)
    assert df.sort_values("iteration")["iteration"].tolist() == [10, 20]
    assert str(df["iteration"].dtype) == "int64" and str(df["bbox_AP"].dtype) == "float64"
    assert df["loss"].isna().all()  # NaN is stored as missing, never as a number


def test_same_evaluation_rewrites_the_same_file(tmp_path):
    uri = str(tmp_path)
    first = row_store.write_row(uri, _row(bbox_AP=0.1))
    second = row_store.write_row(uri, _row(bbox_AP=0.2))
    assert first == second
    df = pd.read_parquet(tmp_path / "metrics")
    assert len(df) == 1 and df["bbox_AP"].item() == 0.2


def test_hidden_temporary_files_do_not_break_readers(tmp_path):
    uri = str(tmp_path)
    row_store.write_row(uri, _row())
    (tmp_path / "metrics" / ".tmp-half-written").write_bytes(b"PAR1 not yet")
    assert len(pd.read_parquet(tmp_path / "metrics")) == 1
    assert not [n for n in os.listdir(tmp_path / "metrics") if n.startswith(".") and n != ".tmp-half-written"]


def test_mark_status_only_changes_running_rows(tmp_path):
    uri = str(tmp_path)
    row_store.write_row(uri, _row(iteration=10))
    row_store.write_row(uri, _row(iteration=20))
    assert row_store.mark_status(uri, "t1", "stopped")
    df = pd.read_parquet(tmp_path / "metrics").sort_values("iteration")
    assert df["status"].tolist() == ["running", "stopped"]
    row_store.write_row(uri, _row(trial="t2", iteration=20, status="completed"))
    assert not row_store.mark_status(uri, "t2", "stopped")
    assert not row_store.mark_status(uri, "absent", "stopped")
    assert row_store.last_row(uri, "t2")["status"] == "completed"
    # A finished branch (1x of a 2x trunk) is a result, never relabelled.
    row_store.write_row(uri, _row(trial="t3", iteration=10, status="completed", schedule=1.0))
    assert not row_store.mark_status(uri, "t3", "failed", only_if=("running", "completed"))


def test_a_branch_final_and_a_trunk_row_at_the_same_iteration_are_two_rows(tmp_path):
    uri = str(tmp_path)
    row_store.write_row(uri, _row(iteration=10, status="completed", schedule=1.0, cost=10))
    row_store.write_row(uri, _row(iteration=10, cost=17))
    df = pd.read_parquet(tmp_path / "metrics")
    assert sorted(df["phase"]) == ["final", "trunk"] and row_store.last_row(uri, "t1")["phase"] == "trunk"


def test_unknown_column_is_rejected(tmp_path):
    with pytest.raises(KeyError, match="bogus"):
        row_store.write_row(str(tmp_path), _row(bogus=1))
