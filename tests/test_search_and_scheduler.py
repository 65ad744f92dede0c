"""Per-arm Optuna routing and schedule-aware early stopping, with real Optuna and Ray Tune classes."""

import dataclasses
import functools
import types

import optuna
import pytest
from ray import cloudpickle
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from study.config import SearchSpace
from study.scheduler import LOSS_WEIGHT, ScheduleAwareASHA, rung_score
from study.search import ArmSearch, arm_searcher

SPACE = SearchSpace(lr=(0.01, 0.1), weight_decay=(1e-5, 1e-3), schedule=(1.0, 2.0))


def _search(tmp_path, num_samples=3):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    searchers = {arm: arm_searcher(arm, SPACE, storage=storage, seed=i, metric="bbox_AP", num_samples=num_samples,
                                   first_point={"lr": 0.02, "weight_decay": 1e-4, "schedule": 1.0})
                 for i, arm in enumerate(["scratch-tiny-f1", "pretrained-tiny-f1"])}
    return ArmSearch(searchers, num_samples, "bbox_AP", fixed={"seed": 0}), storage


def test_each_arm_gets_its_own_optuna_study(tmp_path):
    search, storage = _search(tmp_path)
    configs = [search.suggest(f"t{i}") for i in range(6)]
    assert search.suggest("t6") == Searcher.FINISHED
    arms = [c["arm"] for c in configs]
    assert arms.count("scratch-tiny-f1") == 3 and arms.count("pretrained-tiny-f1") == 3
    assert arms[:2] == ["scratch-tiny-f1", "pretrained-tiny-f1"]  # arms advance together
    first = {c["arm"]: c for c in configs[:2]}
    assert all(first[a]["lr"] == 0.02 and first[a]["schedule"] == 1.0 for a in first)  # the paper's recipe first
    for c in configs:
        assert 0.01 <= c["lr"] <= 0.1 and c["schedule"] in (1.0, 2.0) and c["seed"] == 0
    for i, c in enumerate(configs):
        search.on_trial_complete(f"t{i}", result={"bbox_AP": 0.1 * i})
    for arm in ("scratch-tiny-f1", "pretrained-tiny-f1"):
        study = optuna.load_study(study_name=arm, storage=storage)
        values = sorted(t.value for t in study.trials)
        expected = sorted(0.1 * i for i, c in enumerate(configs) if c["arm"] == arm)
        assert values == pytest.approx(expected)  # never pooled with the other arm


def test_save_restore_and_orphans(tmp_path):
    search, storage = _search(tmp_path)
    search.suggest("a")
    search.save(str(tmp_path / "state.pkl"))
    search.suggest("b")  # asked after the last save: an orphan once restored
    fresh, _ = _search(tmp_path)
    fresh.restore(str(tmp_path / "state.pkl"))
    assert fresh.trial_arm == {"a": "scratch-tiny-f1"} and fresh.suggested["pretrained-tiny-f1"] == 0
    pretrained = optuna.load_study(study_name="pretrained-tiny-f1", storage=storage)
    states = [t.state for t in pretrained.trials]
    assert optuna.trial.TrialState.FAIL in states  # the orphan no longer counts as running
    assert fresh.suggest("c")["arm"] == "pretrained-tiny-f1"


def _trial(trial_id, arm="a", schedule=1.0):
    return types.SimpleNamespace(trial_id=trial_id, config={"arm": arm, "schedule": schedule})


def _result(it, ap, loss=1.0):
    return {"iteration": it, "bbox_AP": ap, "loss": loss}


def test_asha_compares_only_within_arm_and_schedule():
    sched = ScheduleAwareASHA("bbox_AP", lambda c: int(100 * c["schedule"]), grace_fraction=0.5, reduction_factor=2)
    good, bad = _trial("good"), _trial("bad")
    longer = _trial("long", schedule=2.0)  # its own group: rung at 100, not 50
    other_arm = _trial("other", arm="b")
    for t in (good, bad, longer, other_arm):
        sched.on_trial_add(None, t)
    assert sched.on_trial_result(None, good, _result(50, 0.5)) == TrialScheduler.CONTINUE
    # Worse than every trial of its group at the rung: stopped.
    assert sched.on_trial_result(None, bad, _result(50, 0.1)) == TrialScheduler.STOP
    # Just as bad, but longer schedules and other arms are never compared with "good".
    assert sched.on_trial_result(None, longer, _result(50, 0.05)) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, other_arm, _result(50, 0.01)) == TrialScheduler.CONTINUE
    assert sched.num_stopped == 1
    assert "a 1x" in sched.debug_string() and "a 2x" in sched.debug_string()


def test_loss_breaks_ties_at_zero_ap():
    assert rung_score(_result(1, 0.0, loss=0.5), "bbox_AP") > rung_score(_result(1, 0.0, loss=2.0), "bbox_AP")
    assert rung_score(_result(1, 0.01, loss=10.0), "bbox_AP") > rung_score(_result(1, 0.0, loss=0.0), "bbox_AP")
    assert rung_score({"bbox_AP": 0.0, "loss": None}, "bbox_AP") == -10 * LOSS_WEIGHT
    sched = ScheduleAwareASHA("bbox_AP", lambda c: 100, grace_fraction=0.5, reduction_factor=2)
    low_loss, high_loss = _trial("x"), _trial("y")
    sched.on_trial_add(None, low_loss)
    sched.on_trial_add(None, high_loss)
    sched.on_trial_result(None, low_loss, _result(50, 0.0, loss=0.8))
    assert sched.on_trial_result(None, high_loss, _result(50, 0.0, loss=1.5)) == TrialScheduler.STOP


def test_search_space_validation():
    with pytest.raises(ValueError, match="search.lr"):
        dataclasses.replace(SPACE, lr=(0.1, 0.01))


def test_each_arm_starts_from_its_own_recipe(tmp_path):
    from study.config import Arm, base_trial, default_point
    from study.presets import TOY
    from study.tuning import build_search

    study = dataclasses.replace(
        TOY, default_trial={"lr": 0.3, "weight_decay": 1e-4, "schedule": 1.0},
        search=dataclasses.replace(TOY.search, schedule=(1.0, 2.0)),
        search_overrides=(("init=scratch", dataclasses.replace(TOY.search, schedule=(2.0, 3.0))),),
        default_overrides=(("init=scratch", {"schedule": 3.0}),))
    search = build_search(study, 2, str(tmp_path))
    first = {c["arm"]: c for c in (search.suggest("a"), search.suggest("b"))}
    assert first["scratch-tiny-f1"]["schedule"] == 3.0 and first["pretrained-tiny-f1"]["schedule"] == 1.0
    assert first["scratch-tiny-f1"]["lr"] == first["pretrained-tiny-f1"]["lr"] == 0.3
    assert base_trial(study, Arm("scratch", 1.0, "tiny"), results_uri=str(tmp_path), code_version="x",
                      pretrained={})["schedule"] == 3.0
    assert default_point(study, {"init": "pretrained", "model": "tiny", "data_fraction": 1.0})["schedule"] == 1.0
    with pytest.raises(ValueError, match="default_overrides"):
        dataclasses.replace(study, default_overrides=(("init=scratch", {"momentum": 0.8}),))


def test_a_recipe_outside_the_ranges_is_left_out_and_said(tmp_path, capsys):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    search = arm_searcher("scratch-tiny-f1", SPACE, storage=storage, seed=0, metric="bbox_AP", num_samples=2,
                          first_point={"lr": 0.02, "weight_decay": 1e-4, "schedule": 3.0})
    assert "lies outside its search ranges" in capsys.readouterr().out
    search.set_search_properties("bbox_AP", "max", {})
    assert search.suggest("a")["schedule"] in SPACE.schedule


def test_rungs_are_rebuilt_from_the_results_after_a_restore(tmp_path):
    from trainables import results

    # What a killed study had written (Tune restores its scheduler unpickled, rungs empty): two trials of arm "a" at 1x passed the rung at 50.
    for trial_id, ap in (("t1", 0.5), ("t2", 0.4)):
        for it, value in ((25, ap / 2), (50, ap)):
            results.write_row(str(tmp_path), {"trial_id": trial_id, "arm": "a", "schedule": 1.0, "iteration": it,
                                              "bbox_AP": value, "loss": 1.0})
    history = functools.partial(results.read_rows, str(tmp_path))
    fresh = ScheduleAwareASHA("bbox_AP", lambda c: 100, 0.5, 2)
    restored = cloudpickle.loads(cloudpickle.dumps(ScheduleAwareASHA("bbox_AP", lambda c: 100, 0.5, 2, history=history)))
    for sched in (fresh, restored):
        late = _trial("t3")
        sched.on_trial_add(None, late)
        decision = sched.on_trial_result(None, late, _result(50, 0.3))
        assert decision == (TrialScheduler.STOP if sched is restored else TrialScheduler.CONTINUE)
    # A resumed trial that reports its rung again keeps its first value there.
    t2 = _trial("t2")
    assert restored.on_trial_result(None, t2, _result(50, 0.0)) == TrialScheduler.CONTINUE
    # Another schedule's rows never enter this group.
    assert set(restored.groups) == {("a", 1.0)}
