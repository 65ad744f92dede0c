"""analysis.load_results: typed, de-duplicated, works on DIR/NAME or its metrics/, no Ray or torch."""

import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import final_rows, load_results, trial_rows
from trainables.contract import row_store


def _write(uri, trial, iteration, status="running", ap=0.1, schedule=2.0, cost=None):
    row_store.write_row(
        uri,
        {
            "study": "s",
            "arm": "scratch-tiny-f1",
            "trial_id": trial,
            "init": "scratch",
            "iteration": iteration,
            "cost_iterations": cost or iteration,
            "max_iterations": 20,
            "schedule": schedule,
            "trunk_schedule": 2.0,
            "bbox_AP": ap,
            "status": status,
            "phase": "final" if status in ("completed", "diverged") else "trunk",
        },
    )


def test_typed_and_deduplicated(tmp_path):
    uri = str(tmp_path / "S")
    _write(uri, "t1", 10)
    _write(uri, "t1", 20, status="completed", ap=0.3)
    _write(uri, "t2", 10, status="completed", schedule=1.0)  # its 1x branch, then stopped
    _write(uri, "t3", 5, status="stopped")
    # A copy of an evaluation under another file name (e.g. synced twice): the newer wins.
    row = {**row_store.read_row(row_store.shard_path(uri, "t1", 20)), "bbox_AP": 0.35, "written_at": 4e9}
    pq.write_table(pa.Table.from_pylist([row], schema=row_store.SCHEMA), tmp_path / "S" / "metrics" / "copy.parquet")
    df = load_results(uri)
    assert len(df) == 4 and not df.duplicated(["trial_id", "cost_iterations"]).any()
    assert df.loc[(df.trial_id == "t1") & (df.iteration == 20), "bbox_AP"].item() == 0.35
    assert str(df["status"].dtype) == "string" and str(df["iteration"].dtype) == "int64"
    assert str(df["pretrain_images_seen"].dtype) == "Int64"
    assert load_results(tmp_path / "S" / "metrics").equals(df)
    final = final_rows(df)
    assert final[["trial_id", "schedule"]].values.tolist() == [["t1", 2.0], ["t2", 1.0]]
    status = trial_rows(df).set_index("trial_id")["trial_status"].to_dict()
    assert status == {"t1": "completed", "t2": "stopped", "t3": "stopped"}


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results at"):
        load_results(tmp_path / "nothing")


def test_needs_neither_ray_nor_torch():
    code = "import sys, analysis; print(sorted(m for m in ('torch', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_empty_metrics_folder(tmp_path):
    (tmp_path / "S" / "metrics").mkdir(parents=True)
    df = load_results(tmp_path / "S")
    assert df.empty and "bbox_AP" in df.columns
    assert isinstance(final_rows(df), pd.DataFrame) and "trial_status" in trial_rows(df)
