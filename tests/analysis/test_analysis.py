"""The paper's tables and the report from hand-built result rows with known answers (figures: test_figures.py)."""

import dataclasses
import json

import pandas as pd
import pytest

from analysis import tables
from analysis.report import read_study, search_ranges, write_report
from study.spec.resolved import resolve
from tests.analysis_rows import RECIPES, frame, rows_of, study_frame
from trainables.contract import row_store


@pytest.fixture
def study_rows():
    return study_frame()


def test_table1_best_per_schedule_side_by_side(study_rows):
    t = tables.scratch_vs_pretrained(study_rows, recipes=RECIPES).set_index("schedule")
    assert t.loc[1.0, "scratch_bbox_AP"] == 0.3 and t.loc[1.0, "pretrained_bbox_AP"] == 0.5
    assert t.loc[2.0, "scratch_bbox_AP"] == 0.55 and t.loc[2.0, "pretrained_bbox_AP"] == 0.52
    assert t.loc[2.0, "delta_bbox_AP"] == pytest.approx(0.03)
    assert t.loc[2.0, "scratch_lr"] == 0.3  # the diverged (0.9) trial is not "best"
    best = tables.best_by_schedule(study_rows).set_index(["init", "schedule"])
    # Every trial that scored 1x counts there, on its own schedule or on a branch.
    assert best.loc[("scratch", 2.0), "trials"] == 1 and best.loc[("scratch", 1.0), "trials"] == 3
    # The recipe at every schedule (the paper's design): the mean over its seeds, test split.
    assert t.loc[1.0, "recipe_scratch_test_bbox_AP"] == pytest.approx(0.23)
    assert t.loc[2.0, "recipe_scratch_test_bbox_AP"] == pytest.approx(0.53)
    assert t.loc[1.0, "recipe_pretrained_test_bbox_AP"] == pytest.approx(0.425)
    assert t.loc[2.0, "recipe_pretrained_test_bbox_AP"] == pytest.approx(0.48)
    # The test split leads: the columns after the index are the test AP and its gap.
    assert list(t.columns[2:5]) == ["scratch_test_bbox_AP", "pretrained_test_bbox_AP", "delta_test_bbox_AP"]
    assert t.loc[2.0, "delta_test_bbox_AP"] == pytest.approx(0.03)


def test_the_best_result_is_chosen_on_the_search_split_and_reported_on_the_test_split():
    """A trial better on the test split but worse on the search split is not the one shown:
    choosing on the test split would bias its numbers upward, as a best-of-N on one split does."""
    rows = rows_of("a", "scratch", 0.1, 1e-4, 1.0, {1.0: 0.40}, test={1.0: 0.30})
    rows += rows_of("b", "scratch", 0.3, 1e-4, 1.0, {1.0: 0.35}, test={1.0: 0.38})
    rows += rows_of("p", "pretrained", 0.3, 1e-4, 1.0, {1.0: 0.45}, test={1.0: 0.41})
    df = frame(rows)
    t = tables.scratch_vs_pretrained(df).set_index("schedule")
    assert t.loc[1.0, "scratch_test_bbox_AP"] == 0.30 and t.loc[1.0, "scratch_bbox_AP"] == 0.40
    assert t.loc[1.0, "delta_test_bbox_AP"] == pytest.approx(-0.11)
    s = tables.scaling(df).set_index("init")
    assert s.loc["scratch", "trial_id"] == "a" and s.loc["scratch", "test_bbox_AP"] == 0.30
    # The study's closing table makes the same choice.
    from study.summary import best_per_arm, format_summary

    summary = best_per_arm(df).set_index("arm")
    assert summary.loc["scratch-tiny-f1", "trial_id"] == "a" and summary.loc["scratch-tiny-f1", "test_bbox_AP"] == 0.30
    line = [ln for ln in format_summary(best_per_arm(df)).splitlines() if ln.startswith("scratch")][0]
    assert line.split()[1:5] == ["0.300", "0.270", "0.400", "0.360"]  # test bbox, segm; search bbox, segm
    # A study without a test split: the test columns are empty, never filled from the search split.
    t = tables.scratch_vs_pretrained(df.assign(test_bbox_AP=None, test_segm_AP=None)).set_index("schedule")
    assert t["scratch_test_bbox_AP"].isna().all() and t.loc[1.0, "scratch_bbox_AP"] == 0.40


def test_paper_numbers_beside_coco_arms(study_rows):
    coco = study_rows.assign(model="r50")
    t = tables.scratch_vs_pretrained(coco, with_paper=True).set_index("schedule")
    assert t.loc[2.0, "paper_scratch_bbox_AP"] == pytest.approx(0.368)
    assert t.loc[2.0, "paper_pretrained_bbox_AP"] == pytest.approx(0.403)
    assert pd.isna(t.loc[1.0, "paper_scratch_bbox_AP"])  # the paper has no 1x row
    # A subset's rows never get Table 1 (all of train2017); its Sec. 5.2 result is in scaling().
    subset = coco.assign(data_fraction=10_000 / 118_287, train_images=10_000, arm=coco["arm"] + "-10k")
    both = pd.concat([coco, subset], ignore_index=True)
    t = tables.scratch_vs_pretrained(both, with_paper=True).set_index(["data_fraction", "schedule"])
    assert t.loc[(1.0, 2.0), "paper_scratch_bbox_AP"] == pytest.approx(0.368)
    assert pd.isna(t.loc[(10_000 / 118_287, 2.0), "paper_scratch_bbox_AP"])
    s = tables.scaling(both, with_paper=True).set_index(["init", "train_images"])
    assert s.loc[("pretrained", 10_000), "paper_bbox_AP"] == pytest.approx(0.260)
    assert s.loc[("scratch", 10_000), "paper_bbox_AP"] == pytest.approx(0.259)
    assert pd.isna(s.loc[("scratch", 600), "paper_bbox_AP"])  # no paper subset of that size
    # Table 2: each init's recipe at the schedule of the paper's row (6x; the study's longest,
    # 2x, where it has no 6x), full data only, mean over its seeds, its test-split metrics
    # beside the paper's six; never the best over trials and schedules.
    t2 = tables.table2(both, RECIPES).set_index("init")
    assert list(t2.index) == ["pretrained", "scratch"] and (t2["model"] == "r50").all()
    assert t2.loc["scratch", "schedule"] == 2.0 and t2.loc["scratch", "test_bbox_AP"] == pytest.approx(0.53)
    assert t2.loc["pretrained", "test_bbox_AP"] == pytest.approx(0.48)  # p2 and p3 (seeds 0, 1), not p1's 1x
    assert t2.loc["scratch", "paper_bbox_AP"] == pytest.approx(0.413)
    assert t2.loc["pretrained", "paper_segm_AP75"] == pytest.approx(0.387)
    assert tables.table2(study_rows, RECIPES).empty  # the toy model is not in the paper


def test_budget_counts_statuses_and_worker_hours(study_rows):
    b = tables.budget(study_rows).set_index("arm")
    s = b.loc["scratch-tiny-f1"]
    assert (s["trials"], s["completed"], s["stopped"], s["diverged"]) == (4, 2, 1, 1)
    assert s["schedule_results"] == 4  # s1 1x, s2 1x and 2x, s4 1x (s3 diverged)
    # Trunk plus branches: 1x costs 200; a 2x trunk with its 1x branch 267 + 133 + 133 = 533.
    assert s["iterations"] == 200 + 533 + 200 + 200
    # Last rows' wall clock: s1 1 row x 36 s, s2 4 rows, s3 1, s4 1 -> 252 s x 2 workers
    assert s["worker_hours"] == pytest.approx((36 + 144 + 36 + 36) * 2 / 3600)


def test_seeds_mean_and_std(study_rows):
    from analysis.stats import replicates

    configs = replicates.planned_configs(study_rows, RECIPES)
    t = replicates.seed_stats(replicates.replicate_rows(study_rows, configs))
    # p2 and p3 share lr and wd (the recipe) at 1x and at 2x; no other configuration has two seeds.
    assert sorted(set(zip(t["init"], t["reading"], t["schedule"]))) == [
        ("pretrained", "recipe", 1.0),
        ("pretrained", "recipe", 2.0),
    ]
    row = t.iloc[-1]
    assert row["seeds"] == 2 and row["schedule"] == 2.0
    # Test split: 0.50 and 0.46 (search 0.52, 0.48).
    assert row["mean"] == pytest.approx(0.48) and row["std"] == pytest.approx(0.0282842, rel=1e-4)


def test_boundary_warning(study_rows):
    ranges = {
        "scratch-tiny-f1": {"lr": (0.03, 0.3), "weight_decay": (1e-5, 1e-3)},
        "pretrained-tiny-f1": {"lr": (0.03, 3.0), "weight_decay": (1e-5, 1e-3)},
    }
    warnings = tables.boundary_warnings(study_rows, ranges)
    assert len(warnings) == 1 and "scratch-tiny-f1" in warnings[0] and "lr=0.3" in warnings[0] and "high" in warnings[0]


def test_scaling_table():
    rows = rows_of("a", "scratch", 0.3, 1e-4, 1.0, {1.0: 0.5}) + rows_of(
        "b", "scratch", 0.3, 1e-4, 1.0, {1.0: 0.2}, fraction=0.1
    )
    rows += rows_of("c", "pretrained", 0.3, 1e-4, 1.0, {1.0: 0.4}, fraction=0.1)
    t = tables.scaling(frame(rows))
    assert t[t["init"] == "scratch"]["train_images"].tolist() == [60, 600]
    assert t[t["init"] == "scratch"]["bbox_AP"].tolist() == [0.2, 0.5]


def test_report_on_partial_data(tmp_path):
    study = tmp_path / "S"
    uri = str(study)
    for row in rows_of("d", "scratch", 5.0, 1e-4, 1.0, {1.0: 0.0}, status="diverged"):
        row_store.write_row(uri, row)
    report = write_report(study)
    text = report.read_text()
    assert "No schedule has a final result" in text and "Every trial diverged" in text
    assert "no pretrained arm" in text and "study.json" in text
    assert sorted(p.name for p in report.parent.glob("*.png")) == [
        "ap_vs_images.png",
        "landscape.png",
        "training_curves.png",
    ]


def test_report_leads_with_the_test_split(tmp_path, study_rows):
    study = tmp_path / "S"
    for row in study_rows.to_dict("records"):
        row_store.write_row(str(study), {k: v for k, v in row.items() if not pd.isna(v)})
    (study / "subsets").mkdir()
    (study / "subsets" / "splits-seed-0.json").write_text(
        json.dumps(
            {
                "search": {"annotations": "s.json", "held_out_of_training": False, "images": 100, "image_ids": []},
                "test": {"annotations": "t.json", "images": 80, "image_ids": []},
            }
        )
    )
    (study / "study.json").write_text(
        json.dumps(
            {
                "preset": {"name": "t", "seed": 0},
                "arms": {a: {"lr": v[0], "weight_decay": v[1]} for a, v in RECIPES.items()},
            }
        )
    )
    text = write_report(study).read_text()
    assert "search split: 100 images (s.json); test split: 80 images (t.json)" in text
    # The lead: Table 1's shape (inits x schedules), each init's recipe (s2; p2, the search's
    # seed), one seed each and so no verdict.
    lead = text.split("## The answer")[1].split("## How to read it")[0]
    assert "tiny, data fraction 1: each init's recipe, bbox_AP on the test split, one seed:" in lead
    assert (
        "|  | 1× | 2× |" in lead and "| scratch | 0.230 | 0.530 |" in lead and "| pretrained | 0.430 | 0.500 |" in lead
    )
    assert "| Δ scratch − pretrained | -0.200 | +0.030 |" in lead and "no verdict is drawn" in lead
    # One seed: each init's change along its recipe trial is a point estimate against the
    # margin (study.json names none: the COCO default, 0.005), and the cell says so.
    assert "| pretrained: change from the schedule before | – | +0.070 (beyond ±0.005; one seed, no interval) |" in lead
    assert "| scratch: change from the schedule before | – | +0.300 (beyond ±0.005; one seed, no interval) |" in lead
    # Its words: pretrained's lead at the shortest schedule, each init's last step, the budget.
    assert (
        "- **tiny, data fraction 1, one seed (no verdict). Pretrained leads scratch at 1x by +0.200; pretrained "
        "1x -> 2x +0.070 (still rising, +0.070 per doubling, against ±0.005); scratch 1x -> 2x +0.300 (still "
        "rising, +0.300 per doubling, against ±0.005): at this budget: pretrained and scratch still moving.**" in lead
    )
    # The best of the search follows, with N in every cell: at 1x scratch's best of three
    # (s1; s3 diverged), pretrained's of two (p1; p3 is another seed's).
    best = lead.split("### Best of the search")[1]
    assert "| scratch | 0.280 (N=3) | 0.530 (N=1) |" in best and "| pretrained | 0.480 (N=2) | 0.500 (N=1) |" in best
    # The wide table, every AP column, beside the report.
    wide = pd.read_csv(study / "report" / "scratch_vs_pretrained.csv").set_index("schedule")
    assert wide.loc[2.0, "scratch_test_bbox_AP"] == pytest.approx(0.53) and wide.loc[2.0, "delta_test_bbox_AP"] == (
        pytest.approx(0.03)
    )
    assert "No test-split numbers" not in text
    # Without a test split the report says so, and the test columns stay empty.
    for path in (study / "metrics").glob("*.parquet"):
        path.unlink()
    for row in study_rows.assign(test_bbox_AP=None, test_segm_AP=None).to_dict("records"):
        row_store.write_row(str(study), {k: v for k, v in row.items() if not pd.isna(v)})
    text = write_report(study).read_text()
    assert "No test-split numbers" in text and "on the search split (the study has no test split)" in text
    assert "| scratch | 0.250 | 0.550 |" in text


def test_report_without_any_rows(tmp_path):
    (tmp_path / "E").mkdir()
    text = write_report(tmp_path / "E").read_text()
    assert "No evaluation rows" in text


def test_search_ranges_from_study_json(tmp_path):
    """study.json carries every arm's ranges with the per-arm overrides applied."""
    from study.spec.presets import TOY
    from study.workspace import write_study_file

    study = dataclasses.replace(
        TOY, search_overrides=(("init=scratch", dataclasses.replace(TOY.search, lr=(0.02, 0.2))),)
    )
    write_study_file(str(tmp_path), resolve(study), {}, {})
    ranges = search_ranges(read_study(tmp_path))
    assert ranges["scratch-tiny-f1"]["lr"] == (0.02, 0.2) and ranges["pretrained-tiny-f1"]["lr"] == TOY.search.lr
    assert ranges["pretrained-tiny-f1"]["weight_decay"] == TOY.search.weight_decay


def test_recipes_come_from_study_json(tmp_path):
    from analysis.report import read_study, recipes

    (tmp_path / "study.json").write_text(
        json.dumps(
            {
                "arms": {
                    "scratch-tiny-f1": {"lr": 0.3, "weight_decay": 1e-4},
                    "pretrained-tiny-f1": {"lr": 0.2, "weight_decay": 1e-5},
                }
            }
        )
    )
    assert recipes(read_study(str(tmp_path))) == {"scratch-tiny-f1": (0.3, 1e-4), "pretrained-tiny-f1": (0.2, 1e-5)}
    assert recipes(read_study(tmp_path / "absent")) == {}


def test_a_keypoint_study_leads_with_keypoint_ap_beside_the_papers(tmp_path, study_rows):
    """The lead table is the objective's: a keypoint study's is keypoint AP, inits x
    schedules, with the paper's Sec. 5.1 values (65.6 / 65.5 at 2x; no 1x) for COCO."""
    from analysis.answer import recipe_tables

    kp = study_rows.assign(
        model="r50",
        keypoints_AP=study_rows["bbox_AP"] - 0.1,
        test_keypoints_AP=study_rows["test_bbox_AP"] - 0.1,
    )
    margin = lambda model, fraction: 0.005  # noqa: E731
    [(title, table)] = recipe_tables(kp, "keypoints_AP", RECIPES, margin, with_paper=True)
    assert title == "r50, data fraction 1: each init's recipe, keypoints_AP on the test split, one seed"
    rows = table.set_index("")
    assert rows.loc["scratch"].tolist() == ["0.130", "0.430"] and rows.loc["pretrained"].tolist() == ["0.330", "0.400"]
    assert rows.loc["paper: random init"].tolist() == ["–", "0.656"]
    assert rows.loc["paper: w/ pre-train"].tolist() == ["–", "0.655"]
    # Box AP keeps Table 1's numbers.
    [(_, table)] = recipe_tables(kp, "bbox_AP", RECIPES, margin, with_paper=True)
    assert table.set_index("").loc["paper: random init"].tolist() == ["–", "0.368"]
    # The report of a keypoint study (study.json's objective) leads with keypoint AP.
    study = tmp_path / "K"
    for row in kp.to_dict("records"):
        row_store.write_row(str(study), {k: v for k, v in row.items() if not pd.isna(v)})
    arms = {a: {"lr": v[0], "weight_decay": v[1]} for a, v in RECIPES.items()}
    (study / "study.json").write_text(json.dumps({"preset": {"objective": "keypoints_AP"}, "arms": arms}))
    text = write_report(study).read_text()
    lead = text.split("## The answer")[1].split("## How to read it")[0]
    assert "r50, data fraction 1: each init's recipe, keypoints_AP on the test split, one seed:" in lead
    assert "| scratch | 0.130 | 0.430 |" in lead and "| pretrained | 0.330 | 0.400 |" in lead
    # The closing summary shows keypoint AP beside box and mask AP, on both splits.
    from study.summary import best_per_arm, format_summary

    lines = format_summary(best_per_arm(kp, "keypoints_AP")).splitlines()
    assert lines[1].split()[1:10] == ["bbox", "AP", "segm", "AP", "kp", "AP", "bbox", "AP", "segm"]
    scratch = next(ln for ln in lines if ln.startswith("scratch"))
    assert scratch.split()[1:7] == ["0.530", "0.477", "0.430", "0.550", "0.495", "0.450"]
    # The wide table: the objective's columns first, the recipe's and the paper's keypoint AP.
    wide = tables.scratch_vs_pretrained(kp, "keypoints_AP", with_paper=True, recipes=RECIPES).set_index("schedule")
    assert list(wide.columns[2:5]) == [
        "scratch_test_keypoints_AP",
        "pretrained_test_keypoints_AP",
        "delta_test_keypoints_AP",
    ]
    assert wide.loc[2.0, "paper_scratch_keypoints_AP"] == pytest.approx(0.656)
    assert "paper_scratch_bbox_AP" not in wide and wide["recipe_scratch_test_keypoints_AP"].notna().any()
    assert "paper_bbox_AP" not in tables.scaling(kp, "keypoints_AP", with_paper=True)
    # A COCO keypoint study's report: Sec. 5.1 in the lead, no Table 2 (the box study's).
    blob = {
        "preset": {"objective": "keypoints_AP", "margin": {"ap": 0.005}},
        "arms": {a: {**v, "data": {"source": "coco"}} for a, v in arms.items()},
    }
    (study / "study.json").write_text(json.dumps(blob))
    text = write_report(study).read_text()
    assert "| paper: random init | – | 0.656 |" in text and "paper Table 2" not in text


def test_rank_agreement_between_each_rung_and_the_longest_schedule(tmp_path):
    """Spearman's ρ per arm between each shorter schedule's search-split AP and the longest's,
    over the trials that scored both: whether early rungs ranked trials as the end did."""
    from analysis.stats.rank_agreement import rank_agreement

    aps = {"t1": (0.1, 0.2, 0.3), "t2": (0.2, 0.1, 0.4), "t3": (0.3, 0.4, 0.5), "t4": (0.4, 0.3, 0.6)}
    rows = [r for t, (a, b, c) in aps.items() for r in rows_of(t, "scratch", 0.3, 1e-4, 3.0, {1.0: a, 2.0: b, 3.0: c})]
    # Two pretrained trials: too few for a rank correlation; one stopped at 1x counts nowhere at 3x.
    rows += rows_of("p1", "pretrained", 0.3, 1e-4, 3.0, {1.0: 0.5, 2.0: 0.6, 3.0: 0.7})
    rows += rows_of("p2", "pretrained", 0.2, 1e-4, 3.0, {1.0: 0.4, 2.0: 0.5, 3.0: 0.6})
    rows += rows_of("p3", "pretrained", 0.1, 1e-4, 3.0, {1.0: 0.1})
    table = rank_agreement(frame(rows)).set_index(["arm", "schedule"])
    assert table.loc[("scratch-tiny-f1", 1.0), "spearman"] == pytest.approx(1.0)
    assert table.loc[("scratch-tiny-f1", 2.0), "spearman"] == pytest.approx(0.6)
    assert table.loc[("scratch-tiny-f1", 2.0), "trials"] == 4 and table.loc[("scratch-tiny-f1", 2.0), "longest"] == 3.0
    assert table.loc[("pretrained-tiny-f1", 1.0), "trials"] == 2
    assert pd.isna(table.loc[("pretrained-tiny-f1", 1.0), "spearman"])
    study = tmp_path / "R"
    for row in rows:
        row_store.write_row(str(study), row)
    text = write_report(study).read_text()
    section = text.split("## Early stopping: did the shorter schedules rank trials as the longest did?")[1]
    assert "| scratch-tiny-f1 | 2 | 3 | 4 | 0.6 |" in section and "| scratch-tiny-f1 | 1 | 3 | 4 | 1 |" in section
