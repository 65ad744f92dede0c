"""The compat modules: every private Ray/Tune name the project uses, pinned to the Ray that
pyproject.toml pins, and no private name anywhere else."""

from __future__ import annotations

import re
from pathlib import Path

from tests.study.test_search import _search
from trainables.engine import ray_compat

ROOT = Path(__file__).resolve().parent.parent
COMPAT = {"study/hpo/tune_compat.py", "trainables/engine/ray_compat.py", "trainables/model/torchvision_compat.py"}
# A private module or attribute of Ray, Optuna or torchvision, also where it is imported by
# name (``from torchvision.ops.poolers import _setup_scales``).
PRIVATE = re.compile(
    r"ray\._private|ray\.\w+(\.\w+)*\._internal|\._ot_\w+|(torchvision|optuna|ray)(\.\w+)*\._\w+"
    r"|from (torchvision|optuna|ray)[\w.]* import .*\b_[a-z]\w*"
)


def test_the_private_name_pattern_finds_what_it_is_for():
    assert PRIVATE.search("from torchvision.ops.poolers import _convert_to_roi_format, _filter_input")
    assert PRIVATE.search("x = optuna.samplers._tpe.sampler")
    assert not PRIVATE.search("from torchvision.ops import MultiScaleRoIAlign, roi_align")


def test_torchvision_private_helpers_are_the_poolers_own():
    """The pinned torchvision still has the pooler helpers trainables/model/roi_align.py borrows."""
    import torch
    from torchvision.ops import poolers

    from trainables.model import torchvision_compat as tc

    assert tc.setup_scales is poolers._setup_scales and tc.filter_input is poolers._filter_input
    rois = tc.convert_to_roi_format([torch.tensor([[0.0, 0.0, 4.0, 4.0]]), torch.tensor([[1.0, 1.0, 2.0, 3.0]])])
    assert rois.tolist() == [[0.0, 0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 1.0, 2.0, 3.0]]


def test_no_private_library_name_outside_the_compat_modules():
    for folder in ("study", "trainables", "analysis"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in COMPAT:
                continue
            hits = [line for line in path.read_text().splitlines() if PRIVATE.search(line)]
            assert not hits, f"{rel}: {hits}"


def test_a_restored_search_suggests_what_an_uninterrupted_one_would(tmp_path):
    """The per-arm search goes through Optuna's public ask-and-tell interface; a restore
    brings back its routing and each arm's sampler state, so the draws go on unchanged."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    uninterrupted, _ = _search(one)
    interrupted, _ = _search(two)
    # t0, t1: each arm's recipe; t2, t3: each arm's first random draw.
    for trial_id in ("t0", "t1", "t2", "t3"):
        assert uninterrupted.suggest(trial_id) == interrupted.suggest(trial_id)
    interrupted.save(str(two / "state.pkl"))
    restored, _ = _search(two)
    restored.restore(str(two / "state.pkl"))
    assert restored.trial_arm == uninterrupted.trial_arm
    # Scratch's second draw; a sampler started afresh would repeat its first (t2's).
    assert restored.suggest("t4") == uninterrupted.suggest("t4")


def test_private_ray_train_logger_module_exists_in_the_pinned_ray():
    """trainables/engine/ray_compat.py quiets Ray Train's per-report INFO line through the logger of
    this private module (the public LoggingConfig does not reach it); pinned like the above."""
    import importlib

    module = importlib.import_module(ray_compat.REPORT_LOGGER_MODULE)
    assert module.__file__.endswith("context.py")


def test_a_restored_search_asks_the_searcher_again(tmp_path):
    """Tune's SearchGenerator saves "finished"; restored, ResumableSearch asks ArmSearch
    again, so arms that bad input closed get their remaining trials."""
    from study.hpo.tune_compat import ResumableSearch

    search, _ = _search(tmp_path, num_samples=2)
    search.set_max_concurrency(1)
    generator = ResumableSearch(search)
    saved = {**generator.get_state(), "counter": 2, "total_samples": 4, "finished": True}
    generator.set_state(saved)
    assert not generator.is_finished()
    generator.set_state({**saved, "counter": 4})
    assert generator.is_finished()  # every trial suggested: nothing to ask for


def test_a_worker_group_that_cannot_be_placed_is_told_apart_in_the_pinned_ray():
    """trainables/engine/ray_entry.py turns Train's ControllerError around a worker-group start-up
    timeout into one line naming the resources; the private class it checks is pinned here."""
    import ray.train
    from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError

    assert ray_compat.is_placement_timeout(ray.train.ControllerError(WorkerGroupStartupTimeoutError(2)))
    assert not ray_compat.is_placement_timeout(ray.train.ControllerError(RuntimeError("lost node")))
    assert not ray_compat.is_placement_timeout(RuntimeError("anything else"))
