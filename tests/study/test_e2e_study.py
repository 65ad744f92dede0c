"""A whole study through the real stack, interrupted and resumed (on two Ray nodes:
test_e2e_cluster.py).

Marked e2e: these run several Train runs each (a few minutes on 2 cores).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pandas as pd
import pytest

from analysis import load_results, trial_rows
from study.hpo import tuning
from study.spec.presets import SMOKE
from tests.ray_output import driver_lines
from trainables.engine.branches import branches
from trainables.engine.schedule import total_iterations

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _expected_rows(base: int, schedules, trunk: float, period: int) -> list[tuple[str, float, int]]:
    """(phase, schedule, iteration) of an uninterrupted trial's rows, in the order written."""
    rows, it = [], 0
    for b in branches(base, tuple(schedules), trunk):
        rows += [("trunk", trunk, t) for t in range(it + 1, b.fork + 1) if t % period == 0]
        rows.append(("final", b.schedule, b.end))
        it = b.fork
    return rows


def _wait_for_rows(folder: Path, count: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the study ended before it could be interrupted (rc {proc.returncode})")
        if folder.exists() and len([p for p in folder.iterdir() if p.suffix == ".parquet"]) >= count:
            return
        time.sleep(0.5)
    raise AssertionError(f"no {count} rows in {folder} after {timeout}s")


def _wait_for_line(log: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the driver ended before printing {text!r}: {log.read_text()[-2000:]}")
        if text in log.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} in {log} after {timeout}s")


def _interrupt(proc: subprocess.Popen, signum: int, log: Path) -> str:
    """Send ``signum`` to the driver alone (as a terminal's Ctrl-C or a scheduler's SIGTERM
    would) and return its output once it has exited, within two minutes."""
    os.kill(proc.pid, signum)
    try:
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            _kill_session(proc)
    return log.read_text()


def _kill_session(proc: subprocess.Popen) -> None:
    """kill -9 the driver and every process of its session, as a crashed machine would lose
    them: Ray's worker processes lead process groups of their own (a ``killpg`` of the
    driver's group leaves them training, and writing rows, for a second or two)."""
    sid = proc.pid  # the driver was started with start_new_session=True
    while True:
        members = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue  # gone meanwhile
            # After the command's ")": state, ppid, pgrp, session; a zombie is dead already.
            if fields[0] != "Z" and int(fields[3]) == sid:
                members.append(int(stat.parent.name))
        if not members:
            break
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    proc.wait()


@pytest.fixture
def results_disk(tmp_path):
    """A 400 MB tmpfs for a study's results (root only; else a plain folder, None for the mount)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400m", "tmpfs", str(mount)], capture_output=True)
    try:
        yield mount, (mount if made.returncode == 0 else None)
    finally:
        if made.returncode == 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def test_interrupted_study_resumes_without_lost_or_duplicated_rows(tmp_path, results_disk):
    """Every way a study's driver is stopped, one after another on one study, and --resume
    always continues it:
    - SIGTERM mid-trial (over the SIGTERM handler Ray's core installs) stops it cleanly
      (exit 143, no summary, the project's own resume command last); while it ran, a second
      driver on its folder was refused (Ctrl-C takes the same path: SIGINT's exit 130 and
      Tune's stop are tested on the handler, tests/engine/test_faults.py);
    - kill -9 inside a cooldown: the next run takes the dead driver's lock over and
      continues in that branch;
    - the disk fills (on a tmpfs, as root): that resume stops in one line naming it, rows
      kept; with room made, --resume finishes the study with every row once.
    One arm of two trials (the search and early stopping across restarts) keeps it short;
    1x = 30 iterations gives the first trial rows enough to be interrupted in, and its 2x
    cooldown (40 to 60) checkpoints at 42, 48 and 54."""
    results, mount = results_disk
    base_iters = 30
    cmd = [sys.executable, "study/run.py", "--preset", "smoke", "--results", str(results), "--name", "S"]
    cmd += ["--set", 'axes.init=["scratch"]', "--set", f"solver.base_iters={base_iters}"]
    resume = [sys.executable, "study/run.py", "--results", str(results), "--name", "S", "--resume"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rows = results / "S" / "metrics"
    resume_cmd = f"python study/run.py --results {results} --name S --resume"

    def stopped_cleanly(proc: subprocess.Popen, out: str, signum: int) -> None:
        assert proc.returncode == 128 + signum, out[-3000:]
        assert out.strip().splitlines()[-1].strip() == resume_cmd, out[-3000:]
        assert f"interrupted by {signal.Signals(signum).name}" in out
        assert "best schedule result per arm" not in out and "Tuner.restore" not in out.splitlines()[-1]

    with open(tmp_path / "sigterm.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for_rows(rows, 2, proc, timeout=240)
        start = time.time()
        second = subprocess.run(resume, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2 and time.time() - start < 30, second.stderr
        assert f"is in use by another driver: host {socket.gethostname()}, pid {proc.pid}, since" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1, second.stderr
        stopped_cleanly(proc, _interrupt(proc, signal.SIGTERM, tmp_path / "sigterm.log"), signal.SIGTERM)
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "--resume" in again.stderr  # refuses to overwrite
    killed_at = _kill_inside_a_cooldown(resume, results / "S", env, tmp_path / "killed.log", base_iters)
    if mount is not None:
        # 30 MB left: above the stop's reserve (a 17 MB checkpoint + 8 MB), below it after
        # the next checkpoint.
        size = shutil.disk_usage(mount).used + 30 * 2**20
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)
        full = subprocess.run(resume, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
        out = full.stdout + full.stderr
        assert full.returncode == 1, out[-3000:]
        assert "note: took over" in out  # the lock the killed driver left
        assert "WARNING: only" in full.stdout  # the plan said so before it started
        last = full.stderr.strip().splitlines()[-1]
        assert last.startswith(f"out of space under {results / 'S'}: ") and "the same command with --resume" in last
        # No traceback from the driver. (A trial actor that Ray's shutdown terminates may print
        # "Exception ignored ... SystemExit" from Ray's own SIGTERM handler, forwarded as
        # "(train_driver_fn pid=N) ..." lines: Ray's teardown, not the study's.)
        assert "best schedule result per arm" not in out and "Traceback" not in "\n".join(driver_lines(out))
        assert len(pd.read_parquet(rows)) >= 1  # the rows so far, readable
        subprocess.run(["mount", "-o", "remount,size=400m", str(mount)], check=True)  # room made
    resumed = subprocess.run(resume, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert mount is not None or "note: took over" in resumed.stdout + resumed.stderr  # the first run after the kill
    assert "best schedule result per arm" in resumed.stdout
    # Tune's status table shows what one watches: arm, searched values, schedule, iteration, AP.
    header = [line for line in resumed.stdout.splitlines() if "Trial name" in line][-1]
    for column in ("arm", "lr", "weight decay", "trunk", "phase", "schedule", "iteration", "bbox AP", "segm AP"):
        assert column in header, header
    assert "rungs rebuilt from" in resumed.stdout  # early stopping remembers the first run

    raw = pd.read_parquet(results / "S" / "metrics")
    assert not raw.duplicated(["trial_id", "cost_iterations"]).any()
    # The branch the kill -9 met was continued from a checkpoint inside its cooldown (the
    # kill's, or the full disk's later one): no iteration of it was trained twice from the fork.
    trial_id, schedule, checkpoint = killed_at
    final = raw[(raw["trial_id"] == trial_id) & (raw["phase"] == "final") & (raw["schedule"] == schedule)]
    fork = next(b.fork for b in branches(base_iters, SMOKE.search.schedule, schedule) if b.schedule == schedule)
    assert len(final) == 1 and checkpoint <= final["resumed_from"].iloc[0] < final["iteration"].iloc[0], final
    assert final["resumed_from"].iloc[0] > fork
    df = load_results(results / "S")
    trials = trial_rows(df)
    assert len(trials) == SMOKE.num_samples  # every planned trial
    assert set(trials["arm"]) == {"scratch-tiny-f1"}
    assert set(trials["trial_status"]) <= {"completed", "stopped", "diverged"}
    for trial_id, rows in df.groupby("trial_id"):
        rows = rows.sort_values("cost_iterations")
        expected = _expected_rows(base_iters, SMOKE.search.schedule, rows["trunk_schedule"].iloc[0], SMOKE.eval_period)
        done = list(zip(rows["phase"], rows["schedule"], rows["iteration"]))
        assert done == expected[: len(done)], (trial_id, done)  # no evaluation lost, none doubled
        if trials.set_index("trial_id").loc[trial_id, "trial_status"] == "completed":
            assert done == expected
    # Every schedule's final result is scored on the test split too, at the same moment; the
    # trunk's are not, and neither Tune nor Optuna ever sees a test-split number.
    finals = df[(df["phase"] == "final") & (df["status"] == "completed")]
    assert finals["test_bbox_AP"].notna().all() and finals["test_segm_AP"].notna().all()
    assert df.loc[df["phase"] == "trunk", "test_bbox_AP"].isna().all()
    tune_results = list((results / "S" / tuning.TUNE_DIR).rglob("result.json"))
    assert tune_results and not any('"test_' in p.read_text() for p in tune_results)

    storage = optuna.storages.RDBStorage(f"sqlite:///{results / 'S' / 'optuna.db'}")
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    assert names == ["scratch-tiny-f1"]
    told = {optuna.trial.TrialState.COMPLETE: 0, optuna.trial.TrialState.PRUNED: 0}
    for name in names:
        for t in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False):
            if t.state in told:
                told[t.state] += 1
    # Completed (and diverged) trials are COMPLETE in Optuna, early-stopped ones PRUNED, and
    # every shorter schedule a trial finished on a branch is a COMPLETE trial of its own.
    branch_results = (
        (df["phase"] == "final") & (df["status"] == "completed") & (df["schedule"] < df["trunk_schedule"])
    ).sum()
    assert told[optuna.trial.TrialState.PRUNED] == (trials["trial_status"] == "stopped").sum()
    assert sum(told.values()) == len(trials) + branch_results
    assert sorted(_dashboard_studies(results / "S" / "optuna.db")) == names


def _kill_inside_a_cooldown(
    resume: list[str], folder: Path, env: dict, log_path: Path, base_iters: int
) -> tuple[str, float, int]:
    """Resume the study and kill -9 its whole process group as soon as Ray Train has
    recorded a checkpoint two evaluation periods or more before its cooldown's end (so that
    the kill lands before the branch's final row); return (trial, schedule, iteration) of
    that checkpoint."""
    snapshots = "train/train-*/checkpoint_manager_snapshot.json"
    before = {p: p.read_text() for p in folder.glob(snapshots)}  # the earlier runs' last states
    with open(log_path, "w") as log:
        proc = subprocess.Popen(resume, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + 240
            while time.time() < deadline and proc.poll() is None:
                # A checkpoint counts once it is in Ray Train's snapshot: a checkpoint folder
                # alone may be an upload the controller never recorded.
                for snapshot in folder.glob(snapshots):
                    try:
                        text = snapshot.read_text()
                        if text == before.get(snapshot):
                            continue
                        last = json.loads(text)["checkpoint_results"][-1]["metrics"]
                    except (json.JSONDecodeError, KeyError, IndexError):
                        continue  # being written
                    end = total_iterations(base_iters, last["schedule"])
                    if last.get("phase") != "checkpoint" or last["iteration"] > end - 2 * SMOKE.eval_period:
                        continue
                    _kill_session(proc)
                    finals = pd.read_parquet(folder / "metrics")
                    written = finals[(finals["trial_id"] == last["trial_id"]) & (finals["phase"] == "final")]
                    assert last["schedule"] not in set(written["schedule"]), "killed after the branch's end"
                    return last["trial_id"], last["schedule"], last["iteration"]
                time.sleep(0.2)
            pytest.fail(f"no checkpoint inside a cooldown: {log_path.read_text()[-2000:]}")
        finally:
            if proc.poll() is None:
                _kill_session(proc)


def _dashboard_studies(db: Path) -> list[str]:
    """Start optuna-dashboard (the monitor extra) on a study's database and read its studies over HTTP."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "optuna-dashboard"),
            f"sqlite:///{db}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                    return [s["study_name"] for s in json.load(response)["study_summaries"]]
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=30)
