"""The compat modules: every private Ray/Tune name the project uses, pinned to the Ray that
pyproject.toml pins, and no private name anywhere else."""

from __future__ import annotations

import re
from pathlib import Path

import optuna

from study import tune_compat
from tests.test_search_and_scheduler import _search
from trainables import ray_compat

ROOT = Path(__file__).resolve().parent.parent
COMPAT = {"study/tune_compat.py", "trainables/ray_compat.py"}
PRIVATE = re.compile(r"ray\._private|ray\.\w+(\.\w+)*\._internal|\._ot_\w+|torchvision\.\w+\._\w+")


def test_no_private_library_name_outside_the_compat_modules():
    for folder in ("study", "trainables", "analysis"):
        for path in sorted((ROOT / folder).glob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in COMPAT:
                continue
            hits = [line for line in path.read_text().splitlines() if PRIVATE.search(line)]
            assert not hits, f"{rel}: {hits}"


def test_private_optuna_search_attributes_exist_in_the_pinned_ray(tmp_path):
    """OptunaSearch has no public accessor for its Optuna study and trials: ArmSearch reads
    ``_ot_study`` (add_trial for branch results) and ``_ot_trials`` (orphans after a restore).
    This pins them to the Ray version pyproject.toml pins."""
    import ray

    assert ray.__version__ == "2.60.0"
    search, _ = _search(tmp_path)
    search.suggest("t0")
    searcher = search.searchers["scratch-tiny-f1"]
    assert isinstance(tune_compat.optuna_study(searcher), optuna.Study)
    assert isinstance(tune_compat.optuna_trials(searcher)["t0"], optuna.trial.Trial)
    state = tune_compat.searcher_state(searcher)
    assert "_ot_study" in state and "_ot_trials" in state


def test_private_ray_train_logger_module_exists_in_the_pinned_ray():
    """trainables/ray_compat.py quiets Ray Train's per-report INFO line through the logger of
    this private module (the public LoggingConfig does not reach it); pinned like the above."""
    import importlib

    module = importlib.import_module(ray_compat.REPORT_LOGGER_MODULE)
    assert module.__file__.endswith("context.py")


def test_a_restored_search_asks_the_searcher_again(tmp_path):
    """Tune's SearchGenerator saves "finished"; restored, ResumableSearch asks ArmSearch
    again, so arms that bad input closed get their remaining trials."""
    from ray.tune.search import ConcurrencyLimiter

    from study.tune_compat import ResumableSearch

    search, _ = _search(tmp_path, num_samples=2)
    generator = ResumableSearch(ConcurrencyLimiter(search, max_concurrent=1))
    saved = {**generator.get_state(), "counter": 2, "total_samples": 4, "finished": True}
    generator.set_state(saved)
    assert not generator.is_finished()
    generator.set_state({**saved, "counter": 4})
    assert generator.is_finished()  # every trial suggested: nothing to ask for
