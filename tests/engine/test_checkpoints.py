"""A damaged checkpoint at resume is reported once, naming its file, and the trial falls back
to the one before (or its start) instead of Ray retrying the same file."""

import os

import torch

from trainables.engine.checkpoints import first_loadable, older_first_newest


def _save(folder, iteration):
    os.makedirs(folder)
    torch.save({"iteration": iteration, "weights": torch.arange(1000.0)}, os.path.join(folder, "state.pt"))


def _load(folder):
    return torch.load(os.path.join(folder, "state.pt"), map_location="cpu", weights_only=False)


def test_a_truncated_checkpoint_falls_back_to_the_one_before(tmp_path):
    older, latest = str(tmp_path / "checkpoint_000001"), str(tmp_path / "checkpoint_000002")
    _save(older, 6)
    _save(latest, 12)
    siblings = [latest, older, str(tmp_path / "other")]
    candidates = older_first_newest(latest, siblings)
    assert candidates == [latest, older]
    logged = []
    assert first_loadable(candidates, _load, logged.append)[0]["iteration"] == 12 and not logged

    path = os.path.join(latest, "state.pt")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    state, folder = first_loadable(candidates, _load, logged.append)
    assert state["iteration"] == 6 and folder == older
    assert len(logged) == 1 and latest in logged[0] and "falling back to" in logged[0] and older in logged[0]
    # Other ranks load the same way without a word.
    assert first_loadable(candidates, _load, None)[0]["iteration"] == 6


def test_no_loadable_checkpoint_starts_the_trial_over(tmp_path):
    only = str(tmp_path / "checkpoint_000001")
    _save(only, 6)
    open(os.path.join(only, "state.pt"), "wb").close()  # emptied
    logged = []
    assert first_loadable([only], _load, logged.append) == (None, None)
    assert "starts over" in logged[0] and only in logged[0]
    # A folder whose file vanished is skipped the same way.
    assert first_loadable([str(tmp_path / "checkpoint_gone")], _load, logged.append) == (None, None)
