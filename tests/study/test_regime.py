"""Regime indicators: the paper's data regimes in two ratios, and where a study sits among them."""

import dataclasses
import json

import pytest

from analysis.stats import regime
from study.plan.estimate import make_plan
from study.plan.regime_points import regime_points
from study.spec.presets import PRESETS, TOY
from study.spec.resolved import resolve
from trainables.data.census import DataCounts

COUNTS = DataCounts(
    listed_images=210,
    trainable_images=200,
    trainable_instances=700,
    categories=3,
    left_out_annotations=0,
    per_fraction={1.0: (200, 700)},
)


def test_the_papers_regimes_in_ratios():
    full, ten_k, three_k, one_k = regime.PAPER
    # ImageNet's 1.28M images against train2017's 860k instances, and 6x = 540k x 16 images
    # against 100 epochs of ImageNet.
    assert full.per_instance() == pytest.approx(1.49, abs=0.01) and full.per_image() == pytest.approx(10.83, abs=0.01)
    assert full.seen_ratio() == pytest.approx(8.64e6 / 128.1167e6, rel=1e-4)
    assert ten_k.per_instance() == pytest.approx(17.6, abs=0.1) and ten_k.seen_ratio() == pytest.approx(
        0.0275, abs=1e-3
    )
    assert three_k.per_instance() == pytest.approx(50.3, abs=0.1) and three_k.seen_ratio() is None
    assert one_k.per_instance() == pytest.approx(176, abs=1)
    assert "broke down" in one_k.outcome and "caught up" in full.outcome


def test_a_study_is_placed_by_its_ratio_per_instance_else_per_image():
    point = regime.Point("mine", 1_000, 7_000, 1_281_167, 128_116_700, 1_000_000)
    assert regime.nearest(point) is regime.PAPER[3]  # 183 per instance: the 1k subset
    assert regime.nearest(dataclasses.replace(point, train_images=100_000, train_instances=800_000)) is regime.PAPER[0]
    # Without instances, per image: 1.28M / 10k = 128, the 10k subset's.
    assert regime.nearest(dataclasses.replace(point, train_images=10_000, train_instances=None)) is regime.PAPER[1]
    assert regime.nearest(dataclasses.replace(point, pretrain_images=None)) is None
    line = regime.describe(point)
    assert "1,000 training images, 7,000 instances" in line and "per training instance 183" in line
    assert "nearest the paper's 1,000-image subset (Sec. 5.2), where scratch broke down" in line


def test_the_plan_counts_what_it_can_and_places_each_comparison():
    """COCO's subsets by the preset alone; the toy by its counted training file."""
    points = regime_points(resolve(PRESETS["coco-r50-gn-subsets"]), None)
    assert [p.train_images for p in points] == [35_000, 10_000, 3_500, 1_000]
    assert [regime.nearest(p).name for p in points[1:]] == [p.name for p in regime.PAPER[1:]]
    assert points[1].scratch_seen == round(2.5 * 90_000 * 16)  # the 10k arm's longest schedule
    counted = regime_points(resolve(TOY), COUNTS)[0]
    assert (counted.train_images, counted.train_instances) == (200, 700)
    assert counted.pretrain_images == TOY.pretrain.num_images and counted.pretrain_seen == TOY.pretrain.images_seen
    plan = make_plan(resolve(TOY), 2, 2, 0, "test", counts=COUNTS)
    assert plan.counts == COUNTS


def test_the_report_reads_the_regime_from_what_ran(tmp_path):
    from analysis.record import regime_points as recorded
    from tests.analysis_rows import frame, rows_of
    from trainables.contract.study_record import StudyRecord

    df = frame(rows_of("s", "scratch", 0.3, 1e-4, 2.0, {1.0: 0.1, 2.0: 0.2}))
    (tmp_path / "subsets").mkdir()
    blob = {"data_fraction": 1.0, "train_images": 600, "train_instances": 2100, "image_ids": []}
    (tmp_path / "subsets" / "fraction-1-seed-0.json").write_text(json.dumps(blob))
    study = {
        "arms": {
            "pretrained-tiny-f1": {
                "init": "pretrained",
                "model_name": "tiny",
                "pretrain_images_seen": 96000,
                "pretrain": {"num_images": 3200},
            }
        }
    }
    [point] = recorded(StudyRecord.from_blob(study), df, tmp_path)
    assert (point.train_images, point.train_instances, point.pretrain_images, point.pretrain_seen) == (
        600,
        2100,
        3200,
        96000,
    )
    assert point.scratch_seen == int(df.loc[df["phase"] == "final", "images_seen"].max())
    assert point.per_instance() == pytest.approx(3200 / 2100)
