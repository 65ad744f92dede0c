"""The paper's tables and figures from hand-built result rows with known answers."""

import dataclasses
import json

import pandas as pd
import pytest

from analysis import figures, tables
from analysis.report import read_study, search_ranges, write_report
from trainables import results
from trainables.branches import branches


def _rows(
    trial,
    arm_init,
    lr,
    wd,
    trunk,
    finals,
    trunk_aps=(),
    status="completed",
    seed=0,
    fraction=1.0,
    model="tiny",
    pretrain=None,
    period=100,
    base=200,
    test=None,
):
    """Rows of one trial with trunk schedule ``trunk``, written in the order a run computes them.

    ``finals``: schedule -> final AP, for the schedules it finished (a trial stopped early
    lists fewer than its plan); ``trunk_aps``: trunk evaluations every ``period`` trunk
    iterations; the last final gets ``status``. A final's test-split AP: ``test[schedule]``,
    or its search AP minus 0.02 (test APs are on final rows only).
    """
    test = test or {}
    out, cost, it, aps = [], 0, 0, list(trunk_aps)

    def row(**kw):
        return {
            "study": "t",
            "arm": f"{arm_init}-{model}-f{fraction:g}",
            "trial_id": trial,
            "init": arm_init,
            "data_fraction": fraction,
            "train_images": int(600 * fraction),
            "model": model,
            "norm": "gn",
            "lr": lr,
            "weight_decay": wd,
            "trunk_schedule": trunk,
            "batch_size": 4,
            "seed": seed,
            "num_workers": 2,
            "lr_now": lr,
            "code_version": "t",
            "pretrain_images_seen": pretrain,
            "cost_iterations": cost,
            "cost_images": 4 * cost,
            "wall_time_s": 36.0 * (len(out) + 1),
            "images_seen": 4 * kw["iteration"],
            **kw,
        }

    for b in branches(base, tuple(finals), trunk):
        if b.schedule not in finals:
            break
        for t in range(it + 1, b.fork + 1):
            cost += 1
            if t % period == 0 and aps:
                ap = aps.pop(0)
                out.append(
                    row(
                        phase="trunk",
                        schedule=trunk,
                        iteration=t,
                        max_iterations=int(base * trunk),
                        loss=1.0,
                        bbox_AP=ap,
                        segm_AP=ap * 0.9,
                        status="running",
                    )
                )
        it = b.fork
        cost += b.end - b.fork
        ap = finals[b.schedule]
        last = b.schedule == max(finals)
        out.append(
            row(
                phase="final",
                schedule=b.schedule,
                iteration=b.end,
                max_iterations=b.end,
                fork_iteration=b.fork,
                loss=0.5,
                bbox_AP=ap,
                segm_AP=ap * 0.9,
                test_bbox_AP=test.get(b.schedule, ap - 0.02),
                test_segm_AP=test.get(b.schedule, ap - 0.02) * 0.9,
                status=status if last else "completed",
            )
        )
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
    rows += _rows("s1", "scratch", 0.1, 1e-4, 1.0, {1.0: 0.3})
    rows += _rows("s2", "scratch", 0.3, 1e-4, 2.0, {1.0: 0.25, 2.0: 0.55}, [0.1, 0.2])  # the recipe; best at 2x
    rows += _rows("s3", "scratch", 0.9, 1e-3, 2.0, {1.0: 0.0}, status="diverged")
    rows += _rows("s4", "scratch", 0.2, 1e-4, 2.0, {1.0: 0.1})  # stopped at the 1x rung
    rows += _rows("p1", "pretrained", 0.5, 1e-4, 1.0, {1.0: 0.5}, pretrain=57600)  # pretrained best at 1x
    rows += _rows("p2", "pretrained", 0.3, 1e-4, 2.0, {1.0: 0.45, 2.0: 0.52}, [0.3, 0.4], pretrain=57600)
    rows += _rows("p3", "pretrained", 0.3, 1e-4, 2.0, {1.0: 0.44, 2.0: 0.48}, [0.3, 0.4], pretrain=57600, seed=1)
    return _frame(rows)


RECIPES = {"scratch-tiny-f1": (0.3, 1e-4), "pretrained-tiny-f1": (0.3, 1e-4)}


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
    rows = _rows("a", "scratch", 0.1, 1e-4, 1.0, {1.0: 0.40}, test={1.0: 0.30})
    rows += _rows("b", "scratch", 0.3, 1e-4, 1.0, {1.0: 0.35}, test={1.0: 0.38})
    rows += _rows("p", "pretrained", 0.3, 1e-4, 1.0, {1.0: 0.45}, test={1.0: 0.41})
    df = _frame(rows)
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
    # Table 2: each init's result best on the search split over its schedules, full data only,
    # its test-split metrics beside the paper's six.
    t2 = tables.table2(both).set_index("init")
    assert list(t2.index) == ["pretrained", "scratch"] and (t2["model"] == "r50").all()
    assert t2.loc["scratch", "schedule"] == 2.0 and t2.loc["scratch", "test_bbox_AP"] == pytest.approx(0.53)
    assert t2.loc["scratch", "paper_bbox_AP"] == pytest.approx(0.413)
    assert t2.loc["pretrained", "paper_segm_AP75"] == pytest.approx(0.387)
    assert tables.table2(study_rows).empty  # the toy model is not in the paper


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
    from analysis import replicates

    t = replicates.seed_stats(replicates.replicate_rows(study_rows, RECIPES))
    # p2 and p3 share lr and wd (the recipe, so also the arm's best) at 1x and at 2x.
    assert sorted(set(zip(t["init"], t["config"], t["schedule"]))) == [
        ("pretrained", "recipe = best", 1.0),
        ("pretrained", "recipe = best", 2.0),
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
    rows = _rows("a", "scratch", 0.3, 1e-4, 1.0, {1.0: 0.5}) + _rows(
        "b", "scratch", 0.3, 1e-4, 1.0, {1.0: 0.2}, fraction=0.1
    )
    rows += _rows("c", "pretrained", 0.3, 1e-4, 1.0, {1.0: 0.4}, fraction=0.1)
    t = tables.scaling(_frame(rows))
    assert t[t["init"] == "scratch"]["train_images"].tolist() == [60, 600]
    assert t[t["init"] == "scratch"]["bbox_AP"].tolist() == [0.2, 0.5]


def test_figures_have_labels_and_both_colours(study_rows):
    fig = figures.training_curves(study_rows)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "iteration" and ax.get_ylabel() == "bbox_AP (search split)"
    colours = {line.get_color() for line in ax.lines}
    assert {figures.COLOURS["scratch"], figures.COLOURS["pretrained"]} <= colours
    # Scratch's recipe (s2): its trunk from (0, 0), then a dashed branch per schedule from
    # its fork (1x at 67, 2x at 267) to its final result.
    scratch = [line for line in ax.lines if line.get_color() == figures.COLOURS["scratch"]]
    assert list(scratch[0].get_xdata()) == [0, 100, 200] and list(scratch[0].get_ydata()) == [0.0, 0.1, 0.2]
    branches_drawn = [line for line in scratch if line.get_linestyle() == "--"]
    assert [list(line.get_xdata()) for line in branches_drawn] == [[67, 200], [267, 400]]
    assert [line.get_ydata()[1] for line in branches_drawn] == [0.25, 0.55]
    assert fig._suptitle.get_text().startswith("bbox_AP (search split) during training")


def test_ap_vs_images_on_a_log_axis_with_the_pretraining_band(study_rows):
    ax = figures.ap_vs_images(study_rows).axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("images seen (pretraining + detection")
    assert ax.get_ylabel() == "final bbox_AP (test split)" and ax.get_title()
    pretrained = [line for line in ax.lines if line.get_color() == figures.COLOURS["pretrained"]]
    # p2 (the best 2x): its 1x and 2x results (200 and 400 iterations x 4 images), after its
    # 57,600 pretraining images; a band from the detection images alone to that total. The
    # AP drawn is its test split's (search split's minus 0.02 in these rows).
    drawn = [line for line in pretrained if line.get_label().startswith("pretrained (")][0]
    assert list(drawn.get_xdata()) == [57600 + 800, 57600 + 1600] and "57,600 pretraining images" in drawn.get_label()
    assert list(drawn.get_ydata()) == pytest.approx([0.43, 0.50])
    bands = [list(line.get_xdata()) for line in pretrained if line.get_linewidth() == 5]
    assert bands == [[800, 57600 + 800], [1600, 57600 + 1600]]
    lo, hi = ax.get_xlim()
    assert lo < 800 and hi > 57600 + 1600  # detection-only results stay on the axis
    scratch = [line for line in ax.lines if line.get_color() == figures.COLOURS["scratch"]][0]
    assert list(scratch.get_xdata()) == [800, 1600]
    # Pretraining images unknown (real weights without the figure): said, never drawn at 0.
    unknown = study_rows.assign(
        pretrain_images_seen=study_rows["pretrain_images_seen"].where(study_rows["init"] != "pretrained")
    )
    ax = figures.ap_vs_images(unknown).axes[0]
    drawn = [line for line in ax.lines if line.get_label().startswith("pretrained (")][0]
    assert "pretraining images unknown" in drawn.get_label() and list(drawn.get_xdata()) == [800, 1600]


def test_landscape_spans_each_searched_range_with_readable_ticks(study_rows):
    ranges = {
        "scratch-tiny-f1": {"lr": (0.05, 1.0), "weight_decay": (1e-5, 1e-3)},
        "pretrained-tiny-f1": {"lr": (0.1, 0.6), "weight_decay": (3e-5, 3e-4)},
    }
    fig = figures.landscape(study_rows, ranges=ranges)
    assert len(fig.axes) == 4 and fig._suptitle.get_text()  # 2 arms x (lr, weight decay)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["pretrained-tiny-f1"] * 2 + ["scratch-tiny-f1"] * 2
    assert fig.axes[0].title.get_color() == figures.COLOURS["pretrained"]
    for ax, (arm, param) in zip(fig.axes, [(a, p) for a in sorted(ranges) for p in ("lr", "weight_decay")]):
        lo, hi = ranges[arm][param]
        assert ax.get_xscale() == "log" and ax.get_xlim() == pytest.approx((lo / 1.25, hi * 1.25))
        assert ax.get_xlabel().startswith(param.replace("_", " ")) and ax.get_ylabel() == "final bbox_AP (search split)"
        fig.canvas.draw()
        labels = [
            t.get_text() for t in ax.get_xticklabels() if t.get_text() and lo / 1.25 <= t.get_position()[0] <= hi * 1.25
        ]
        assert 2 <= len(labels) <= 8, labels  # a few plain labels (0.1, 0.2, 0.5), never a crowd
        assert not [t for t in ax.get_xticklabels(minor=True) if t.get_text()]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels() if 0.08 <= t.get_position()[0] <= 0.75] == [
        "0.1",
        "0.2",
        "0.5",
    ]
    # Without ranges the axes span the points.
    ax = figures.landscape(study_rows).axes[0]
    assert ax.get_xlim() == pytest.approx((0.3 / 1.25, 0.5 * 1.25))


def test_report_on_partial_data(tmp_path):
    study = tmp_path / "S"
    uri = str(study)
    for row in _rows("d", "scratch", 5.0, 1e-4, 1.0, {1.0: 0.0}, status="diverged"):
        results.write_row(uri, row)
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
        results.write_row(str(study), {k: v for k, v in row.items() if not pd.isna(v)})
    (study / "subsets").mkdir()
    (study / "subsets" / "splits-seed-0.json").write_text(
        json.dumps(
            {
                "search": {"annotations": "s.json", "held_out_of_training": False, "images": 100, "image_ids": []},
                "test": {"annotations": "t.json", "images": 80, "image_ids": []},
            }
        )
    )
    text = write_report(study).read_text()
    assert "search split: 100 images (s.json); test split: 80 images (t.json)" in text
    # The lead: Table 1's shape (inits x schedules), test APs of the results best on the
    # search split, one seed each and so no verdict.
    lead = text.split("## The answer")[1].split("## How to read it")[0]
    assert "tiny, data fraction 1: bbox_AP on the test split, one seed:" in lead
    assert (
        "|  | 1× | 2× |" in lead and "| scratch | 0.280 | 0.530 |" in lead and "| pretrained | 0.480 | 0.500 |" in lead
    )
    assert "| Δ scratch − pretrained | -0.200 | +0.030 |" in lead and "no verdict is drawn" in lead
    # One seed: the plateau is a point estimate against the margin (study.json's absent: the
    # COCO default, 0.005), and the cell says so.
    assert "| pretrained: change from the schedule before | – | +0.020 (beyond ±0.005; one seed, no interval) |" in lead
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
        results.write_row(str(study), {k: v for k, v in row.items() if not pd.isna(v)})
    text = write_report(study).read_text()
    assert "No test-split numbers" in text and "on the search split (the study has no test split)" in text
    assert "| scratch | 0.300 | 0.550 |" in text


def test_report_without_any_rows(tmp_path):
    (tmp_path / "E").mkdir()
    text = write_report(tmp_path / "E").read_text()
    assert "No evaluation rows" in text


def test_search_ranges_from_study_json(tmp_path):
    """study.json carries every arm's ranges with the per-arm overrides applied."""
    from study.presets import TOY
    from study.workspace import write_study_file

    study = dataclasses.replace(
        TOY, search_overrides=(("init=scratch", dataclasses.replace(TOY.search, lr=(0.02, 0.2))),)
    )
    write_study_file(str(tmp_path), study, {}, {})
    ranges = search_ranges(read_study(tmp_path))
    assert ranges["scratch-tiny-f1"]["lr"] == (0.02, 0.2) and ranges["pretrained-tiny-f1"]["lr"] == TOY.search.lr
    assert ranges["pretrained-tiny-f1"]["weight_decay"] == TOY.search.weight_decay


def test_trunk_and_branches_figure():
    from trainables.plan_figure import trunk_and_branches

    fig = trunk_and_branches(500, (1.0, 2.0, 3.0), warmup_iters=100)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    trunk = lines["trunk (peak LR)"]
    assert trunk.get_xdata()[-1] == 1166 and min(trunk.get_ydata()[100:]) == 1.0  # the peak until the 3x fork
    cooldowns = [lines[f"{s}x: branch {a:,} -> {b:,}"] for s, a, b in ((1, 167, 500), (2, 667, 1000), (3, 1167, 1500))]
    assert [(line.get_xdata()[0], line.get_xdata()[-1]) for line in cooldowns] == [(167, 499), (667, 999), (1167, 1499)]
    assert all(min(line.get_ydata()) == pytest.approx(0.01) for line in cooldowns)  # both drops in every branch
    assert ax.get_xlabel() == "iteration" and ax.get_yscale() == "log"


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


def test_scaling_figure_axes_and_colours():
    rows = _rows("a", "scratch", 0.3, 1e-4, 1.0, {1.0: 0.5}) + _rows(
        "b", "scratch", 0.3, 1e-4, 1.0, {1.0: 0.2}, fraction=0.1
    )
    rows += _rows("c", "pretrained", 0.3, 1e-4, 1.0, {1.0: 0.4}, fraction=0.1)
    rows += _rows("d", "pretrained", 0.3, 1e-4, 1.0, {1.0: 0.6})
    ax = figures.scaling_plot(_frame(rows)).axes[0]
    assert ax.get_title() and ax.get_xscale() == "log"
    assert ax.get_xlabel() == "training images" and ax.get_ylabel() == "final bbox_AP (test split), best trial"
    lines = {line.get_color(): list(line.get_xdata()) for line in ax.lines}
    assert lines == {figures.COLOURS["scratch"]: [60, 600], figures.COLOURS["pretrained"]: [60, 600]}
