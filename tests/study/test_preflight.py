"""Bad input fails before Ray starts: one line naming the file, field or flag, exit status 2,
nothing written. Each case runs the real command line in a subprocess under a 30 s limit."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from study.guards import preflight
from study.spec.presets import SMOKE
from tests.conftest import write_coco_fixture
from trainables.contract.errors import InputError, MissingInputError
from trainables.data.coco_check import check_coco, read_coco_json

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args, env=None):
    """``python study/run.py ARGS`` with the time limit the issue sets for failing on bad input."""
    return subprocess.run(
        [sys.executable, "study/run.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def coco_dirs(tmp_path):
    """train/, search/ and test/ COCO-format splits, and the --set flags that point a smoke
    study at them."""
    for split in ("train", "search", "test"):
        write_coco_fixture(tmp_path / split)
    flags = ["--set", "data.source=coco"]
    for split in ("train", "search", "test"):
        flags += [
            "--set",
            f"data.{split}_images={tmp_path / split}",
            "--set",
            f"data.{split}_annotations={tmp_path / split / 'instances.json'}",
        ]
    # The fixture has 2 trainable images: one worker with one image is a global batch.
    flags += ["--set", "num_workers=1", "--set", "solver.ims_per_worker=1"]
    return tmp_path, flags


def assert_refused(proc, *fragments, results=None):
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("python study/run.py: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and "ray" not in proc.stdout.lower()
    if results is not None:
        assert not results.exists() or not any(results.iterdir())


def test_good_coco_paths_pass_the_dry_run(coco_dirs):
    _, flags = coco_dirs
    proc = run_cli("--preset", "smoke", *flags, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    # The fixture's degenerate box is counted, not dropped in silence.
    assert "1 non-crowd annotation(s) with a box under 1 px wide or high, which training leaves out" in proc.stdout


def test_fractions_that_select_the_same_images_are_refused(coco_dirs):
    """A COCO preset's fractions of train2017's 118,287 images, pointed at a small folder,
    would all cap at its few images: the same subset twice, refused before Ray."""
    root, flags = coco_dirs
    fractions = ["--set", "axes.data_fraction=[1.0, 0.5]", "--set", "data.fraction_of_images=118287"]
    proc = run_cli("--preset", "smoke", *flags, *fractions, "--results", str(root / "r"))
    assert_refused(
        proc,
        "data fractions 1 and 0.5 both select the same 2 of 2 training images",
        "data.fraction_of_images=118,287",
        "set data.fraction_of_images=0",
        results=root / "r",
    )
    proc = run_cli("--preset", "smoke", *flags, "--set", "axes.data_fraction=[1.0, 0.5]", "--dry-run")
    assert proc.returncode == 0, proc.stderr  # fractions of the 2 images counted: 2 and 1


def test_annotation_file_that_is_not_json(coco_dirs):
    root, flags = coco_dirs
    bad = root / "bad.json"
    bad.write_text('{"images": [')
    proc = run_cli("--preset", "smoke", *flags, "--set", f"data.train_annotations={bad}", "--results", str(root / "r"))
    assert_refused(proc, str(bad), "not valid JSON", "data.train_annotations", results=root / "r")


@pytest.mark.parametrize(
    "change, fragments",
    [
        (lambda c: c.pop("categories"), ["no list 'categories'"]),
        (lambda c: c["annotations"][0].update(category_id=77), ["annotation 11 (image 1) has category_id 77"]),
        (lambda c: c["annotations"][0].update(image_id=99), ["annotation 11 refers to image 99"]),
        (lambda c: c["annotations"][0].update(bbox=[1, 2, 3]), ["annotation 11 (image 1) has bbox [1, 2, 3]"]),
        (lambda c: c["images"][0].update(id=[1]), ["a record of 'images' has id [1]"]),
    ],
)
def test_annotation_file_with_bad_records(coco_dirs, change, fragments):
    root, flags = coco_dirs
    ann = root / "search" / "instances.json"
    coco = json.loads(ann.read_text())
    change(coco)
    ann.write_text(json.dumps(coco))
    proc = run_cli("--preset", "smoke", *flags, "--dry-run")
    assert_refused(proc, str(ann), "data.search_annotations", *fragments)


def test_train_and_test_with_different_categories(coco_dirs):
    root, flags = coco_dirs
    ann = root / "test" / "instances.json"
    coco = json.loads(ann.read_text())
    coco["categories"][2]["name"] = "cat"
    ann.write_text(json.dumps(coco))
    proc = run_cli("--preset", "smoke", *flags, "--dry-run")
    assert_refused(proc, "different categories", "toothbrush", "cat", "data.test_annotations")


def test_image_folder_missing_or_without_the_listed_files(coco_dirs):
    root, flags = coco_dirs
    (root / "train" / "000000000002.jpg").unlink()
    proc = run_cli("--preset", "smoke", *flags, "--dry-run")
    assert_refused(proc, "image 2 listed in", "000000000002.jpg", "data.train_images")
    write_coco_fixture(root / "train")
    proc = run_cli(
        "--preset", "smoke", *flags, "--set", f"data.search_images={root / 'nowhere'}", "--results", str(root / "r")
    )
    assert_refused(proc, "image folder", "nowhere", "not found", "data.search_images", results=root / "r")


def test_a_test_split_that_holds_training_images_is_refused(coco_dirs):
    """The same files as training, listed again as the test split: no number would be held out."""
    root, flags = coco_dirs
    flags = [*flags, "--set", f"data.test_images={root / 'train'}"]
    proc = run_cli("--preset", "smoke", *flags, "--dry-run")
    assert_refused(
        proc, "the test split shares images with the training split", str(root / "train"), "data.test_annotations"
    )


def test_the_search_split_is_its_own_files_or_held_out_never_both_nor_neither(coco_dirs):
    root, flags = coco_dirs
    proc = run_cli("--preset", "smoke", *flags, "--set", "data.search_holdout=1", "--dry-run")
    assert_refused(proc, "data.search_holdout=1 and data.search_images/search_annotations are both given")
    for what in ("images", "annotations"):
        flags = [*flags, "--set", f"data.search_{what}="]
    proc = run_cli("--preset", "smoke", *flags, "--dry-run")
    assert_refused(proc, "needs data.search_images", "or data.search_holdout=N")
    # The COCO presets' layout: held out of the training files, the test split on its own.
    proc = run_cli("--preset", "smoke", *flags, "--set", "data.search_holdout=1", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("--preset", "smoke", *flags, "--set", "data.search_holdout=4", "--dry-run")
    assert_refused(proc, "data.search_holdout=4 would hold out all 4 training images")


def test_missing_annotation_file_is_an_error_here_and_a_note_for_a_cluster_or_a_dry_run(coco_dirs):
    """A path missing here may exist on the cluster's GPU nodes (and a dry run may be
    planned anywhere): a note then, and the trials check it."""
    root, flags = coco_dirs
    missing = "/data/coco/annotations/instances_train2017.json"
    flags = [*flags, "--set", f"data.train_annotations={missing}"]
    proc = run_cli("--preset", "smoke", *flags, "--results", str(root / "r"))
    assert_refused(proc, missing, "not found", "data.train_annotations", results=root / "r")
    proc = run_cli("--preset", "smoke", *flags, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert (
        f"note: COCO annotation file {missing} not found on this machine (data.train_annotations); "
        f"a run here would stop on it"
    ) in proc.stdout
    proc = run_cli("--preset", "smoke", *flags, "--dry-run", "--address", "10.0.0.1:6379")
    assert proc.returncode == 0, proc.stderr
    assert (
        f"note: COCO annotation file {missing} not found on this machine (data.train_annotations); the trials check it"
    ) in proc.stdout


def test_results_that_is_a_file_and_names_that_are_not_one_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    assert_refused(run_cli("--preset", "smoke", "--results", str(tmp_path / "file")), "--results", "is a file")
    assert_refused(run_cli("--preset", "smoke", "--results", str(tmp_path / "file" / "sub")), "cannot be created")
    for name in ("..", "a/b", ""):
        assert_refused(
            run_cli("--preset", "smoke", "--results", str(tmp_path / "r"), "--name", name),
            "--name",
            results=tmp_path / "r",
        )


def test_unreachable_address(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_cli("--preset", "smoke", "--results", str(tmp_path / "r"), "--address", f"127.0.0.1:{port}")
    assert_refused(proc, f"--address 127.0.0.1:{port}: nothing answers", results=tmp_path / "r")
    proc = run_cli(
        "--preset", "smoke", "--results", str(tmp_path / "r"), "--address", "auto", env={"RAY_TMPDIR": str(tmp_path)}
    )
    assert_refused(proc, "--address auto: no Ray cluster was started on this machine")
    assert_refused(run_cli("--preset", "smoke", "--address", "ray://nohost"), "not HOST:PORT")


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--set", "num_workers=0"], ["num_workers=0"]),
        (["--set", "solver.base_iters=5"], ["solver.base_iters=5"]),
        # smoke's 1x of 9 iterations at 4 images is 2 iterations at 16 (8 workers x 2): too short.
        (
            ["--set", "num_workers=8"],
            ["solver.base_iters=2", "after scaling solver.base_iters=9", "global batch of 16"],
        ),
        (
            ["--set", "axes.data_fraction=[0.01]"],
            ["data fraction 0.01 leaves 1 of 24 training images", "one global batch of 4"],
        ),
        (["--set", "search.schedule=[1, 1.01]"], ["fork at the same iteration"]),
        (["--set", "models.tiny.norm=frozenbn"], ["model.norm='frozenbn'", "init=scratch"]),
    ],
)
@pytest.mark.parametrize("mode", ["--dry-run", "run"])
def test_preset_values_are_checked_the_same_in_a_dry_run(tmp_path, flags, fragments, mode):
    extra = ["--dry-run"] if mode == "--dry-run" else ["--results", str(tmp_path / "r")]
    assert_refused(run_cli("--preset", "smoke", *flags, *extra), *fragments, results=tmp_path / "r")


def test_trial_schedule_that_collides_with_a_branch(tmp_path):
    proc = run_cli("--preset", "smoke", "--trial", "init=scratch,schedule=1.01", "--results", str(tmp_path))
    assert_refused(proc, "--trial", "fork at the same iteration")


def test_coco_checks_name_the_record(tmp_path, coco_fixture):
    _, ann, coco = coco_fixture
    assert read_coco_json(str(ann))["categories"] == coco["categories"]
    with pytest.raises(MissingInputError, match="is a folder, not a file"):
        read_coco_json(str(tmp_path))
    with pytest.raises(InputError, match=r"top level is a list"):
        check_coco([], "x.json")
    with pytest.raises(InputError, match=r"a record of 'images' has no 'file_name'"):
        check_coco({"images": [{"id": 1}], "annotations": [], "categories": []}, "x.json")
    with pytest.raises(InputError, match="image ids are not unique"):
        check_coco({"images": [{"id": 1, "file_name": "a"}] * 2, "annotations": [], "categories": []}, "x.json")


def test_addresses_that_answer_and_a_good_preset_pass():
    preflight.check_address("local")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        preflight.check_address(f"127.0.0.1:{server.getsockname()[1]}")
        preflight.check_address(f"ray://127.0.0.1:{server.getsockname()[1]}")
    from study.spec.resolved import resolve

    preflight.check_study(resolve(SMOKE))


def test_missing_pretrained_weights(tmp_path):
    flags = ["--preset", "smoke", "--set", 'pretrained_weights={"tiny": "/nope/weights.pth"}']
    assert_refused(
        run_cli(*flags, "--results", str(tmp_path / "r")),
        "/nope/weights.pth",
        "not found",
        "pretrained_weights.tiny",
        results=tmp_path / "r",
    )
    proc = run_cli(*flags, "--dry-run")
    assert proc.returncode == 0 and "note: pretrained weights for model tiny not found" in proc.stdout


def _stored_smoke_study(root):
    """A smoke study's folder as its driver leaves it before the first trial: study.json."""
    from study.spec.resolved import base_trial, resolve
    from study.spec.study_config import arms as study_arms
    from study.workspace import study_uri, write_study_file

    uri = study_uri(str(root), "smoke")
    arms = {
        a.name: base_trial(SMOKE, a, results_uri=uri, code_version="test", pretrained={}) for a in study_arms(SMOKE)
    }
    write_study_file(uri, resolve(SMOKE), arms, {"mode": "search", "num_samples": 2, "replicates": 1, "overrides": []})
    return Path(uri)


def test_a_damaged_study_json_or_optuna_db_is_refused_before_ray(tmp_path):
    folder = _stored_smoke_study(tmp_path)
    flags = ("--preset", "smoke", "--results", str(tmp_path), "--resume")
    (folder / "optuna.db").write_bytes(b"SQLite format 3\x00" + b"\x07" * 3000)  # a header, then garbage
    assert_refused(run_cli(*flags), str(folder / "optuna.db"), "is damaged", "rows in metrics/ are intact")
    (folder / "optuna.db").unlink()
    good = (folder / "study.json").read_text()
    (folder / "study.json").write_text(good[: len(good) // 2])  # cut short
    assert_refused(run_cli(*flags), str(folder / "study.json"), "is damaged", "nothing was changed")
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["study.json"]


def test_every_listed_image_is_checked_not_only_the_first_few(tmp_path):
    """One directory listing per folder, so preflight checks all of them (a 9th image missing
    used to be found inside a trial, after Ray's start)."""
    from trainables.data.coco_check import check_images_present

    (tmp_path / "sub").mkdir()
    images = [{"id": i, "file_name": f"{i:06d}.jpg"} for i in range(1, 12)] + [{"id": 12, "file_name": "sub/12.jpg"}]
    for img in images:
        (tmp_path / img["file_name"]).write_bytes(b"")
    check_images_present(str(tmp_path), images, "ann.json", "data.train_images")
    (tmp_path / "000009.jpg").unlink()
    (tmp_path / "sub" / "12.jpg").unlink()
    with pytest.raises(
        MissingInputError, match=r"image 9 listed in ann.json is missing: .*000009.jpg and 1 more of the 12"
    ):
        check_images_present(str(tmp_path), images, "ann.json", "data.train_images")
