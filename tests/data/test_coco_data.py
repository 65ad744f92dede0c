"""Real-COCO code paths on small fixtures: staging, a trial on COCO's layout, presets vs. the paper."""

import json

import pandas as pd
import pytest
import torch

from study.spec.presets import PRESETS
from study.spec.resolved import arm_spec, base_trial
from study.spec.study_config import Arm
from study.stage_data import MARKER, stage
from study.stage_data import main as stage_main
from tests.conftest import MemoryCheckpoints, write_coco_fixture
from trainables.contract.config_io import from_dict
from trainables.contract.trial_config import DataConfig, TrialConfig
from trainables.engine.branches import branches, trial_iterations
from trainables.engine.schedule import drop_iterations, scaled_lr, total_iterations
from trainables.engine.trial import run_trial


def _coco_tree(root):
    """COCO's folder layout with the quirky fixture as both splits."""
    for split in ("train2017", "val2017"):
        coco = write_coco_fixture(root / split)
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
        (root / split / "instances.json").unlink()
    return root


def test_staging_copies_once_and_verifies(tmp_path):
    src = _coco_tree(tmp_path / "bucket" / "coco")
    dest = tmp_path / "data" / "coco"
    assert stage(str(src), str(dest), log=lambda _m: None)
    marker = json.loads((dest / MARKER).read_text())
    assert marker["images"] == 8 and (dest / "val2017" / "000000000003.jpg").exists()
    assert not stage(str(src), str(dest), log=lambda _m: None)  # idempotent: marker present
    (dest / MARKER).unlink()
    (dest / "train2017" / "000000000002.jpg").unlink()
    assert stage(str(src), str(dest), log=lambda _m: None)  # no marker: copied again, repaired
    assert (dest / "train2017" / "000000000002.jpg").exists()


def test_staging_names_what_is_missing(tmp_path, capsys):
    src = _coco_tree(tmp_path / "coco")
    (src / "annotations" / "instances_val2017.json").unlink()
    assert stage_main([str(src), str(tmp_path / "dest")]) == 2
    assert "missing annotations/instances_val2017.json" in capsys.readouterr().err


def test_a_trial_on_coco_layout(tmp_path):
    root = _coco_tree(tmp_path / "coco")
    study = PRESETS["smoke"]
    # The COCO presets' splits: the search split held out of train2017, val2017 the test split.
    data = DataConfig(
        source="coco",
        train_images=str(root / "train2017"),
        train_annotations=str(root / "annotations" / "instances_train2017.json"),
        search_holdout=2,
        test_images=str(root / "val2017"),
        test_annotations=str(root / "annotations" / "instances_val2017.json"),
        min_size=(48,),
        max_size=64,
        test_min_size=48,
    )
    d = base_trial(
        study, Arm("scratch", 1.0, "tiny"), results_uri=str(tmp_path / "res"), code_version="t", pretrained={}
    )
    cfg = from_dict(
        TrialConfig,
        {
            **d,
            "data": data,
            "trial_id": "coco",
            "num_workers": 1,
            "schedule": 1.0,
            "solver": {**d["solver"], "ims_per_worker": 1},
        },
    )
    torch.set_num_threads(1)
    store = MemoryCheckpoints()
    run_trial(cfg, store.session())
    df = pd.read_parquet(tmp_path / "res" / "metrics")
    # Seed 0 holds out images 1 and 4; of the rest, 3 (empty) is skipped: 2 is trained on.
    assert df["train_images"].tolist() == [1]
    splits = json.loads((tmp_path / "res" / "subsets" / "splits-seed-0.json").read_text())
    assert splits["search"]["image_ids"] == [1, 4] and splits["search"]["held_out_of_training"]
    assert splits["test"]["image_ids"] == [1, 2, 3, 4]  # val2017's own ids, in their own files
    subset = json.loads((tmp_path / "res" / "subsets" / "fraction-1-seed-0.json").read_text())
    assert subset["image_ids"] == [2]
    # 1x = 9 iterations of 1 image: the trunk forks at 3 (its row at 6 would fall in the
    # cooldown); the final at 9, scored on both splits.
    assert df["iteration"].tolist() == [9] and df["bbox_AP"].notna().all() and df["test_bbox_AP"].notna().all()
    # Tune sees the search split alone.
    assert store.reports and not any(k.startswith("test_") for r in store.reports for k in r)


def test_coco_presets_match_the_paper():
    for name in ("coco-r50-gn", "coco-r101-gn", "coco-r50-syncbn", "coco-r50-gn-subsets"):
        p = PRESETS[name]
        assert p.solver.base_iters == 90_000 and p.num_workers == 8 and p.solver.ims_per_worker == 2
        assert p.use_gpu and p.solver.reference_batch == 16 and p.default_trial["lr"] == 0.02
        assert scaled_lr(p.default_trial["lr"], p.num_workers * p.solver.ims_per_worker) == pytest.approx(0.02)
        assert p.default_trial["weight_decay"] == 1e-4 and p.solver.momentum == 0.9 and p.solver.gamma == 0.1
        assert p.solver.warmup_iters == 500 and p.solver.warmup_factor == pytest.approx(1 / 3)
        assert p.data.min_size == (800,) and p.data.max_size == 1333 and p.data.hflip_prob == 0.5
        assert set(p.axes.init) == {"scratch", "pretrained"}
        for model in p.models.values():
            assert model.norm in ("gn", "syncbn") and model.box_head_convs == 4 and model.mask_head_convs == 4
            assert model.fpn_channels == 256 and (model.norm != "gn" or model.gn_groups == 32)
    assert PRESETS["coco-r50-gn"].models["r50"].depth == 50 and PRESETS["coco-r101-gn"].models["r101"].depth == 101
    assert PRESETS["coco-r50-syncbn"].models["r50-syncbn"].norm == "syncbn"
    r50 = PRESETS["coco-r50-gn"]
    assert r50.search.schedule == (2.0, 3.0, 4.0, 5.0, 6.0)
    lo, hi = r50.search.lr
    assert lo < 0.02 < hi and hi / lo == pytest.approx(10)
    lo, hi = r50.search.weight_decay
    assert lo < 1e-4 < hi and hi / lo == pytest.approx(10)
    assert total_iterations(90_000, 6) == 540_000 and drop_iterations(90_000, 6) == (480_000, 520_000)
    # Both inits run the recipe over the whole set: Table 1's 2x-6x in one 780k-iteration trial.
    for init in ("scratch", "pretrained"):
        point = arm_spec(r50, Arm(init, 1.0, "r50")).recipe
        assert point["schedule"] == 6.0 and arm_spec(r50, Arm(init, 1.0, "r50")).schedules == r50.search.schedule
        assert trial_iterations(branches(90_000, r50.search.schedule, point["schedule"])) == 780_000


def test_subset_preset_uses_the_paper_sizes():
    p = PRESETS["coco-r50-gn-subsets"]
    sizes = sorted(round(f * 118_287) for f in p.axes.data_fraction)
    assert sizes == [1_000, 3_500, 10_000, 35_000]
    small = next(
        a for a in [Arm("scratch", f, "r50") for f in p.axes.data_fraction] if round(a.data_fraction * 118_287) == 1_000
    )
    assert max(arm_spec(p, small).schedules) < max(p.search.schedule)  # shorter schedules on less data
    ten_k = Arm("pretrained", 10_000 / 118_287, "r50")
    assert 2 / 3 in arm_spec(p, ten_k).schedules  # 60k iterations: the paper's best pretrained 10k run
    for fraction in p.axes.data_fraction:  # each subset's recipe runs its whole set
        for init in ("scratch", "pretrained"):
            spec = arm_spec(p, Arm(init, fraction, "r50"))
            assert spec.recipe["schedule"] == max(spec.schedules)


def test_staging_copies_what_a_study_config_names(tmp_path, capsys):
    """Any layout: the data.* paths of a --config file, each from the same place under SOURCE."""
    from tests.own_data import write_own_dataset

    src = tmp_path / "bucket"
    write_own_dataset(src)
    (src / "unrelated.bin").write_bytes(b"x" * 100)
    dest = tmp_path / "data" / "mine"
    config = tmp_path / "mine.yaml"
    config.write_text(
        "preset: smoke\ndata:\n  source: coco\n"
        + "".join(
            f"  {split}_{what}: {dest}/{where}\n"
            for split in ("train", "test")
            for what, where in (("images", "images"), ("annotations", f"annotations/{split}.json"))
        )
        + "  search_holdout: 6\n"
    )
    assert stage_main([str(src), str(dest), "--config", str(config)]) == 0
    assert "staged 36 images" in capsys.readouterr().out
    assert (dest / "images" / "train" / "site_b" / "frame_00104.jpg").exists()
    assert not (dest / "unrelated.bin").exists()  # only what the study names
    assert stage_main([str(src), str(dest), "--config", str(config)]) == 0
    assert "already staged" in capsys.readouterr().out
    # A path outside DEST names its field.
    assert stage_main([str(src), str(tmp_path / "elsewhere"), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: data.train_images={dest}/images is not under {tmp_path / 'elsewhere'}"), err
