"""Per-arm Optuna routing, branch results as Optuna trials, restores and failures, with
real Optuna and Ray Tune classes (early stopping: tests/study/test_scheduler.py)."""

import dataclasses
import json
import signal

import optuna
import pytest
from ray.tune.search import Searcher

from study.hpo.search import ArmSearch, arm_study
from study.spec.study_config import SearchSpace
from trainables.contract.errors import ConfigError

SPACE = SearchSpace(lr=(0.01, 0.1), weight_decay=(1e-5, 1e-3), schedule=(1.0, 2.0))


def _search(tmp_path, num_samples=3):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    arms = ["scratch-tiny-f1", "pretrained-tiny-f1"]
    studies = {
        arm: arm_study(
            arm,
            SPACE,
            storage=storage,
            seed=i,
            num_samples=num_samples,
            first_point={"lr": 0.02, "weight_decay": 1e-4, "schedule": 1.0},
        )
        for i, arm in enumerate(arms)
    }
    return ArmSearch(studies, num_samples, "bbox_AP", dict.fromkeys(arms, SPACE), fixed={"seed": 0}), storage


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
        search.on_trial_complete(f"t{i}", result=_final(c, c["schedule"], 0.1 * i))
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
    again = fresh.suggest("c")
    assert again["arm"] == "pretrained-tiny-f1" and again["lr"] == 0.02  # the lost recipe is asked for again


def _final(config, schedule, ap, status="completed", loss=1.0, arm=None):
    return {
        "phase": "final",
        "status": status,
        "arm": arm or config["arm"],
        "schedule": schedule,
        "trunk_schedule": config["schedule"],
        "lr": config["lr"],
        "weight_decay": config["weight_decay"],
        "bbox_AP": ap,
        "loss": loss,
    }


def test_branch_results_become_optuna_trials_of_their_own(tmp_path):
    search, storage = _search(tmp_path, num_samples=2)
    search.suggest("t0")  # scratch's recipe: lr 0.02, wd 1e-4, 1x
    search.suggest("t1")  # pretrained's recipe
    config = {**search.suggest("t9"), "schedule": 2.0}  # scratch, Optuna's pick, as a 2x trunk
    assert config["arm"] == "scratch-tiny-f1"
    search.on_trial_result("t9", {"phase": "trunk", "bbox_AP": 0.05, "status": "running", "training_iteration": 1})
    search.on_trial_result("t9", {"phase": "checkpoint", "bbox_AP": None, "status": "running"})
    search.on_trial_result("t9", _final(config, 1.0, 0.3))
    search.on_trial_result("t9", _final(config, 1.0, 0.3))  # reported again after a resume: once
    search.on_trial_complete("t9", _final(config, 2.0, 0.4))
    study = optuna.load_study(study_name="scratch-tiny-f1", storage=storage)
    branch = [t for t in study.trials if t.user_attrs.get("branch")]
    assert len(branch) == 1 and branch[0].params == {
        "lr": config["lr"],
        "weight_decay": config["weight_decay"],
        "schedule": 1.0,
    }
    assert branch[0].value == 0.3 and branch[0].user_attrs["tune_trial"] == "t9"


def test_a_trial_stopped_after_a_shorter_schedule_is_pruned(tmp_path):
    search, storage = _search(tmp_path, num_samples=1)
    config = search.suggest("t0")  # scratch's recipe at 1x; make it a 2x trunk
    config = {**config, "schedule": 2.0}
    search.on_trial_complete("t0", _final(config, 1.0, 0.3))
    study = optuna.load_study(study_name="scratch-tiny-f1", storage=storage)
    assert [t.state for t in study.trials if not t.user_attrs.get("branch")] == [optuna.trial.TrialState.PRUNED]


def test_search_space_validation():
    with pytest.raises(ValueError, match="search.lr"):
        dataclasses.replace(SPACE, lr=(0.1, 0.01))


def test_each_arm_starts_from_its_own_recipe(tmp_path):
    from study.hpo.tuning import build_search
    from study.spec.presets import TOY
    from study.spec.resolved import arm_spec, base_trial, resolve
    from study.spec.study_config import Arm

    study = dataclasses.replace(
        TOY,
        default_trial={"lr": 0.3, "weight_decay": 1e-4, "schedule": 1.0},
        search=dataclasses.replace(TOY.search, schedule=(1.0, 2.0)),
        search_overrides=(("init=scratch", dataclasses.replace(TOY.search, schedule=(2.0, 3.0))),),
        default_overrides=(("init=scratch", {"schedule": 3.0}),),
    )
    search = build_search(resolve(study), 2, str(tmp_path))
    first = {c["arm"]: c for c in (search.suggest("a"), search.suggest("b"))}
    assert first["scratch-tiny-f1"]["schedule"] == 3.0 and first["pretrained-tiny-f1"]["schedule"] == 1.0
    assert first["scratch-tiny-f1"]["lr"] == first["pretrained-tiny-f1"]["lr"] == 0.3
    scratch = base_trial(study, Arm("scratch", 1.0, "tiny"), results_uri=str(tmp_path), code_version="x", pretrained={})
    assert scratch["schedule"] == 3.0 and tuple(scratch["schedules"]) == (2.0, 3.0)  # the arm's set
    assert arm_spec(study, Arm("pretrained", 1.0, "tiny")).recipe["schedule"] == 1.0
    with pytest.raises(ValueError, match="default_overrides"):
        dataclasses.replace(study, default_overrides=(("init=scratch", {"momentum": 0.8}),))


def test_a_recipe_outside_the_ranges_is_left_out_and_said(tmp_path, caplog):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = arm_study(
        "scratch-tiny-f1",
        SPACE,
        storage=storage,
        seed=0,
        num_samples=2,
        first_point={"lr": 0.02, "weight_decay": 1e-4, "schedule": 3.0},
    )
    assert "lies outside its search ranges" in caplog.text
    search = ArmSearch({"scratch-tiny-f1": study}, 2, "bbox_AP", {"scratch-tiny-f1": SPACE})
    assert search.suggest("a")["schedule"] in SPACE.schedule


def test_a_trial_ended_early_is_one_short_of_its_own_final():
    from study.hpo.tuning import ended_early

    config = {"arm": "a", "lr": 0.1, "weight_decay": 1e-4, "schedule": 2.0}
    assert not ended_early(_final(config, 2.0, 0.3))  # its own schedule's final
    assert not ended_early(_final(config, 1.0, 0.0, status="diverged"))
    assert ended_early(_final(config, 1.0, 0.3))  # stopped at the 1x rung
    assert ended_early({"phase": "trunk", "status": "running", "schedule": 2.0, "trunk_schedule": 2.0})
    assert ended_early(None)


def _input_failure(results, trial_id, arm, field):
    folder = results / "failures"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{trial_id}.json").write_text(
        json.dumps(
            {
                "trial_id": trial_id,
                "arm": arm,
                "type": "MissingInputError",
                "message": f"{field} not found",
                "field": field,
                "ranks": [0],
                "nodes": ["n"],
                "log": str(folder / f"{trial_id}.log"),
            }
        )
    )


ARM_CONFIGS = {
    "scratch-tiny-f1": {"pretrained_weights": "", "data": {"train_annotations": "/d/train.json"}},
    "pretrained-tiny-f1": {"pretrained_weights": "/w.pth", "data": {"train_annotations": "/d/train.json"}},
}


def test_bad_input_closes_the_arms_that_would_meet_it_again(tmp_path, caplog):
    """An arm's own bad value closes that arm; a value every arm shares closes them all."""
    search, storage = _search(tmp_path, num_samples=3)
    search.results_uri, search.arm_configs = str(tmp_path), ARM_CONFIGS
    assert search.suggest("s0")["arm"] == "scratch-tiny-f1" and search.suggest("p0")["arm"] == "pretrained-tiny-f1"
    _input_failure(tmp_path, "p0", "pretrained-tiny-f1", "pretrained_weights")
    search.on_trial_complete("p0", error=True)
    assert "pretrained-tiny-f1 gets no further trials in this run" in caplog.text
    assert [search.suggest(f"s{i}")["arm"] for i in (1, 2)] == ["scratch-tiny-f1"] * 2
    pretrained = optuna.load_study(study_name="pretrained-tiny-f1", storage=storage)
    assert [t.state for t in pretrained.trials] == [optuna.trial.TrialState.FAIL]

    (tmp_path / "b").mkdir()
    search, _ = _search(tmp_path / "b", num_samples=3)
    search.results_uri, search.arm_configs = str(tmp_path / "b"), ARM_CONFIGS
    search.suggest("s0")
    _input_failure(tmp_path / "b", "s0", "scratch-tiny-f1", "data.train_annotations")
    # Inside Tune's loop its graceful-stop handler listens on SIGUSR1 (study/hpo/tune_compat.py).
    stops = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: stops.append(1))
    try:
        search.on_trial_complete("s0", error=True)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert "every arm reads data.train_annotations=" in caplog.text and "no further trial starts" in caplog.text
    assert stops == [1] and "the trials still running stop" in caplog.text  # they would meet it too
    assert search.suggest("x") == Searcher.FINISHED
    # An error without a record (a lost node after Train's retries) closes nothing.
    (tmp_path / "c").mkdir()
    search, _ = _search(tmp_path / "c", num_samples=3)
    search.results_uri, search.arm_configs = str(tmp_path / "c"), ARM_CONFIGS
    search.suggest("s0")
    search.on_trial_complete("s0", error=True)
    assert search.suggest("x")["arm"] == "pretrained-tiny-f1" and not search.closed


def test_a_failed_trial_finished_by_resume_joins_optuna(tmp_path):
    """Told FAIL, resumed after the input was fixed: its result is added as a trial of its own."""
    search, storage = _search(tmp_path, num_samples=1)
    config = search.suggest("t0")
    search.on_trial_complete("t0", error=True)
    search.save(str(tmp_path / "state.pkl"))
    restored, _ = _search(tmp_path, num_samples=1)
    restored.restore(str(tmp_path / "state.pkl"))
    assert restored.failed == {"t0"} and not restored.closed
    restored.on_trial_result("t0", {"phase": "trunk", "bbox_AP": 0.05, "status": "running", "training_iteration": 1})
    restored.on_trial_result("t0", _final(config, 1.0, 0.25))
    restored.on_trial_complete("t0", _final(config, 1.0, 0.25))
    study = optuna.load_study(study_name="scratch-tiny-f1", storage=storage)
    states = sorted((t.state.name, t.value, t.user_attrs.get("branch")) for t in study.trials if t.state.is_finished())
    assert states == [("COMPLETE", 0.25, False), ("FAIL", None, None)]


def test_failures_summary_and_scope():
    from study.hpo import failures

    record = {
        "trial_id": "t1",
        "arm": "pretrained-tiny-f1",
        "type": "MissingInputError",
        "message": "pretrained weights not found: /w.pth\n(second line)",
        "field": "pretrained_weights",
        "log": "/r/failures/t1.log",
    }
    line = failures.from_record(record).line()
    assert line == (
        "trial t1 (pretrained-tiny-f1) failed: MissingInputError: pretrained weights not found: /w.pth "
        "(second line) [log: /r/failures/t1.log]"
    )
    assert failures.arms_to_close(record, ARM_CONFIGS)[0] == ["pretrained-tiny-f1"]
    assert failures.arms_to_close({**record, "field": "data.train_annotations"}, ARM_CONFIGS)[0] == list(ARM_CONFIGS)
    assert failures.arms_to_close({**record, "field": None}, ARM_CONFIGS)[0] == []
    # A value some arms share (one data fraction, for both inits) closes exactly those.
    by_fraction = {f"{i}-f{f}": {"data_fraction": f} for i in ("scratch", "pretrained") for f in (0.1, 1.0)}
    closing, why = failures.arms_to_close({**record, "arm": "scratch-f0.1", "field": "data_fraction"}, by_fraction)
    assert closing == ["scratch-f0.1", "pretrained-f0.1"] and why.startswith("scratch-f0.1, pretrained-f0.1 read")
    try:
        raise RuntimeError("Training failed\nworker 1 lost")
    except RuntimeError as err:
        lost = failures.from_exception("t2", "a", err, "/r/tune/t2/error.txt")
    assert lost.line() == "trial t2 (a) failed: RuntimeError: worker 1 lost [log: /r/tune/t2/error.txt]"
    assert failures.format_failures([]) == ""
    assert failures.format_failures([lost]).splitlines()[0] == "1 trial(s) failed:"


def test_tpe_start_up_counts_configurations_not_schedule_results():
    from study.hpo.sampler import ConfigurationStartupSampler, configurations
    from study.hpo.search import optuna_space

    space = optuna_space(SPACE)

    def study_with(sampler, configs):
        study = optuna.create_study(direction="maximize", sampler=sampler)
        for (lr, wd), schedules in configs:
            for s in schedules:
                params = {"lr": lr, "weight_decay": wd, "schedule": s}
                study.add_trial(optuna.trial.create_trial(params=params, distributions=space, value=lr * s))
        return study

    recipe = [((0.02, 1e-4), (1.0, 2.0))]  # the recipe scored at both schedules: one configuration
    ours = study_with(ConfigurationStartupSampler(startup=2, seed=7), recipe)
    assert configurations(ours) == 1 and len(ours.trials) == 2
    # Optuna's own start-up counts trials: with n_startup_trials=2 it would model already.
    assert ours.sampler.in_startup(ours)
    random_twin = study_with(optuna.samplers.RandomSampler(seed=7), recipe)
    assert ours.ask(space).params == random_twin.ask(space).params

    two = [*recipe, ((0.05, 1e-5), (1.0,))]
    ours = study_with(ConfigurationStartupSampler(startup=2, seed=7), two)
    assert configurations(ours) == 2 and not ours.sampler.in_startup(ours)
    tpe_twin = study_with(optuna.samplers.TPESampler(seed=7, n_startup_trials=0, constant_liar=True), two)
    random_twin = study_with(optuna.samplers.RandomSampler(seed=7), two)
    suggestion = ours.ask(space).params
    assert suggestion == tpe_twin.ask(space).params and suggestion != random_twin.ask(space).params


def test_a_trial_running_at_a_restore_is_told_when_it_ends(tmp_path):
    """The concurrency limit and the running trials are the searcher's own saved state: a
    trial resumed by --resume and then stopped early still reaches Optuna (as PRUNED)."""
    search, storage = _search(tmp_path, num_samples=2)
    search.set_max_concurrency(1)
    config = search.suggest("t0")
    assert search.suggest("t1") is None  # one trial at a time
    search.save(str(tmp_path / "state.pkl"))
    restored, _ = _search(tmp_path, num_samples=2)
    restored.restore(str(tmp_path / "state.pkl"))
    assert restored.suggest("t1") is None  # t0 still runs
    restored.on_trial_complete("t0", _final({**config, "schedule": 2.0}, 1.0, 0.3))  # stopped after 1x
    study = optuna.load_study(study_name="scratch-tiny-f1", storage=storage)
    assert [t.state.name for t in study.trials] == ["PRUNED"]
    assert restored.suggest("t1")["arm"] == "pretrained-tiny-f1"


def test_a_branch_whose_report_was_lost_joins_optuna_at_restore(tmp_path):
    """Stopped between a branch's row and its report to Tune: the resumed trial restarts after
    it and never reports it again, so the restore adds it from the rows, once."""
    from trainables.contract import row_store

    search, storage = _search(tmp_path, num_samples=2)
    search.results_uri = str(tmp_path)
    config = search.suggest("t0")
    search.save(str(tmp_path / "state.pkl"))
    row = {**_final({**config, "schedule": 2.0}, 1.0, 0.3), "trial_id": "t0", "iteration": 9, "cost_iterations": 9}
    row_store.write_row(str(tmp_path), row)
    for _ in range(2):  # restored twice: added once
        restored, _ = _search(tmp_path, num_samples=2)
        restored.results_uri = str(tmp_path)
        restored.restore(str(tmp_path / "state.pkl"))
    study = optuna.load_study(study_name="scratch-tiny-f1", storage=storage)
    branches = [t for t in study.trials if t.user_attrs.get("branch")]
    assert [(t.params["schedule"], t.value, t.user_attrs["tune_trial"]) for t in branches] == [(1.0, 0.3, "t0")]


def test_a_trial_whose_rows_end_with_its_own_final_is_complete_in_optuna(tmp_path):
    """A driver stopped as a trial reported its own final heard only an earlier result; the
    rows are the record: Optuna gets the final's value, not PRUNED."""
    from trainables.contract import row_store

    search, storage = _search(tmp_path, num_samples=1)
    search.results_uri = str(tmp_path)
    config = search.suggest("t0")  # the recipe at 1x
    own = {**_final(config, 1.0, 0.4), "trial_id": "t0", "iteration": 9, "cost_iterations": 9}
    row_store.write_row(str(tmp_path), own)
    search.on_trial_complete("t0", {"phase": "trunk", "status": "running", "bbox_AP": 0.1, "trial_id": "t0"})
    study = optuna.load_study(study_name="scratch-tiny-f1", storage=storage)
    assert [(t.state.name, t.value) for t in study.trials] == [("COMPLETE", 0.4)]


@pytest.mark.parametrize("kind", ["journal", "rdb"])
def test_an_optuna_storage_of_the_presets_own_outlives_the_study_folder(tmp_path, kind):
    """optuna_storage: a journal file or an RDB URL, shared by studies (arm studies named
    FOLDER:ARM); a rebuilt search (a resume on a new head) finds its trials there."""
    from study.hpo import optuna_db
    from study.hpo.tuning import build_search
    from study.spec.presets import TOY
    from study.spec.resolved import resolve

    url = f"journal:{tmp_path / 'optuna.log'}" if kind == "journal" else f"sqlite:///{tmp_path / 'shared.db'}"
    study = dataclasses.replace(TOY, optuna_storage=url)
    optuna_db.check("", url)
    folder = str(tmp_path / "results" / "mine")
    first = build_search(resolve(study), 2, folder)
    assert first.suggest("a")["arm"] == "scratch-tiny-f1"
    assert not (tmp_path / "results" / "mine" / "optuna.db").exists()  # nothing in the folder
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(optuna_db.open_storage(folder, url)))
    assert names == ["mine:pretrained-tiny-f1", "mine:scratch-tiny-f1"]
    again = build_search(resolve(study), 2, folder)
    trials = again.studies["scratch-tiny-f1"].get_trials(deepcopy=False)
    assert len(trials) == 1 and trials[0].params["lr"] == TOY.default_trial["lr"]
    assert optuna_db.dashboard_command(folder, url).endswith("optuna.log" if kind == "journal" else "shared.db")


def test_an_optuna_storage_that_cannot_be_used_is_refused_naming_it(tmp_path):
    from study.hpo import optuna_db
    from study.spec.presets import TOY

    with pytest.raises(ConfigError, match="optuna_storage=journal:/nowhere/at/all.log: the folder /nowhere/at"):
        optuna_db.check("", "journal:/nowhere/at/all.log")
    with pytest.raises(ConfigError, match="optuna_storage=postgresql://u@127.0.0.1:1/x cannot be used"):
        optuna_db.check("", "postgresql://u@127.0.0.1:1/x")
    with pytest.raises(ConfigError, match="optuna_storage"):
        dataclasses.replace(TOY, optuna_storage="/just/a/path")


def test_s3_results_publish_the_optuna_database_after_every_finished_trial(tmp_path, s3_bucket, monkeypatch):
    """With s3:// results and the default storage, the head's SQLite file is copied beside
    the results as each trial finishes: a study resumed on a new head (an empty cache)
    continues from the trials finished before the old head was lost."""
    from study.hpo.tuning import build_search
    from study.spec.presets import TOY
    from study.spec.resolved import resolve
    from trainables.contract import storage

    folder = f"s3://{s3_bucket}/studies/mine"
    monkeypatch.setenv("RETHINK_CACHE", str(tmp_path / "first-head"))
    first = build_search(resolve(TOY), 2, folder)
    config = first.suggest("t0")
    assert not storage.exists(f"{folder}/optuna.db")  # nothing finished yet
    first.on_trial_complete("t0", _final(config, config["schedule"], 0.25))
    assert storage.exists(f"{folder}/optuna.db")
    monkeypatch.setenv("RETHINK_CACHE", str(tmp_path / "new-head"))  # the old head's disk is gone
    again = build_search(resolve(TOY), 2, folder)
    trials = again.studies[config["arm"]].get_trials(deepcopy=False)
    assert [(t.state.name, t.value, t.params["lr"]) for t in trials] == [("COMPLETE", 0.25, config["lr"])]
