"""The paper's tables and figures from hand-built result rows with known answers."""

import json

import pandas as pd
import pytest

from analysis import figures, tables
from analysis.report import search_ranges, write_report
from trainables import results


def _rows(trial, arm_init, lr, wd, sched, aps, status="completed", seed=0, fraction=1.0, model="tiny",
          max_iter=None, pretrain=None, period=100):
    """Evaluation rows of one trial: ``aps`` at iterations period, 2*period, ..."""
    max_iter = max_iter or int(200 * sched)
    out = []
    for k, ap in enumerate(aps, start=1):
        last = k == len(aps)
        out.append({
            "study": "t", "arm": f"{arm_init}-{model}-f{fraction:g}", "trial_id": trial, "init": arm_init,
            "data_fraction": fraction, "train_images": int(600 * fraction), "model": model, "norm": "gn", "lr": lr,
            "weight_decay": wd, "schedule": sched, "batch_size": 4, "seed": seed, "num_workers": 2,
            "iteration": k * period, "max_iterations": max_iter, "images_seen": 4 * k * period, "lr_now": lr,
            "loss": 1.0 / k, "bbox_AP": ap, "segm_AP": ap * 0.9, "wall_time_s": 36.0 * k,
            "status": status if last else "running", "code_version": "t", "pretrain_images_seen": pretrain,
        })
    return out


def _frame(rows):
    df = pd.DataFrame(rows)
    for col in results.COLUMNS:
        if col not in df:
            df[col] = None
    return df[list(results.COLUMNS)]


@pytest.fixture
def study_rows():
    rows = []
    rows += _rows("s1", "scratch", 0.1, 1e-4, 1.0, [0.1, 0.3])
    rows += _rows("s2", "scratch", 0.3, 1e-4, 2.0, [0.1, 0.2, 0.4, 0.55])        # scratch best at 2x
    rows += _rows("s3", "scratch", 0.9, 1e-3, 2.0, [0.0], status="diverged")
    rows += _rows("s4", "scratch", 0.2, 1e-4, 2.0, [0.05, 0.1], status="stopped")
    rows += _rows("p1", "pretrained", 0.3, 1e-4, 1.0, [0.4, 0.5], pretrain=57600)  # pretrained best at 1x
    rows += _rows("p2", "pretrained", 0.3, 1e-4, 2.0, [0.3, 0.4, 0.45, 0.52], pretrain=57600)
    rows += _rows("p3", "pretrained", 0.3, 1e-4, 2.0, [0.3, 0.4, 0.45, 0.48], pretrain=57600, seed=1)
    return _frame(rows)


def test_table1_best_per_schedule_side_by_side(study_rows):
    t = tables.scratch_vs_pretrained(study_rows).set_index("schedule")
    assert t.loc[1.0, "scratch_bbox_AP"] == 0.3 and t.loc[1.0, "pretrained_bbox_AP"] == 0.5
    assert t.loc[2.0, "scratch_bbox_AP"] == 0.55 and t.loc[2.0, "pretrained_bbox_AP"] == 0.52
    assert t.loc[2.0, "delta_bbox_AP"] == pytest.approx(0.03)
    assert t.loc[2.0, "scratch_lr"] == 0.3  # the diverged (0.9) and stopped (0.2) trials are not "best"
    best = tables.best_by_schedule(study_rows)
    assert best.set_index(["init", "schedule"]).loc[("scratch", 2.0), "trials"] == 1


def test_paper_numbers_beside_coco_arms(study_rows):
    coco = study_rows.assign(model="r50")
    t = tables.scratch_vs_pretrained(coco, with_paper=True).set_index("schedule")
    assert t.loc[2.0, "paper_scratch_bbox_AP"] == pytest.approx(0.368)
    assert t.loc[2.0, "paper_pretrained_bbox_AP"] == pytest.approx(0.403)
    assert pd.isna(t.loc[1.0, "paper_scratch_bbox_AP"])  # the paper has no 1x row


def test_budget_counts_statuses_and_worker_hours(study_rows):
    b = tables.budget(study_rows).set_index("arm")
    s = b.loc["scratch-tiny-f1"]
    assert (s["trials"], s["completed"], s["stopped"], s["diverged"]) == (4, 2, 1, 1)
    assert s["iterations"] == 200 + 400 + 100 + 200
    # s1: 2 evals x 36 s, s2: 4 x 36, s3: 36, s4: 72 -> 324 s x 2 workers
    assert s["worker_hours"] == pytest.approx((72 + 144 + 36 + 72) * 2 / 3600)


def test_seeds_mean_and_std(study_rows):
    t = tables.seeds(study_rows)
    assert len(t) == 1
    row = t.iloc[0]
    assert row["arm"] == "pretrained-tiny-f1" and row["seeds"] == 2
    assert row["bbox_AP_mean"] == pytest.approx(0.50) and row["bbox_AP_std"] == pytest.approx(0.0282842, rel=1e-4)


def test_boundary_warning(study_rows):
    ranges = {"scratch-tiny-f1": {"lr": (0.03, 0.3), "weight_decay": (1e-5, 1e-3)},
              "pretrained-tiny-f1": {"lr": (0.03, 3.0), "weight_decay": (1e-5, 1e-3)}}
    warnings = tables.boundary_warnings(study_rows, ranges)
    assert len(warnings) == 1 and "scratch-tiny-f1" in warnings[0] and "lr=0.3" in warnings[0] and "high" in warnings[0]


def test_scaling_table():
    rows = _rows("a", "scratch", 0.3, 1e-4, 1.0, [0.5]) + _rows("b", "scratch", 0.3, 1e-4, 1.0, [0.2], fraction=0.1)
    rows += _rows("c", "pretrained", 0.3, 1e-4, 1.0, [0.4], fraction=0.1)
    t = tables.scaling(_frame(rows))
    assert t[t["init"] == "scratch"]["train_images"].tolist() == [60, 600]
    assert t[t["init"] == "scratch"]["bbox_AP"].tolist() == [0.2, 0.5]


def test_figures_have_labels_and_both_colours(study_rows):
    fig = figures.training_curves(study_rows)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "iteration" and ax.get_ylabel() == "bbox_AP"
    colours = {line.get_color() for line in ax.lines}
    assert {figures.COLOURS["scratch"], figures.COLOURS["pretrained"]} <= colours
    fig = figures.ap_vs_images(study_rows)
    pretrained = [l for l in fig.axes[0].lines if l.get_color() == figures.COLOURS["pretrained"]][0]
    assert pretrained.get_xdata()[0] == 57600 + 400  # starts after its pretraining images
    assert len(figures.landscape(study_rows).axes) == 4  # 2 arms x (lr, weight decay)


def test_report_on_partial_data(tmp_path):
    study = tmp_path / "S"
    uri = str(study)
    for row in _rows("d", "scratch", 5.0, 1e-4, 1.0, [0.0], status="diverged"):
        results.write_row(uri, row)
    report = write_report(study)
    text = report.read_text()
    assert "No trial has completed" in text and "Every trial diverged" in text
    assert "no pretrained arm" in text and "study.json" in text
    assert sorted(p.name for p in report.parent.glob("*.png")) == ["ap_vs_images.png", "landscape.png",
                                                                 "training_curves.png"]


def test_report_without_any_rows(tmp_path):
    (tmp_path / "E").mkdir()
    text = write_report(tmp_path / "E").read_text()
    assert "No evaluation rows" in text


def test_search_ranges_from_study_json(tmp_path):
    study = {"preset": {"search": {"lr": [0.01, 0.1], "weight_decay": [1e-5, 1e-3], "schedule": [1.0]},
                        "search_overrides": [["init=scratch", {"lr": [0.02, 0.2], "weight_decay": [1e-5, 1e-3],
                                                               "schedule": [2.0]}]]},
             "arms": {"scratch-tiny-f1": {"init": "scratch", "model_name": "tiny", "data_fraction": 1.0},
                      "pretrained-tiny-f1": {"init": "pretrained", "model_name": "tiny", "data_fraction": 1.0}}}
    ranges = search_ranges(json.loads(json.dumps(study)))
    assert ranges["scratch-tiny-f1"]["lr"] == (0.02, 0.2) and ranges["pretrained-tiny-f1"]["lr"] == (0.01, 0.1)
