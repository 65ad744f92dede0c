"""benchmarks/gpu_profile.py's CPU mode: every section of the GPU run, at toy size, in seconds
(the GPU run is one prepared command on a lent machine; this is what keeps it runnable)."""

import csv
import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import gpu_profile  # noqa: E402


def test_the_profile_runs_every_section_on_the_cpu(tmp_path, capsys):
    gpu_profile.main(["--cpu", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["S0"]["device"] == "CPU" and summary["S0"]["torch"]
    # S1: the bare step, its blocks, and the steps whose batch shape or mask-RoI count was new.
    s1 = summary["S1"]
    assert s1["images_per_s"] > 0 and len(s1["blocks"]) == 4 and 1 <= s1["new_steps"] <= s1["steps"]
    assert summary["S1_warmed"]["images_per_s"] > 0
    # S2: the profiler's census (thousands of ops per step; item reads are the GPU's syncs).
    assert summary["S2"]["aten_ops"] > 1000 and summary["S2"]["item_syncs"] > 0
    assert "aten::" in (tmp_path / "profile_bare.txt").read_text()
    assert json.loads(gzip.decompress((tmp_path / "trace_bare.json.gz").read_bytes()))["traceEvents"]
    # S3-S5: the variants, the four loader settings and the engine, each with a speed.
    assert len(summary["S3"]) == 4 and all(v["images_per_s"] > 0 for v in summary["S3"].values())
    loaders = [k for k in summary["S4"] if not k.startswith("loader alone")]
    assert len(loaders) == 4 and all(0 <= summary["S4"][k]["next_share"] < 1 for k in loaders)
    assert summary["S5"]["loop_images_per_s"] > 0
    with (tmp_path / "steps.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["section"] for r in rows} == {"S1", *(f"S4 {k}" for k in loaders)}
    assert all(float(r["wall_ms"]) > 0 and int(r["n"]) >= 0 for r in rows)
    table = (tmp_path / "summary.txt").read_text()
    assert all(f"\nS{k} " in table for k in range(1, 6)) and table in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "profile_bare.txt",
        "steps.csv",
        "summary.json",
        "summary.txt",
        "syncs.txt",
        "trace_bare.json.gz",
    ]
