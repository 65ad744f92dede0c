"""Seed replicates: the stats, Welch's interval and the verdicts on hand-made rows with known answers."""

import math

import pandas as pd
import pytest

from analysis import replicates
from tests.test_analysis import _frame, _rows

# Student's t, 97.5th percentile, 4 degrees of freedom (printed tables: 2.776).
T_975_DF4 = 2.7764451051977987

RECIPE = (0.3, 1e-4)
RECIPES = {"scratch-tiny-f1": RECIPE, "pretrained-tiny-f1": RECIPE}


def _seeded(arm, lr, finals_by_seed, first_trial=0):
    """One trial per seed, trunk 3x, with the given test-split APs per schedule (its search
    split's 0.02 higher)."""
    rows = []
    for seed, finals in finals_by_seed.items():
        search = {s: ap + 0.02 for s, ap in finals.items()}
        rows += _rows(f"{arm[0]}{lr}-{seed}", arm, lr, 1e-4, 3.0, search, seed=seed, test=dict(finals))
    return rows


@pytest.fixture
def replicated():
    """Recipe run under 3 seeds in both arms; at 3x scratch 0.30/0.32/0.34, pretrained 0.31/0.33/0.35
    (gap -0.01, each std 0.02); at 1x pretrained far ahead."""
    scratch = {s: {1.0: 0.10 + 0.01 * s, 2.0: 0.20 + 0.02 * s, 3.0: 0.30 + 0.02 * s} for s in range(3)}
    pretrained = {s: {1.0: 0.40 + 0.01 * s, 2.0: 0.30 + 0.02 * s, 3.0: 0.31 + 0.02 * s} for s in range(3)}
    return _frame(_seeded("scratch", 0.3, scratch) + _seeded("pretrained", 0.3, pretrained))


def test_mean_and_std_per_init_and_schedule(replicated):
    rows = replicates.replicate_rows(replicated, RECIPES)
    stats = replicates.seed_stats(rows).set_index(["init", "config", "schedule"])
    # The recipe was also each arm's best (the only configuration replicated): one label.
    assert set(stats.index.get_level_values("config")) == {"recipe = best"}
    row = stats.loc[("scratch", "recipe = best", 3.0)]
    assert row["seeds"] == 3 and row["mean"] == pytest.approx(0.32) and row["std"] == pytest.approx(0.02)
    # The value is the test split's, not the search split's (0.02 higher in these rows).
    finals = replicated[replicated["phase"] == "final"]
    assert sorted(rows["value"]) == pytest.approx(sorted(finals["test_bbox_AP"]))


def test_welch_interval_and_verdicts_have_the_known_answers(replicated):
    rows = replicates.replicate_rows(replicated, RECIPES)
    gaps = replicates.gap_intervals(rows)
    gap = _at(gaps, "recipe = best", 3.0)
    # Equal n (3) and std (0.02): se = sqrt(2 * 0.02**2 / 3), Welch's df = 4.
    half = T_975_DF4 * math.sqrt(2 * 0.02**2 / 3)
    assert gap["delta"] == pytest.approx(-0.01)
    assert (gap["low"], gap["high"]) == pytest.approx((-0.01 - half, -0.01 + half))
    assert replicates.verdict(gap) == (
        "recipe = best (lr, wd), 3x: scratch matches pretrained within seed noise "
        f"(Δ = -0.010, 95% CI [{-0.01 - half:+.3f}, {-0.01 + half:+.3f}]; 3 vs 3 seeds)"
    )
    assert "pretrained is ahead beyond seed noise" in replicates.verdict(_at(gaps, "recipe = best", 1.0))
    # 2x: scratch 0.20/0.22/0.24 vs pretrained 0.30/0.32/0.34: behind; 3x within noise.
    lines = replicates.headline(gaps)
    assert lines == [
        "tiny, data fraction 1, recipe = best (lr, wd): scratch matches pretrained within seed noise at ≥ 3x"
    ]
    # Still behind at the longest schedule: said, with where it is behind.
    late = gaps.assign(high=gaps["high"] - 1.0)
    assert replicates.headline(late) == [
        "tiny, data fraction 1, recipe = best (lr, wd): scratch is still behind pretrained beyond seed noise at "
        "the longest schedule scored (behind at 1x, 2x, 3x)"
    ]


def _at(gaps, config, schedule):
    return gaps[(gaps["config"] == config) & (gaps["schedule"] == schedule)].iloc[0]


def test_the_best_configuration_is_the_replicated_one_that_is_not_the_recipe(replicated):
    extra = _frame(
        _seeded("scratch", 0.5, {s: {1.0: 0.2, 2.0: 0.3, 3.0: 0.40 + 0.01 * s} for s in range(2)})
        + _rows("scratch-once", "scratch", 0.9, 1e-4, 3.0, {1.0: 0.5, 2.0: 0.6, 3.0: 0.7})  # one seed: not replicated
    )
    rows = replicates.replicate_rows(pd.concat([replicated, extra], ignore_index=True), RECIPES)
    scratch = rows[rows["init"] == "scratch"]
    assert set(scratch.loc[scratch["config"] == "best", "lr"]) == {0.5}
    assert set(scratch.loc[scratch["config"] == "recipe", "lr"]) == {0.3}
    gaps = replicates.gap_intervals(rows).set_index(["config", "schedule"])
    # The pretrained arm's best is its recipe: its rows pair with scratch's best as "best" and
    # with scratch's recipe as "recipe".
    assert sorted(set(gaps.index.get_level_values("config"))) == ["best", "recipe"]
    assert gaps.loc[("recipe", 3.0), "delta"] == pytest.approx(-0.01)
    assert gaps.loc[("best", 3.0), "scratch_seeds"] == 2 and gaps.loc[("best", 3.0), "delta"] == pytest.approx(
        0.405 - 0.33
    )


def test_too_few_seeds_and_no_spread():
    one = _frame(
        _seeded("scratch", 0.3, {0: {1.0: 0.1, 2.0: 0.2, 3.0: 0.3}, 1: {1.0: 0.1, 2.0: 0.2, 3.0: 0.3}})
        + _seeded("pretrained", 0.3, {0: {1.0: 0.2, 2.0: 0.2, 3.0: 0.3}})
    )
    rows = replicates.replicate_rows(one, RECIPES)
    assert set(rows["init"]) == {"scratch"}  # a configuration under one seed is not a replicate
    two = _frame(
        _seeded("scratch", 0.3, {0: {1.0: 0.1, 2.0: 0.2, 3.0: 0.3}, 1: {1.0: 0.1, 2.0: 0.2, 3.0: 0.3}})
        + _seeded("pretrained", 0.3, {0: {1.0: 0.2, 2.0: 0.2, 3.0: 0.3}, 1: {1.0: 0.2, 2.0: 0.2, 3.0: 0.3}})
    )
    gaps = replicates.gap_intervals(replicates.replicate_rows(two, RECIPES)).set_index(["config", "schedule"])
    # Identical seeds: no spread, the interval is the point.
    assert gaps.loc[("recipe = best", 1.0), ["low", "high"]].tolist() == pytest.approx([-0.1, -0.1])
    assert gaps.loc[("recipe = best", 3.0), ["low", "high"]].tolist() == pytest.approx([0.0, 0.0])
    empty = replicates.gap_intervals(replicates.replicate_rows(_frame([]), RECIPES))
    assert empty.empty


def test_the_report_states_the_verdict(tmp_path, replicated):
    from analysis.report import write_report
    from trainables import results

    for row in replicated.to_dict("records"):
        results.write_row(str(tmp_path), {k: v for k, v in row.items() if not pd.isna(v)})
    text = write_report(tmp_path).read_text()
    section = text.split("## Seed replicates")[1]
    assert "**tiny, data fraction 1, best (lr, wd): scratch matches pretrained within seed noise at ≥ 3x**" in section
    assert "| tiny | 1 | best | 3 | 0.320 ± 0.020 (3) | 0.330 ± 0.020 (3) | -0.010 |" in section
    assert "- best (lr, wd), 2x: pretrained is ahead beyond seed noise" in section
    assert "on the test split" in section


def test_the_replicate_plan_reruns_recipe_and_best_to_the_longest_schedule(tmp_path):
    """smoke: schedules 1x-2x, the recipe lr 0.02 at 2x. The plan runs what is missing:
    every configuration to 2x under seeds 0-2, none twice, whatever the replicates scored."""
    import dataclasses

    from study import replicates as plan
    from study.presets import SMOKE

    study = dataclasses.replace(SMOKE, replicates=3)
    rows = _rows("r", "scratch", 0.02, 1e-4, 2.0, {1.0: 0.10, 2.0: 0.20})  # the recipe's search trial
    rows += _rows("o", "scratch", 0.04, 1e-5, 1.0, {1.0: 0.30})  # best on the search split, trunk 1x only
    rows += _rows("p", "pretrained", 0.02, 1e-4, 2.0, {1.0: 0.40, 2.0: 0.50})
    rows += _rows("r1", "scratch", 0.02, 1e-4, 2.0, {1.0: 0.1, 2.0: 0.9}, seed=1)  # a replicate, done
    df = _frame(rows)
    chosen = plan.load_or_choose(study, df, str(tmp_path))
    assert chosen["scratch-tiny-f1"] == {"trunk": 2.0, "configs": {"recipe": [0.02, 1e-4], "best": [0.04, 1e-5]}}
    assert chosen["pretrained-tiny-f1"]["configs"]["best"] == [0.02, 1e-4]  # nothing beat the recipe
    points = {(p["arm"][0], p["lr"], p["seed"], p["schedule"]) for p in plan.pending_points(study, chosen, df)}
    assert points == {
        ("s", 0.02, 2, 2.0),
        ("s", 0.04, 0, 2.0),  # its search trial stopped at 1x: rerun to 2x
        ("s", 0.04, 1, 2.0),
        ("s", 0.04, 2, 2.0),
        ("p", 0.02, 1, 2.0),
        ("p", 0.02, 2, 2.0),
    }
    # Written once: a replicate that beats everything later does not change the choice.
    later = _frame(rows + _rows("x", "scratch", 0.9, 1e-3, 2.0, {1.0: 0.95, 2.0: 0.99}))
    assert plan.load_or_choose(study, later, str(tmp_path)) == chosen
    assert "scratch-tiny-f1" in plan.describe(study, chosen, []) and "0 trial(s) to run" in plan.describe(
        study, chosen, []
    )
