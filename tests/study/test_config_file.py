"""--config FILE and --print-config: a study's settings in a file, read back to the same study."""

import dataclasses
import json

import pytest

from study.arguments import resolve_args
from study.cli import build_parser, main
from study.config_file import apply_config, read_config
from study.spec.presets import TOY, get_preset
from study.workspace import write_study_file
from trainables.contract.errors import InputError


def _resolved(*flags):
    return resolve_args(build_parser().parse_args([*flags, "--dry-run"]))[0]


def test_nested_and_dotted_keys_with_a_preset_as_base_then_set(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "preset: toy\n"
        "num_samples: 5\n"
        "solver: {base_iters: 200}\n"
        "search.lr: [0.05, 0.5]\n"
        "search:\n  weight_decay: [1e-5, 1e-3]\n"  # YAML 1.1 reads 1e-5 as a string: taken as the number
        "early_stopping: {seed_std: 0.01}\n"
    )
    study = _resolved("--config", str(path), "--set", "num_samples=6").study
    assert study.name == "toy" and study.num_samples == 6  # --set after the file
    assert study.solver.base_iters == 200 and study.solver.warmup_iters == TOY.solver.warmup_iters
    assert study.search.lr == (0.05, 0.5) and study.search.weight_decay == (1e-5, 1e-3)
    assert study.search.schedule == TOY.search.schedule  # a nested mapping changes only what it names
    assert study.early_stopping.seed_std == 0.01
    assert study.early_stopping.reduction_factor == TOY.early_stopping.reduction_factor


@pytest.mark.parametrize(
    "text,message",
    [
        ("solver: {base_itrs: 3}\n", "mine.yaml: unknown field 'solver.base_itrs'"),
        ("num_samples: many\n", "mine.yaml: num_samples='many' is invalid"),
        ("- a list\n", "mine.yaml: expected a mapping of settings, got list"),
        ("preset: nope\n", "unknown preset 'nope'"),
        ("search: {lr: [0.1]}\n", "mine.yaml: search.lr"),
    ],
)
def test_a_bad_key_or_value_is_refused_naming_the_file_and_the_key(tmp_path, capsys, text, message):
    (tmp_path / "mine.yaml").write_text(text)
    with pytest.raises(SystemExit) as stop:
        main(["--config", str(tmp_path / "mine.yaml"), "--dry-run"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_print_config_reads_back_to_the_same_study(tmp_path, capsys):
    flags = ["--preset", "toy-paper", "--set", "num_samples=3", "--set", "search_overrides=[]", "--print-config"]
    assert main(flags) == 0
    (tmp_path / "c.yaml").write_text(capsys.readouterr().out)
    started = _resolved(*flags[:-1])
    assert _resolved("--config", str(tmp_path / "c.yaml")) == started
    # Printed again from the file, the text is a fixed point (a preset's int where a float
    # is meant, 12 for 12.0, prints as the float from then on).
    assert main(["--config", str(tmp_path / "c.yaml"), "--print-config"]) == 0
    (tmp_path / "d.yaml").write_text(capsys.readouterr().out)
    assert main(["--config", str(tmp_path / "d.yaml"), "--print-config"]) == 0
    assert capsys.readouterr().out == (tmp_path / "d.yaml").read_text()


def test_a_studys_study_json_seeds_a_new_study(tmp_path):
    started = _resolved("--preset", "smoke", "--set", "num_samples=4", "--set", "solver.base_iters=12")
    folder = str(tmp_path / "old")
    write_study_file(folder, started, started.trial_configs(results_uri=folder, code_version="v", pretrained={}), {})
    seeded = _resolved("--config", f"{folder}/study.json", "--set", "seed=7")
    assert seeded.study == dataclasses.replace(started.study, seed=7)
    assert [a.recipe for a in seeded.arms] == [a.recipe for a in started.arms]


def test_preset_flag_and_file_must_agree(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("preset: smoke\n")
    with pytest.raises(SystemExit):
        main(["--preset", "toy", "--config", str(tmp_path / "c.yaml"), "--dry-run"])
    assert "name two presets" in capsys.readouterr().err
    with pytest.raises(InputError, match="no such file"):
        read_config(str(tmp_path / "missing.yaml"))


def test_resume_applies_the_recorded_config_before_the_overrides(tmp_path):
    """study.json keeps the file's settings as read: --resume rebuilds the same study even when
    the file has changed or gone since."""
    config = tmp_path / "c.yaml"
    config.write_text("preset: smoke\nsolver.base_iters: 14\nnum_samples: 3\n")
    flags = ["--config", str(config), "--results", str(tmp_path), "--name", "S", "--set", "eval_period=7"]
    started, uri, _ = resolve_args(build_parser().parse_args(flags))
    arms = started.trial_configs(results_uri=uri, code_version="v", pretrained={})
    blob = {"mode": "search", "num_samples": 3, "replicates": 1, "overrides": ["eval_period=7"]}
    blob["config"] = json.loads(json.dumps(read_config(str(config)).__dict__))
    write_study_file(uri, started, arms, blob)
    config.unlink()
    resumed, _, _ = resolve_args(build_parser().parse_args(["--resume", "--results", str(tmp_path), "--name", "S"]))
    assert resumed == started and resumed.study.solver.base_iters == 14 and resumed.study.eval_period == 7
    assert apply_config(get_preset("smoke"), read_config(f"{uri}/study.json")) == started.study


def test_optuna_storage_flag_sets_the_storage_after_the_file_and_set(tmp_path, capsys):
    """--optuna-storage URL is --set optuna_storage=URL applied last: checked like it, kept in
    the printed config, and refused on --resume (the storage is in study.json)."""
    journal = f"journal:{tmp_path / 'optuna.log'}"
    study = _resolved("--preset", "smoke", "--set", "optuna_storage=sqlite:///x.db", "--optuna-storage", journal).study
    assert study.optuna_storage == journal
    assert main(["--preset", "smoke", "--optuna-storage", f"sqlite:///{tmp_path / 's.db'}", "--print-config"]) == 0
    assert f"optuna_storage: sqlite:///{tmp_path / 's.db'}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--preset", "smoke", "--optuna-storage", "/just/a/path", "--dry-run"])
    assert "optuna_storage" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--results", str(tmp_path), "--name", "x", "--resume", "--optuna-storage", journal])
    assert "--optuna-storage" in capsys.readouterr().err
