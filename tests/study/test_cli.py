"""The command line rejects bad input before Ray starts, naming the bad part."""

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from study.arguments import parse_trial
from study.cli import build_parser, main
from study.spec.presets import SMOKE, TOY
from study.spec.resolved import base_trial, resolve
from study.spec.study_config import Arm
from trainables.contract.trial_config import ConfigError
from trainables.engine.branches import branches, trial_iterations

ROOT = Path(__file__).resolve().parents[2]


def _fails(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_help_lists_presets():
    out = subprocess.run(
        [sys.executable, "study/run.py", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "--trial" in out and "smoke" in out and "toy" in out


def test_unknown_preset(capsys, tmp_path):
    err = _fails(["--preset", "nope", "--trial", "init=scratch", "--results", str(tmp_path)], capsys)
    assert "unknown preset 'nope'" in err and "smoke" in err


@pytest.mark.parametrize(
    "trial, message",
    [
        ("lrr=0.1", "unknown key 'lrr'"),
        ("init=imagenet", "init='imagenet' must be one of scratch, pretrained"),
        ("lr=fast", "lr='fast' is not a number"),
        ("lr=-1", "lr=-1 must be > 0"),
        ("weight_decay=-0.1", "weight_decay=-0.1 must be >= 0"),
        ("data_fraction=2", "data_fraction=2 must be in (0, 1]"),
        ("schedule=0", "schedule=0 must be > 0"),
        ("model=r50", "model='r50' is not a model of preset smoke"),
        ("init", "'init' is not KEY=VALUE"),
    ],
)
def test_bad_trial_values(trial, message, capsys, tmp_path):
    err = _fails(["--preset", "smoke", "--trial", trial, "--results", str(tmp_path)], capsys)
    assert message in err
    assert not list(tmp_path.iterdir())  # nothing written


def test_existing_study_folder_is_refused(capsys, tmp_path):
    (tmp_path / "S").mkdir()
    (tmp_path / "S" / "study.json").write_text("{}")
    err = _fails(["--preset", "smoke", "--trial", "init=scratch", "--results", str(tmp_path), "--name", "S"], capsys)
    assert "already holds a study" in err and "--resume" in err
    err = _fails(
        ["--preset", "smoke", "--trial", "init=scratch", "--results", str(tmp_path), "--name", "T", "--resume"], capsys
    )
    assert "holds no study" in err


def test_trial_defaults_come_from_the_preset():
    values = parse_trial("init=pretrained,lr=0.05", TOY)
    assert values == {
        "init": "pretrained",
        "model": "tiny",
        "data_fraction": 1.0,
        "seed": 0,
        "lr": 0.05,
        "weight_decay": TOY.default_trial["weight_decay"],
        "schedule": TOY.default_trial["schedule"],
    }
    with pytest.raises(ConfigError):
        parse_trial("seed=1.5", SMOKE)


@pytest.mark.parametrize("value, message", [("0", "must be at least 1"), ("two", "'two' is not an integer")])
def test_bad_num_samples(value, message, capsys, tmp_path):
    err = _fails(["--preset", "smoke", "--num-samples", value, "--results", str(tmp_path)], capsys)
    assert "--num-samples" in err and message in err


def test_dry_run_states_the_splits_and_the_replicate_phase(capsys, tmp_path):
    assert main(["--preset", "toy", "--dry-run", "--replicates", "3", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "splits: search (Optuna, early stopping, best trial) = 100 generated images; test (each schedule's " in out
    assert "replicates: after the search, each arm's recipe under seeds 0-2 (its search trial counts" in out
    assert "and its best (lr, wd) under fresh seeds 1-3 (never the seed whose trial won the choice" in out
    assert main(["--preset", "toy-replicates", "--dry-run", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "recipe under seeds 0-2" in out and "each seed loads a backbone pretrained with its own seed" in out
    assert "scratch is no worse than pretrained at a schedule when the 90% interval of the gap" in out
    assert "needs --replicates" not in out
    # The margin of every comparison with its reason, and where the study sits among the
    # paper's regimes, before anything runs.
    assert (
        "non-inferiority margins δ, fixed before the run:\n    tiny, data fraction 1: 0.02346 AP (0.03 x 0.782)" in out
    )
    assert "regime (paper Sec. 5.2" in out and "tiny, data fraction 1: 600 training images" in out
    assert "paper: 3,500-image subset (Sec. 5.2)" in out
    # Early stopping names its noise guard: z_0.95 x sqrt(2) x the prior seed std 0.02.
    assert "more than z_0.95 x sqrt(2) x σ = 0.0465 AP below a rung's cutoff (σ = 0.02" in out
    assert main(["--preset", "toy", "--dry-run", "--results", str(tmp_path)]) == 0
    assert "replicates:" not in capsys.readouterr().out
    assert not any(tmp_path.iterdir())


def test_dry_run_prints_the_plan_and_writes_nothing(capsys, tmp_path):
    assert main(["--preset", "toy", "--dry-run", "--num-samples", "5", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "arms: 2, trials: 10 (5 per arm)" in out
    assert "scratch-tiny-f1" in out and "pretrained-tiny-f1" in out
    assert "1 Ray Train worker x (1 CPU), 2 images/worker = batch 2" in out
    assert "concurrency: 2 trial(s) at once" in out or (os.cpu_count() or 1) < 2
    # Both arms search the preset's schedules; the recipe's trial runs the whole set on
    # branches, then 4 trials of a searched trunk length cost the mean over the set.
    base, schedules = TOY.solver.base_iters, TOY.search.schedule
    longest = TOY.default_trial["schedule"]
    recipe = trial_iterations(branches(base, schedules, longest))
    mean = sum(trial_iterations(branches(base, schedules, s)) for s in schedules) / len(schedules)
    per_arm = recipe + round(4 * mean)
    listed = ",".join(f"{s:g}x" for s in schedules)
    assert f"{per_arm:,}" in out and f"{2 * per_arm:,}" in out and out.count(listed) == 2
    separate = ", ".join(f"{s:g}x" for s in schedules)
    assert (
        f"recipe {longest:g}x (lr 0.3): {recipe:,} iterations with branches, {round(sum(schedules) * base):,} as "
        f"separate runs of {separate}" in out
    )
    assert f"longest trial: {recipe:,} iterations" in out
    assert "nothing was trained" in out and not list(tmp_path.iterdir())


def test_dry_run_of_the_paper_in_miniature(capsys):
    """Both data regimes, each with its own schedules and margin, and the recipes' seeds."""
    assert main(["--preset", "toy-paper", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "arms: 4" in out and "scratch-tiny-f0.02" in out and "pretrained-tiny-f1" in out
    assert "tiny, data fraction 0.02: 12 training images" in out and "tiny, data fraction 1: 600 training images" in out
    assert "the best of the search is not rerun (replicate_best: false)" in out
    assert "tiny, data fraction 0.02: 0.00651 AP (0.03 x 0.217)" in out


def test_help_mentions_every_option():
    text = build_parser_text()
    for flag in ("--preset", "--trial", "--results", "--name", "--num-samples", "--resume", "--dry-run", "--address"):
        assert flag in text
    assert "toy-paper" in text


def build_parser_text():
    from study.cli import build_parser

    return build_parser().format_help()


def test_resume_reads_back_the_plan_the_study_started_with(tmp_path):
    """The resolved study (every arm's spec) that a study starts with and writes to study.json
    is the one --resume resolves from it; the arms' trial configs come back as written."""
    from study.arguments import resolve_args
    from study.workspace import write_study_file
    from trainables.contract.study_record import read_record

    flags = ["--preset", "toy-paper", "--results", str(tmp_path), "--num-samples", "3", "--set", "eval_period=7"]
    started, uri, _ = resolve_args(build_parser().parse_args(flags))
    arms = started.trial_configs(results_uri=uri, code_version="v", pretrained={})
    write_study_file(
        uri,
        started,
        arms,
        {"mode": "search", "num_samples": 3, "replicates": started.study.replicates, "overrides": flags[-1:]},
    )
    resumed, _, values = resolve_args(build_parser().parse_args(["--resume", *flags[2:4], "--name", "toy-paper"]))
    assert resumed == started and values is None and len(resumed.arms) == 4
    assert read_record(uri).arms == json.loads(json.dumps(arms))
    assert {a.name: a.recipe for a in resumed.arms} == {a.name: a.recipe for a in started.arms}


def test_resume_takes_the_configuration_from_study_json(capsys, tmp_path):
    import json

    from study.arguments import resolve_args

    def resolve(args):
        resolved, uri, values = resolve_args(args)
        return resolved.study, uri, values

    folder = tmp_path / "R"
    folder.mkdir()
    (folder / "study.json").write_text(
        json.dumps(
            {
                "preset": {"name": "smoke"},
                "mode": "search",
                "num_samples": 5,
                "replicates": 2,
                "overrides": ["solver.base_iters=12", "eval_period=4"],
            }
        )
    )
    resume = ["--resume", "--results", str(tmp_path), "--name", "R"]
    study, uri, values = resolve(build_parser().parse_args(resume))
    assert study.name == "smoke" and study.num_samples == 5 and study.solver.base_iters == 12 and study.eval_period == 4
    assert values is None and uri.endswith("/R") and study.replicates == 2
    # More replicates may be asked for on --resume (they only add trials after the search).
    study, _, _ = resolve(build_parser().parse_args([*resume, "--replicates", "3"]))
    assert study.replicates == 3 and study.num_samples == 5
    # A --trial run resumes as the same trial, with its --set overrides.
    trial = {"init": "scratch", "model": "tiny", "schedule": 2.0, "lr": 0.02}
    blob = json.loads((folder / "study.json").read_text())
    (folder / "study.json").write_text(json.dumps({**blob, "mode": "trial", "trial": trial}))
    study, _, values = resolve(build_parser().parse_args(resume))
    assert values == trial and study.solver.base_iters == 12 and study.eval_period == 4
    (folder / "study.json").write_text(json.dumps(blob))
    err = _fails(["--trial", "init=scratch", "--replicates", "2", "--dry-run"], capsys)
    assert "--replicates belongs to a study's search" in err
    # A study started before the search and test splits (data.val_*) is refused before Ray.
    arm = base_trial(SMOKE, Arm("scratch", 1.0, "tiny"), results_uri=str(folder), code_version="v0", pretrained={})
    data = {k: v for k, v in arm["data"].items() if not k.startswith(("search_", "test_"))}
    blob = json.loads((folder / "study.json").read_text())
    blob["arms"] = {"scratch-tiny-f1": {**arm, "data": {**data, "val_images": "v", "val_annotations": "v.json"}}}
    (folder / "study.json").write_text(json.dumps(blob))
    err = _fails(resume, capsys)
    assert "arm scratch-tiny-f1 in" in err and "unknown field data.search_annotations" not in err
    assert "val_annotations" in err and "resume it with the version that started it" in err
    err = _fails(["--resume", "--results", str(tmp_path), "--name", "R", "--set", "num_workers=1"], capsys)
    assert "cannot change a study on --resume" in err
    err = _fails(["--resume", "--preset", "toy", "--results", str(tmp_path), "--name", "R"], capsys)
    assert "holds a study of preset smoke, not toy" in err


def test_trial_defaults_follow_the_arms_recipe():
    study = dataclasses.replace(TOY, default_overrides=(("init=scratch", {"schedule": 7.0}),))
    assert parse_trial("init=scratch", study)["schedule"] == 7.0
    assert parse_trial("init=scratch,schedule=1", study)["schedule"] == 1.0
    assert parse_trial("init=pretrained", study)["schedule"] == TOY.default_trial["schedule"]


def test_set_reaches_per_arm_overrides():
    from study.overrides import apply_overrides

    study = apply_overrides(
        TOY,
        [
            'search_overrides=[["init=scratch", {"lr": [0.1, 0.2], "weight_decay": [1e-5, 1e-4], "schedule": [2, 3]}]]',
            'default_overrides=[["init=scratch", {"schedule": 3}]]',
        ],
    )
    ((selector, space),) = study.search_overrides
    assert selector == "init=scratch" and space.lr == (0.1, 0.2) and space.schedule == (2.0, 3.0)
    assert study.default_overrides == (("init=scratch", {"schedule": 3}),)
    with pytest.raises(ConfigError, match="search.lr.*expected 2 values"):
        apply_overrides(TOY, ["search.lr=[0.1]"])


@pytest.mark.parametrize("args", [["--help"], ["--dry-run"], ["--preset", "coco-r50-gn", "--dry-run"]])
def test_help_and_dry_run_import_neither_torch_nor_ray(args):
    code = (
        f"import runpy, sys\nsys.argv = ['study/run.py', *{args!r}]\ntry:\n    runpy.run_path('study/run.py', "
        "run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'ray') if m in sys.modules), file=sys.stderr)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stderr.strip().splitlines()[-1] == "[]"


def _modules_after(code: str, top_level: bool = True) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {name.split(".")[0] for name in out.split()} if top_level else set(out.split())


def test_layers_import_only_what_they_need():
    """analysis needs neither study nor torch nor Ray, and of trainables only the rows'
    contract, its storage and where the Optuna studies are; the contract
    (trainables.contract.rows) and the row writer load neither pandas, torch, study nor
    analysis; presets load no torch."""
    loaded = _modules_after(
        "import analysis, analysis.report, analysis.figures, analysis.tables\nanalysis.load_results", top_level=False
    )
    assert not {m.split(".")[0] for m in loaded} & {"study", "torch", "ray"}
    assert {m for m in loaded if m.startswith("trainables")} <= {
        "trainables",
        "trainables.contract",
        "trainables.contract.rows",
        "trainables.contract.storage",
        "trainables.contract.errors",
        "trainables.contract.study_record",
        "trainables.contract.optuna_store",  # where the Optuna studies are (the report's plots)
    }
    for module in ("trainables.contract.rows", "trainables.contract.row_store"):
        loaded = _modules_after(f"import {module}")
        assert not loaded & {"pandas", "torch", "study", "analysis", "ray"}
    loaded = _modules_after("import study.spec.presets")
    assert not loaded & {"torch", "ray"}


def test_the_plan_says_whether_tpe_gets_to_model(capsys):
    """TPE samples at random until an arm has startup_trials finished configurations; the
    recipe is one configuration however many schedules it scores."""
    assert main(["--preset", "toy", "--dry-run", "--num-samples", "4"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("search:"))
    assert "until an arm has 2 finished configurations" in line and "the recipe is one" in line
    assert "TPE picks trials 3-4 of each arm" in line and "will not model" not in line
    assert main(["--preset", "toy", "--dry-run", "--num-samples", "2"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("search:"))
    assert "with 2 trial(s) per arm TPE will not model yet (--num-samples 3 or more)" in line


def test_the_coco_plan_counts_evaluation_in_the_gpu_hours(capsys):
    """Every trunk evaluation (search split) and every schedule's final (search and test
    splits) adds images x GPU-seconds per image to the GPU-hours, and its share is said."""
    from study.plan.estimate import make_plan
    from study.spec.presets import PRESETS

    study = PRESETS["coco-r50-gn"]
    plan = make_plan(resolve(study), study.num_samples, 0, 0, "")
    # The recipe's 6x trial: the trunk to its last fork (6x's first drop, 480k) evaluated
    # every 30k on the 5,000 held-out images, then 5 finals on those and val2017's 5,000.
    recipe = branches(study.solver.base_iters, study.search.schedule, 6.0)
    assert recipe[-1].fork == 480_000
    recipe_images = 480_000 // 30_000 * 5_000 + 5 * 10_000
    # The 5 searched trials: the mean over the schedules their trunk may have.
    images = []
    for schedule in study.search.schedule:
        b = branches(study.solver.base_iters, study.search.schedule, schedule)
        images.append(b[-1].fork // 30_000 * 5_000 + len(b) * 10_000)
    per_arm = recipe_images + round((study.num_samples - 1) * sum(images) / len(images))
    assert plan.arms[0].expected_eval_images == per_arm and plan.expected_eval_images == 2 * per_arm
    training = plan.expected_iterations * 0.338 * 8 / 3600
    # GPU inference, plus the CPU work the GPUs wait for: encoding on each rank, COCOeval
    # on rank 0 while all 8 wait.
    evaluation = plan.expected_eval_images * (0.061 + 0.084 + 0.015 * 8) / 3600
    assert main(["--preset", "coco-r50-gn", "--dry-run"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.strip().startswith("V100"))
    share = evaluation / (training + evaluation)
    assert f"-> {training + evaluation:,.0f} GPU-hours, evaluation {evaluation:,.0f} of them ({share:.1%}" in line
    assert f"evaluation: {plan.expected_eval_images:,} images (5,000 per search-split and 5,000 per test-split" in out


def test_the_coco_keypoint_plan(capsys):
    """coco-r50-gn-keypoints: person keypoints, keypoint AP decides, 2x and 3x (Sec. 5.1),
    the recipe's trial scoring both; the GPU-hours at the keypoint model's cost."""
    from study.spec.presets import PRESETS

    study = PRESETS["coco-r50-gn-keypoints"]
    assert study.data.keypoints and study.data.train_annotations.endswith("person_keypoints_train2017.json")
    assert study.search.schedule == (2.0, 3.0) and study.default_trial["schedule"] == 3.0
    assert main(["--preset", "coco-r50-gn-keypoints", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "objective keypoints_AP" in out and "test (each schedule's final result, reported only) = " in out
    # A trunk to 3x's first drop (210k) and two 60k cooldowns.
    assert "recipe 3x (lr 0.02): 330k iterations with branches, 450k as separate runs of 2x, 3x" in out
    # torchvision's Keypoint R-CNN / Mask R-CNN training-time ratio on detectron2's 0.338 s/iter.
    assert re.search(r"V100 +0\.469 s/iter -> [\d,]+ GPU-hours, evaluation [\d,]+ of them", out)


def test_the_dry_run_says_which_step_times_are_measured_and_which_cited(capsys):
    """Each GPU's seconds per iteration has its provenance beside its GPU-hours: a figure
    this project measured (benchmark, card, date), one cited from a model zoo, one derived
    from others, or one set for this study alone."""
    from study.spec import step_times

    assert main(["--preset", "coco-r50-gn", "--dry-run", "--set", "seconds_per_iteration.A100=0.2"]) == 0
    out = capsys.readouterr().out
    assert "H200 figure measured: benchmarks/gpu_step.py on 1 H200, 2026-11-26" in out
    assert "V100 figure cited: detectron2 MODEL_ZOO.md, Misc/scratch_mask_rcnn_R_50_FPN_3x_gn" in out
    assert "A100 figure set for this study (--set or a config file; no source recorded)" in out
    assert main(["--preset", "coco-r50-gn-keypoints", "--dry-run"]) == 0
    assert "V100 figure derived: coco-r50-gn's V100 figure x 1.389" in capsys.readouterr().out
    # An overridden figure is no longer the cited one.
    assert step_times.provenance("V100", 0.3).startswith("set for this study")
    with pytest.raises(ValueError, match="StepTime.kind='guessed'"):
        step_times.StepTime(0.1, "guessed", "nowhere")
