"""A team's own COCO-format dataset: every count from the files, 1x in epochs, the plan's
derived numbers and warnings (no Ray: the dry run and the pure functions)."""

import dataclasses
import json

import pytest

from study.cli import main
from study.plan.epochs import epoch_warnings
from study.spec.presets import PRESETS, SMOKE
from study.spec.resolved import resolve
from study.spec.study_config import at_global_batch, in_epochs
from tests.own_data import write_own_dataset
from trainables.contract.study_record import StudyRecord, write_record
from trainables.contract.trial_config import ConfigError
from trainables.data.census import count_training
from trainables.data.splits import held_out_ids


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    return write_own_dataset(tmp_path_factory.mktemp("own"))


def _config(tmp_path, own, **extra) -> str:
    """A --config file as docs/your_data.md writes it: the smoke preset on the own data."""
    text = "\n".join(
        [
            "preset: smoke",
            "data:",
            "  source: coco",
            *[f"  {k}: {v}" for k, v in own.items()],
            "  search_holdout: 6",
            "axes.init: [scratch]",
            "axes.data_fraction: [1.0, 0.5]",
            "solver.epochs_per_1x: 4",
            *[f"{k}: {v}" for k, v in extra.items()],
        ]
    )
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return str(path)


def test_the_training_file_is_counted_as_the_trials_read_it(own):
    blob = json.loads(open(own["train_annotations"]).read())
    data = dataclasses.replace(SMOKE.data, source="coco", search_holdout=6)
    counts = count_training(blob, data, (1.0, 0.5))
    # 26 listed, 2 without annotations; 6 held out for the search split (of every listed
    # image: this seed holds out one of the empty ones).
    held = set(held_out_ids([i["id"] for i in blob["images"]], 6, data.subset_seed))
    empty = {i["id"] for i in blob["images"]} - {a["image_id"] for a in blob["annotations"]}
    assert len(empty) == 2 and len(held & empty) == 1
    assert counts.listed_images == 26 and counts.trainable_images == 24 - 5 == 19
    assert counts.categories == 3 and counts.left_out_annotations == 1
    assert counts.fraction(1.0)[0] == 19 and counts.fraction(0.5)[0] == 10
    boxes = len(blob["annotations"]) - 1  # every box but the sub-pixel one
    assert counts.fraction(1.0)[1] == counts.trainable_instances < boxes  # held-out images' objects not counted


def test_1x_in_epochs_is_derived_from_the_counted_images_and_the_batch():
    study = at_global_batch(
        dataclasses.replace(SMOKE, solver=dataclasses.replace(SMOKE.solver, epochs_per_1x=12.0), eval_period=3)
    )
    derived = in_epochs(study, 40)  # 12 epochs x 40 images / batch 4
    assert derived.solver.base_iters == 120 and derived.eval_period == 40  # a third of 1x, as the preset's
    assert in_epochs(derived, 40) == derived  # idempotent
    with pytest.raises(ConfigError, match="could not be counted on this machine") as err:
        in_epochs(study, None)
    assert err.value.field == "solver.epochs_per_1x"
    assert in_epochs(SMOKE, None) is SMOKE  # 1x stated in iterations: nothing to derive


def test_the_plan_prints_the_counts_and_1x_in_epochs(tmp_path, own, capsys):
    assert main(["--config", _config(tmp_path, own), "--results", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (
        "data (counted in train.json): 26 images listed, 19 with a trainable box, after 6 held out for the "
        "search split" in out
    )
    assert "3 categories; 1 annotation(s) with a box under 1 px left out; search split 6 images, test split 10" in out
    # 4 epochs x 19 images / batch 4 = 19 iterations.
    assert "1x derived: solver.epochs_per_1x=4 epochs x 19 training images / batch 4 = 19 iterations" in out
    assert "1x = 19 iterations of 4 images" in out
    assert "data fraction 1 (19 images): 1x 4, 2x 8" in out
    assert "data fraction 0.5 (10 images): 1x 7.6, 2x 15.2" in out
    # Within half the paper's shortest schedule (12.17 epochs): no warning.
    assert "WARNING" not in out


def test_schedules_far_outside_the_papers_epochs_are_warned_about():
    own = dataclasses.replace(SMOKE, data=dataclasses.replace(SMOKE.data, source="coco"))
    from trainables.data.census import DataCounts

    def counts(images):
        return DataCounts(images, images, images, 1, 0, {1.0: (images, images)})

    # smoke: 1x = 9 iterations of 4 images; 2x over 100 images = 0.72 epochs.
    [line] = epoch_warnings(resolve(own), counts(100))
    assert line.startswith("WARNING: data fraction 1 (100 images): its longest schedule, 2x, is 0.72 epochs")
    # 1x over one image = 36 epochs: inside; over 2,000 epochs: past twice the paper's longest (352).
    long = dataclasses.replace(own, solver=dataclasses.replace(own.solver, base_iters=500))
    assert "over twice the paper's longest" in epoch_warnings(resolve(long), counts(2))[0]
    assert not epoch_warnings(resolve(dataclasses.replace(own, data=SMOKE.data)), counts(100))  # the toy: none


def test_the_subsets_preset_on_a_small_folder_is_refused_naming_the_fraction(tmp_path, own, capsys):
    sets = [f"data.{k}={v}" for k, v in own.items()] + ["data.search_holdout=6"]
    argv = ["--preset", "coco-r50-gn-subsets", "--results", str(tmp_path), "--dry-run"]
    with pytest.raises(SystemExit) as stop:
        main(argv + [x for s in sets for x in ("--set", s)])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    first, second = PRESETS["coco-r50-gn-subsets"].axes.data_fraction[:2]
    assert f"data fractions {first:g} and {second:g} both select the same 19 of 19 training images" in err[0]


def test_a_resumed_study_refuses_a_1x_the_changed_files_would_give(tmp_path, own):
    from study.arguments import with_counts
    from trainables.data.census import DataCounts

    study = at_global_batch(dataclasses.replace(SMOKE, solver=dataclasses.replace(SMOKE.solver, epochs_per_1x=3.0)))
    folder = tmp_path / "S"
    folder.mkdir()
    started = in_epochs(study, 19)
    write_record(str(folder), StudyRecord(preset=dataclasses.asdict(started)))
    same = DataCounts(26, 19, 40, 3, 0, {1.0: (19, 40)})
    assert with_counts(resolve(study), same, str(folder)).study.solver.base_iters == 14  # 3 x 19 / 4
    grown = dataclasses.replace(same, trainable_images=30)
    with pytest.raises(ConfigError, match="1x is now 22 iterations .* but the study started with 14"):
        with_counts(resolve(study), grown, str(folder))
