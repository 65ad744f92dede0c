"""Seed replicates: the stats, Welch's interval and the verdicts on hand-made rows with known answers."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis import replicates
from tests.analysis_rows import frame as _frame
from tests.analysis_rows import rows_of as _rows

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


# Student's t, 95th percentile, 4 degrees of freedom (printed tables: 2.132).
T_95_DF4 = 2.1318467813362907


def test_welch_intervals_and_tost_have_the_known_answers(replicated):
    rows = replicates.replicate_rows(replicated, RECIPES)
    gaps = replicates.gap_intervals(rows, margin=0.05)
    gap = _at(gaps, "recipe = best", 3.0)
    # Equal n (3) and std (0.02): se = sqrt(2 * 0.02**2 / 3), Welch's df = 4.
    se = math.sqrt(2 * 0.02**2 / 3)
    assert gap["delta"] == pytest.approx(-0.01)
    assert (gap["low"], gap["high"]) == pytest.approx((-0.01 - T_975_DF4 * se, -0.01 + T_975_DF4 * se))
    assert (gap["low90"], gap["high90"]) == pytest.approx((-0.01 - T_95_DF4 * se, -0.01 + T_95_DF4 * se))
    # [-0.045, +0.025] lies inside ±0.05: equivalent, and the TOST p-value is below 5 %.
    assert gap["verdict"] == "equivalent" and gap["p_tost"] < 0.05
    assert replicates.verdict(gap).startswith(
        "recipe = best (lr, wd), 3x: scratch is equivalent to pretrained "
        "(TOST: the 90% interval lies inside the margin)"
    )
    # 1x and 2x: pretrained far ahead beyond the noise.
    assert _at(gaps, "recipe = best", 1.0)["verdict"] == "behind"
    assert _at(gaps, "recipe = best", 2.0)["verdict"] == "behind"
    assert replicates.headline(gaps) == [
        "tiny, data fraction 1, recipe = best (lr, wd): scratch is equivalent to pretrained (±0.05) from 3x on; "
        "pretrained has plateaued (+0.010 from 2x to 3x, within the margin)"
    ]
    # The same seeds against a margin of 0.02: the 90% interval reaches past -0.02, and the
    # 95% interval holds 0: inconclusive, never "matches", with a seed count that would do.
    tight = replicates.gap_intervals(rows, margin=0.02)
    gap = _at(tight, "recipe = best", 3.0)
    assert gap["verdict"] == "inconclusive"
    # n ~ 2 (z_.95 + z_.90)^2 sigma^2 / delta^2 with sigma = 0.02, delta = 0.02: 17.1 -> 18.
    assert gap["seeds_needed"] == 18
    assert "inconclusive: neither equivalent nor different; about 18 seeds per init" in replicates.verdict(gap)
    assert replicates.headline(tight) == [
        "tiny, data fraction 1, recipe = best (lr, wd): scratch is not equivalent to pretrained (±0.02) at the "
        "longest schedule: behind at 1x, behind at 2x, inconclusive at 3x; pretrained has plateaued "
        "(+0.010 from 2x to 3x, within the margin)"
    ]


def _two_inits(scratch, pretrained):
    """Seeds of the recipe at one schedule (1x), test-split values as given."""
    rows = _seeded("scratch", 0.3, {i: {1.0: v} for i, v in enumerate(scratch)})
    rows += _seeded("pretrained", 0.3, {i: {1.0: v} for i, v in enumerate(pretrained)})
    gaps = replicates.gap_intervals(replicates.replicate_rows(_frame(rows), RECIPES), margin=0.02)
    return gaps.iloc[0]


def test_the_four_verdicts_on_hand_made_replicates():
    # Five seeds each, a tiny spread, means 0.005 apart: equivalent (and not "behind").
    eq = _two_inits([0.500, 0.502, 0.498, 0.501, 0.499], [0.505, 0.507, 0.503, 0.506, 0.504])
    assert eq["verdict"] == "equivalent" and -0.02 < eq["low90"] < eq["high90"] < 0.02
    # The 95% interval excludes 0 here too: a small, significant gap inside the margin is
    # still equivalent, and the line says which init is ahead.
    assert eq["high"] < 0 and "small but significant gap (pretrained ahead)" in replicates.verdict(eq)
    behind = _two_inits([0.30, 0.31, 0.32], [0.50, 0.51, 0.52])
    assert behind["verdict"] == "behind" and behind["high"] < 0
    ahead = _two_inits([0.60, 0.61, 0.62], [0.50, 0.51, 0.52])
    assert ahead["verdict"] == "ahead" and ahead["low"] > 0
    # Few seeds, a wide interval that crosses 0: inconclusive, never a match.
    wide = _two_inits([0.10, 0.30], [0.15, 0.32])
    assert wide["low"] < 0 < wide["high"] and wide["verdict"] == "inconclusive"
    assert wide["seeds_needed"] > 2
    # Fewer seeds never give more "equivalent": one seed each has no interval at all.
    one = replicates.equivalence(np.array([0.500]), np.array([0.505]), 0.02)
    assert one[7] == "inconclusive" and math.isnan(one[1])


def test_pretrained_plateau_is_judged_over_seeds_paired_by_seed():
    """Each seed scores both long schedules on one trunk: the change is paired by seed."""
    # Changes +0.005, +0.010, +0.015 (sd 0.005): the 90% interval [-0.0, +0.02] lies in ±0.05.
    flat = {s: {1.0: 0.1, 2.0: 0.50 + 0.01 * s, 3.0: 0.505 + 0.015 * s} for s in range(3)}
    # Changes +0.08, +0.10, +0.12: still rising.
    rising = {s: {1.0: 0.1, 2.0: 0.40, 3.0: 0.48 + 0.02 * s} for s in range(3)}
    # Changes -0.04, +0.06, +0.00 with 3 seeds: too wide for either.
    unclear = {
        0: {1.0: 0.1, 2.0: 0.5, 3.0: 0.46},
        1: {1.0: 0.1, 2.0: 0.5, 3.0: 0.56},
        2: {1.0: 0.1, 2.0: 0.5, 3.0: 0.5},
    }
    scratch = {s: {1.0: 0.05, 2.0: 0.3, 3.0: 0.4} for s in range(3)}
    for finals, reading in ((flat, "plateaued"), (rising, "still rising"), (unclear, "inconclusive")):
        rows = replicates.replicate_rows(
            _frame(_seeded("scratch", 0.3, scratch) + _seeded("pretrained", 0.3, finals)), RECIPES
        )
        out = replicates.plateau_test(rows, "recipe = best", margin=0.05)
        assert (out["from"], out["to"], out["seeds"], out["reading"]) == (2.0, 3.0, 3, reading)
        line = replicates.headline(replicates.gap_intervals(rows, margin=0.05), rows)[0]
        assert line.endswith(f": {reading}") and "pretrained 2x -> 3x" in line


def test_a_gap_outside_the_margin_is_never_equivalent():
    # Means 0.05 apart with almost no spread: behind, however many seeds.
    gap = _two_inits([0.45, 0.4501, 0.4499, 0.45], [0.50, 0.5001, 0.4999, 0.50])
    assert gap["verdict"] == "behind"


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
    gaps = replicates.gap_intervals(rows, margin=0.02).set_index(["config", "schedule"])
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
    gaps = replicates.gap_intervals(replicates.replicate_rows(two, RECIPES), margin=0.02).set_index(
        ["config", "schedule"]
    )
    # Identical seeds: no spread, the interval is the point.
    assert gaps.loc[("recipe = best", 1.0), ["low", "high"]].tolist() == pytest.approx([-0.1, -0.1])
    assert gaps.loc[("recipe = best", 3.0), ["low", "high"]].tolist() == pytest.approx([0.0, 0.0])
    assert gaps.loc[("recipe = best", 1.0), "verdict"] == "behind"
    assert gaps.loc[("recipe = best", 3.0), "verdict"] == "equivalent"
    empty = replicates.gap_intervals(replicates.replicate_rows(_frame([]), RECIPES), margin=0.02)
    assert empty.empty


def test_the_report_leads_with_the_answer_and_states_the_verdict(tmp_path, replicated):
    import json

    from analysis.report import write_report
    from trainables import results

    for row in replicated.to_dict("records"):
        results.write_row(str(tmp_path), {k: v for k, v in row.items() if not pd.isna(v)})
    (tmp_path / "study.json").write_text(json.dumps({"preset": {"name": "t", "seed": 0, "equivalence_margin": 0.05}}))
    text = write_report(tmp_path).read_text()
    lead = text.split("## The answer")[1].split("## How to read it")[0]
    assert (
        "**tiny, data fraction 1, best (lr, wd): scratch is equivalent to pretrained (±0.05) from 3x on; "
        "pretrained 2x -> 3x: +0.010 over 3 seeds, 90% CI [+0.010, +0.010]: plateaued**" in lead
    )
    # Table 1's shape: inits as rows, schedules as columns, the verdict and the plateau below.
    assert "|  | 1× | 2× | 3× |" in lead
    assert "| scratch | 0.110 ± 0.010 (3) | 0.220 ± 0.020 (3) | 0.320 ± 0.020 (3) |" in lead
    assert "| verdict (margin ±0.05) | **behind** | **behind** | **equivalent** |" in lead
    assert (
        "| pretrained: change from the schedule before | – | -0.090 | +0.010 (**plateaued**: 90% CI "
        "[+0.010, +0.010] against ±0.05) |" in lead
    )
    section = text.split("## Seed replicates")[1]
    # Without the recipes (study.json has no arms) the replicated configuration is each arm's best.
    assert "| tiny | 1 | best | 3 | 0.320 ± 0.020 (3) | 0.330 ± 0.020 (3) | -0.010 |" in section
    assert "- best (lr, wd), 2x: scratch is behind pretrained (the 95% interval excludes 0)" in section
    assert "on the test split" in section
    assert (tmp_path / "report" / "scratch_vs_pretrained.csv").exists()


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


def test_equal_aps_choose_the_lower_loss_whatever_the_trial_ids():
    """Every smoke AP is 0: the best is the lower training loss (the rungs' tie-break), not
    whichever trial id sorts first; the Table 1 pick agrees."""
    import dataclasses

    from analysis.tables import best_by_schedule
    from study import replicates as plan
    from study.presets import SMOKE

    rows = _rows("b-recipe", "scratch", 0.02, 1e-4, 2.0, {1.0: 0.0, 2.0: 0.0})
    rows += _rows("a-other", "scratch", 0.04, 1e-5, 1.0, {1.0: 0.0})  # sorts first by id
    df = _frame(rows)
    df["loss"] = np.where(df["trial_id"] == "a-other", 2.9, 1.8)
    chosen = plan.choose_configs(dataclasses.replace(SMOKE, replicates=2), df)
    assert chosen["scratch-tiny-f1"]["configs"]["best"] == [0.02, 1e-4]
    table = best_by_schedule(df)
    assert table.set_index("schedule").loc[1.0, "trial_id"] == "b-recipe"
    df["loss"] = np.where(df["trial_id"] == "a-other", 1.0, 1.8)
    assert plan.choose_configs(dataclasses.replace(SMOKE, replicates=2), df)["scratch-tiny-f1"]["configs"]["best"] == [
        0.04,
        1e-5,
    ]
