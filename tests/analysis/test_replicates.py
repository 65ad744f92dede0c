"""Seed replicates: the stats, Welch's interval and the verdicts on hand-made rows with known answers."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import headline
from analysis.stats import replicates, verdict
from study.spec.resolved import resolve
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


def _rows_and_gaps(df, margin, recipes=RECIPES, chosen=None):
    configs = replicates.planned_configs(df, recipes, chosen)
    rows = replicates.replicate_rows(df, configs)
    return rows, replicates.gap_intervals(rows, margin)


def test_mean_and_std_per_init_and_schedule(replicated):
    rows, _ = _rows_and_gaps(replicated, 0.05)
    stats = replicates.seed_stats(rows).set_index(["init", "reading", "schedule"])
    # The recipe is the one configuration replicated: no best reading.
    assert set(stats.index.get_level_values("reading")) == {"recipe"}
    row = stats.loc[("scratch", "recipe", 3.0)]
    assert row["seeds"] == 3 and row["mean"] == pytest.approx(0.32) and row["std"] == pytest.approx(0.02)
    assert row["diverged"] == 0 and row["missing"] == 0
    # The value is the test split's, not the search split's (0.02 higher in these rows).
    finals = replicated[replicated["phase"] == "final"]
    assert sorted(rows["value"]) == pytest.approx(sorted(finals["test_bbox_AP"]))


# Student's t, 95th percentile, 4 degrees of freedom (printed tables: 2.132).
T_95_DF4 = 2.1318467813362907


def test_welch_intervals_and_the_non_inferiority_test_have_the_known_answers(replicated):
    _, gaps = _rows_and_gaps(replicated, 0.05)
    gap = _at(gaps, "recipe", 3.0)
    # Equal n (3) and std (0.02): se = sqrt(2 * 0.02**2 / 3), Welch's df = 4.
    se = math.sqrt(2 * 0.02**2 / 3)
    assert gap["delta"] == pytest.approx(-0.01)
    assert (gap["low95"], gap["high95"]) == pytest.approx((-0.01 - T_975_DF4 * se, -0.01 + T_975_DF4 * se))
    assert (gap["low90"], gap["high90"]) == pytest.approx((-0.01 - T_95_DF4 * se, -0.01 + T_95_DF4 * se))
    # The one-sided test of H0: Δ <= -0.05 is scipy's on the shifted seeds.
    shifted = stats.ttest_ind(np.array([0.30, 0.32, 0.34]) + 0.05, [0.31, 0.33, 0.35], alternative="greater")
    assert gap["p_no_worse"] == pytest.approx(shifted.pvalue)
    # [-0.045, +0.025] lies above -0.05: no worse; inside ±0.05 too: equivalent beside it.
    assert gap["verdict"] == "no worse" and gap["equivalent"] and gap["difference"] == ""
    assert headline.schedule_line(gap).startswith(
        "recipe, 3x: **scratch is no worse than pretrained** (equivalent, no significant difference): "
        "Δ = -0.010, 90% CI [-0.045, +0.025] against -0.05"
    )
    # 1x and 2x: pretrained far ahead, beyond the margin: worse, and behind.
    assert (_at(gaps, "recipe", 1.0)["verdict"], _at(gaps, "recipe", 1.0)["difference"]) == ("worse", "behind")
    assert _at(gaps, "recipe", 2.0)["verdict"] == "worse"
    # The same seeds against a margin of 0.02: the 90% interval straddles -0.02: inconclusive,
    # with the seeds that would settle it, for a true gap of 0 and for the observed -0.01.
    _, tight = _rows_and_gaps(replicated, 0.02)
    gap = _at(tight, "recipe", 3.0)
    assert gap["verdict"] == "inconclusive"
    # Normal approximation n = 2 (z_.95 + z_.80)^2 σ^2 / (Δ* + δ)^2: 12.4 at Δ* = 0, 49.5 at
    # Δ* = -0.01; Student's t quantiles add a seed or two.
    z = stats.norm.ppf(0.95) + stats.norm.ppf(0.8)
    for column, distance in (("seeds_if_zero", 0.02), ("seeds_if_observed", 0.01)):
        normal = 2 * z**2 * 0.02**2 / distance**2
        assert normal < gap[column] <= math.ceil(normal) + 2, column
    line = headline.schedule_line(gap)
    assert f"about {gap['seeds_if_zero']:.0f} seeds per init would show it" in line
    assert f"about {gap['seeds_if_observed']:.0f} at the observed gap (-0.010)" in line


def _two_inits(scratch, pretrained, margin=0.02):
    """Seeds of the recipe at one schedule (1x), test-split values as given."""
    rows = _seeded("scratch", 0.3, {i: {1.0: v} for i, v in enumerate(scratch)})
    rows += _seeded("pretrained", 0.3, {i: {1.0: v} for i, v in enumerate(pretrained)})
    return _rows_and_gaps(_frame(rows), margin)[1].iloc[0]


def test_the_verdicts_on_hand_made_replicates():
    # Scratch a little ahead, three seeds each: the 90% interval [-0.000, +0.047] lies above
    # -0.02, so scratch is shown no worse (one-sided p = 0.010), though not equivalent.
    hand = _two_inits([0.52, 0.55, 0.53], [0.51, 0.50, 0.52])
    assert hand["verdict"] == "no worse" and not hand["equivalent"] and hand["difference"] == ""
    assert hand["low90"] == pytest.approx(-0.0002, abs=1e-4) and hand["high90"] == pytest.approx(0.047, abs=1e-3)
    assert hand["p_no_worse"] == pytest.approx(0.010, abs=1e-3)
    # Few seeds, a wide interval crossing -δ: inconclusive, never a match.
    wide = _two_inits([0.10, 0.30], [0.15, 0.32])
    assert wide["low90"] < -0.02 < wide["high90"] and wide["verdict"] == "inconclusive"
    assert wide["seeds_if_zero"] > 2
    # Scratch below the margin beyond doubt: worse, and behind; more seeds cannot show it no worse.
    worse = _two_inits([0.30, 0.31, 0.32], [0.50, 0.51, 0.52])
    assert (worse["verdict"], worse["difference"]) == ("worse", "behind") and worse["high90"] < -0.02
    assert math.isinf(worse["seeds_if_observed"])
    # Scratch ahead by more than the margin: no worse, and ahead; not equivalent.
    ahead = _two_inits([0.60, 0.61, 0.62], [0.50, 0.51, 0.52])
    assert (ahead["verdict"], ahead["difference"], ahead["equivalent"]) == ("no worse", "ahead", False)
    # A small, significant gap inside the margin: no worse, equivalent, and pretrained ahead.
    eq = _two_inits([0.500, 0.502, 0.498, 0.501, 0.499], [0.505, 0.507, 0.503, 0.506, 0.504])
    assert (eq["verdict"], eq["equivalent"], eq["difference"]) == ("no worse", True, "behind")
    assert "(equivalent, scratch behind)" in headline.schedule_line(eq)
    # An observed gap past -δ with a wide interval: inconclusive, and no number of seeds could.
    past = _two_inits([0.40, 0.50, 0.60], [0.45, 0.55, 0.65])
    assert past["verdict"] == "inconclusive" and math.isinf(past["seeds_if_observed"])
    assert "at the observed gap (-0.050, beyond -0.02) no number of seeds could" in headline.schedule_line(past)
    # Identical seeds in both inits: no spread measured, no verdict (a zero-width interval).
    flat = _two_inits([0.5, 0.5], [0.49, 0.49])
    assert flat["verdict"] == "no spread measured" and math.isnan(flat["low90"])
    assert "no verdict, no spread measured" in headline.schedule_line(flat)
    # One seed each: no interval at all.
    one = verdict.compare(np.array([0.500]), np.array([0.505]), 0.02)
    assert one.reading == "too few seeds" and math.isnan(one.low90)


def test_a_diverged_seed_enters_at_ap_0_and_a_missing_one_is_counted():
    """A seed that diverged is a failure of the recipe, counted at AP 0 at its schedule and
    every longer one its trunk would have scored; a seed without a result is counted apart."""
    scratch = {0: {1.0: 0.30, 2.0: 0.40, 3.0: 0.50}, 1: {1.0: 0.31, 2.0: 0.41, 3.0: 0.51}}
    rows = _seeded("scratch", 0.3, scratch)
    rows += _rows("s-div", "scratch", 0.3, 1e-4, 3.0, {1.0: 0.32, 2.0: 0.0}, seed=2, status="diverged")
    pretrained = {s: {1.0: 0.40, 2.0: 0.45, 3.0: 0.50 + 0.01 * s} for s in range(3)}
    rows += _seeded("pretrained", 0.3, pretrained)
    # A fourth pretrained seed whose trial failed after 1x: no 2x or 3x result.
    rows += _rows("p-failed", "pretrained", 0.3, 1e-4, 3.0, {1.0: 0.41}, seed=3, status="completed")
    df = _frame(rows)
    df.loc[(df["trial_id"] == "p-failed"), "status"] = "failed"
    df.loc[(df["trial_id"] == "p-failed") & (df["phase"] == "final"), "status"] = "completed"
    _, gaps = _rows_and_gaps(df, 0.02)
    at3 = _at(gaps, "recipe", 3.0)
    assert (at3["scratch_seeds"], at3["scratch_diverged"]) == (3, 1)
    assert at3["scratch_mean"] == pytest.approx((0.50 + 0.51 + 0.0) / 3)
    assert (at3["pretrained_seeds"], at3["pretrained_missing"]) == (3, 1)
    line = headline.schedule_line(at3)
    assert "1 of 3 scratch seeds diverged and entered at AP 0" in line
    assert "1 pretrained seed(s) without a result (failed or still running), left out" in line
    assert _at(gaps, "recipe", 2.0)["scratch_diverged"] == 1 and _at(gaps, "recipe", 1.0)["scratch_diverged"] == 0
    table = headline.summary_table(gaps).set_index("schedule")
    assert table.loc[3.0, "scratch"] == f"0.337 ± {np.std([0.50, 0.51, 0.0], ddof=1):.3f} (3, 1 diverged)"


def test_each_inits_plateau_stands_beside_the_verdict():
    """Behind with scratch still rising is a budget statement; both plateaued is an answer."""
    scratch_rising = {s: {1.0: 0.1, 2.0: 0.30, 3.0: 0.38 + 0.01 * s} for s in range(3)}
    scratch_flat = {s: {1.0: 0.1, 2.0: 0.30 + 0.01 * s, 3.0: 0.305 + 0.012 * s} for s in range(3)}
    pretrained = {s: {1.0: 0.4, 2.0: 0.50 + 0.01 * s, 3.0: 0.505 + 0.012 * s} for s in range(3)}
    rising_note = "at this budget: scratch is still rising, +0.154 per doubling of the schedule"  # +0.090 / log2(3/2)
    for scratch, note in ((scratch_rising, rising_note), (scratch_flat, "both inits")):
        df = _frame(_seeded("scratch", 0.3, scratch) + _seeded("pretrained", 0.3, pretrained))
        rows, gaps = _rows_and_gaps(df, 0.02)
        changes = headline.plateaus(rows, "tiny", 1.0, "recipe", 0.02)
        assert changes["pretrained"].reading == "plateaued" and changes["pretrained"].seeds == 3
        assert changes["scratch"].reading == ("still rising" if scratch is scratch_rising else "plateaued")
        [line] = headline.headline(gaps, rows)
        assert line.startswith(
            "Primary: recipe against recipe (the paper's design). tiny, data fraction 1: at 3x, the longest "
            "schedule, scratch is worse than pretrained (margin 0.02)"
        )
        assert note in line and "pretrained 2x -> 3x: +0.007, 90% CI" in line and "scratch 2x -> 3x:" in line
        assert "conditional on this test set" in line


def test_the_best_reading_uses_fresh_seeds_only():
    """The search trial that won the choice (the study's seed 0) keeps part of its luck; the
    best reading takes the replicate phase's seeds 1-2 only, the recipe reading every seed."""
    rows = _seeded("scratch", 0.3, {s: {1.0: 0.30 + 0.01 * s} for s in range(3)})
    rows += _seeded("scratch", 0.5, {0: {1.0: 0.60}, 1: {1.0: 0.40}, 2: {1.0: 0.42}})  # seed 0 won the choice
    rows += _seeded("pretrained", 0.3, {s: {1.0: 0.40 + 0.01 * s} for s in range(3)})
    chosen = {
        "scratch-tiny-f1": {"configs": {"recipe": [0.3, 1e-4], "best": [0.5, 1e-4]}},
        "pretrained-tiny-f1": {"configs": {"recipe": [0.3, 1e-4], "best": [0.3, 1e-4]}},
    }
    rows, gaps = _rows_and_gaps(_frame(rows), 0.02, chosen=chosen)
    best = rows[(rows["reading"] == "best") & (rows["init"] == "scratch")]
    assert sorted(best["seed"]) == [1, 2] and best["value"].mean() == pytest.approx(0.41)
    # The pretrained best is its recipe: seeds 1-2 of it in the best reading, 0-2 in the recipe's.
    assert sorted(rows[(rows["reading"] == "best") & (rows["init"] == "pretrained")]["seed"]) == [1, 2]
    assert sorted(rows[(rows["reading"] == "recipe") & (rows["init"] == "pretrained")]["seed"]) == [0, 1, 2]
    assert list(gaps["reading"].unique()) == ["recipe", "best"]
    lines = headline.headline(gaps, rows)
    assert [ln.split(".")[0] for ln in lines] == [
        "Primary: recipe against recipe (the paper's design)",
        "Secondary: best of the search against best, on fresh seeds",
    ]


def _at(gaps, reading, schedule):
    return gaps[(gaps["reading"] == reading) & (gaps["schedule"] == schedule)].iloc[0]


def test_a_best_configuration_is_inferred_without_replicates_json(replicated):
    """A study from before replicates.json: the best is the replicated non-recipe configuration."""
    extra = _frame(
        _seeded("scratch", 0.5, {s: {1.0: 0.2, 2.0: 0.3, 3.0: 0.40 + 0.01 * s} for s in range(3)})
        + _rows("scratch-once", "scratch", 0.9, 1e-4, 3.0, {1.0: 0.5, 2.0: 0.6, 3.0: 0.7})  # one seed: not replicated
    )
    df = pd.concat([replicated, extra], ignore_index=True)
    assert replicates.planned_configs(df, RECIPES)["scratch-tiny-f1"] == {"recipe": RECIPE, "best": (0.5, 1e-4)}
    rows, gaps = _rows_and_gaps(df, 0.02)
    # Scratch's best has fresh seeds 1-2; pretrained has no best: only the recipe pair is judged.
    assert sorted(rows.loc[rows["reading"] == "best", "seed"]) == [1, 1, 1, 2, 2, 2]
    assert set(gaps["reading"]) == {"recipe"}
    assert _at(gaps, "recipe", 3.0)["delta"] == pytest.approx(-0.01)


def test_the_report_leads_with_the_answer_and_states_the_verdict(tmp_path, replicated):
    import json

    from analysis.report import write_report
    from trainables.contract import row_store

    for row in replicated.to_dict("records"):
        row_store.write_row(str(tmp_path), {k: v for k, v in row.items() if not pd.isna(v)})
    arms = {a: {"lr": v[0], "weight_decay": v[1], "init": a.split("-")[0]} for a, v in RECIPES.items()}
    margins = [{"model": "tiny", "data_fraction": 1.0, "ap": 0.05, "reason": "a test's"}]
    (tmp_path / "study.json").write_text(
        json.dumps({"preset": {"name": "t", "seed": 0}, "arms": arms, "margins": margins})
    )
    text = write_report(tmp_path).read_text()
    lead = text.split("## The answer")[1].split("## How to read it")[0]
    # One primary headline, phrased by the paper's claim, each init's plateau beside it.
    assert lead.count("Primary:") == 1 and "Secondary:" not in lead
    assert (
        "**Primary: recipe against recipe (the paper's design). tiny, data fraction 1: at 3x, the longest schedule, "
        "scratch is no worse than pretrained (margin 0.05). Per schedule: worse at 1x, worse at 2x, no worse at 3x. "
        "Plateaus (paired by seed, against ±0.05): pretrained 2x -> 3x: +0.010 over 3 seeds, every seed alike: no "
        "spread measured; scratch 2x -> 3x: +0.100 over 3 seeds, every seed alike: no spread measured." in lead
    )
    # Table 1's shape, recipe against recipe: inits as rows, schedules as columns, the verdict
    # and each init's change below.
    assert "tiny, data fraction 1: each init's recipe, bbox_AP on the test split, mean ± std over seeds:" in lead
    assert "|  | 1× | 2× | 3× |" in lead
    assert "| scratch | 0.110 ± 0.010 (3) | 0.220 ± 0.020 (3) | 0.320 ± 0.020 (3) |" in lead
    assert (
        "| verdict (margin 0.05) | **worse** (scratch behind) | **worse** (scratch behind) | "
        "**no worse** (equivalent) |" in lead
    )
    assert "| pretrained: change from the schedule before | – | -0.090 | +0.010 (no spread measured) |" in lead
    # The best of the search follows with N in every cell (here the search's one trial per init).
    assert "| scratch | 0.100 (N=1) | 0.200 (N=1) | 0.300 (N=1) |" in lead.split("### Best of the search")[1]
    assert "## Regime: target data against what pretraining saw" in text
    assert "tiny, data fraction 1: 0.05 AP — a test's" in text
    section = text.split("## Seed replicates")[1]
    assert "| tiny | 1 | recipe | 3 | 0.320 ± 0.020 (3) | 0.330 ± 0.020 (3) | -0.010 |" in section
    assert "- recipe, 2x: **scratch is worse than pretrained** (not shown equivalent, scratch behind)" in section
    assert "on the test split" in section
    assert (tmp_path / "report" / "scratch_vs_pretrained.csv").exists()


def test_the_replicate_plan_reruns_recipe_and_best_to_the_longest_schedule(tmp_path):
    """smoke: schedules 1x-2x, the recipe lr 0.02 at 2x. The plan runs what is missing: the
    recipe under seeds 0-2 (its search trial counts), the best under fresh seeds 1-3 (never
    the seed whose trial won the choice), every trunk to 2x, none twice."""
    import dataclasses

    from study.hpo import replicate_phase as plan
    from study.spec.presets import SMOKE

    study = dataclasses.replace(SMOKE, replicates=3)
    rows = _rows("r", "scratch", 0.02, 1e-4, 2.0, {1.0: 0.10, 2.0: 0.20})  # the recipe's search trial
    rows += _rows("o", "scratch", 0.04, 1e-5, 1.0, {1.0: 0.30})  # best on the search split, trunk 1x only
    rows += _rows("p", "pretrained", 0.02, 1e-4, 2.0, {1.0: 0.40, 2.0: 0.50})  # its search's only configuration
    rows += _rows("r1", "scratch", 0.02, 1e-4, 2.0, {1.0: 0.1, 2.0: 0.9}, seed=1)  # a replicate, done
    df = _frame(rows)
    chosen = plan.load_or_choose(resolve(study), df, str(tmp_path))
    assert chosen["scratch-tiny-f1"] == {"trunk": 2.0, "configs": {"recipe": [0.02, 1e-4], "best": [0.04, 1e-5]}}
    # One configuration searched: nothing was chosen, so there is no best to replicate.
    assert chosen["pretrained-tiny-f1"]["configs"]["best"] is None
    points = {(p["arm"][0], p["lr"], p["seed"], p["schedule"]) for p in plan.pending_points(study, chosen, df)}
    assert points == {
        ("s", 0.02, 2, 2.0),
        ("s", 0.04, 1, 2.0),
        ("s", 0.04, 2, 2.0),
        ("s", 0.04, 3, 2.0),
        ("p", 0.02, 1, 2.0),
        ("p", 0.02, 2, 2.0),
    }
    assert plan.all_seeds(study) == [0, 1, 2, 3]
    # Written once: a replicate that beats everything later does not change the choice.
    later = _frame(rows + _rows("x", "scratch", 0.9, 1e-3, 2.0, {1.0: 0.95, 2.0: 0.99}))
    assert plan.load_or_choose(resolve(study), later, str(tmp_path)) == chosen
    text = plan.describe(study, chosen, [])
    assert "scratch-tiny-f1" in text and "0 trial(s) to run" in text and "fresh seeds 1-3" in text


def test_a_best_that_is_the_recipe_reads_the_recipes_fresh_seeds():
    """The search chose the recipe: its seeds 0-2 serve the recipe reading and seeds 1-2 the
    best, so the trial that won the choice (seed 0) is in the recipe reading only, and no
    trial is added for the best."""
    import dataclasses

    from study.hpo import replicate_phase as plan
    from study.spec.presets import SMOKE

    study = dataclasses.replace(SMOKE, replicates=3)
    rows = _rows("r", "scratch", 0.02, 1e-4, 2.0, {1.0: 0.30, 2.0: 0.40})
    rows += _rows("o", "scratch", 0.04, 1e-5, 2.0, {1.0: 0.10, 2.0: 0.20})
    chosen = plan.choose_configs(resolve(study), _frame(rows))
    assert chosen["scratch-tiny-f1"]["configs"] == {"recipe": [0.02, 1e-4], "best": [0.02, 1e-4]}
    points = plan.pending_points(study, {"scratch-tiny-f1": chosen["scratch-tiny-f1"]}, _frame(rows))
    assert sorted(p["seed"] for p in points) == [1, 2]
    for seed in (1, 2):
        rows += _rows(f"r{seed}", "scratch", 0.02, 1e-4, 2.0, {1.0: 0.3 + seed / 100, 2.0: 0.4}, seed=seed)
    read = replicates.replicate_rows(_frame(rows), replicates.planned_configs(_frame(rows), {}, chosen))
    assert sorted(read.loc[read["reading"] == "best", "seed"].unique()) == [1, 2]
    assert sorted(read.loc[read["reading"] == "recipe", "seed"].unique()) == [0, 1, 2]


def test_equal_aps_choose_the_lower_loss_whatever_the_trial_ids():
    """Every smoke AP is 0: the best is the lower training loss (the rungs' tie-break), not
    whichever trial id sorts first; the Table 1 pick agrees."""
    import dataclasses

    from analysis.tables import best_by_schedule
    from study.hpo import replicate_phase as plan
    from study.spec.presets import SMOKE

    rows = _rows("b-recipe", "scratch", 0.02, 1e-4, 2.0, {1.0: 0.0, 2.0: 0.0})
    rows += _rows("a-other", "scratch", 0.04, 1e-5, 1.0, {1.0: 0.0})  # sorts first by id
    df = _frame(rows)
    df["loss"] = np.where(df["trial_id"] == "a-other", 2.9, 1.8)
    chosen = plan.choose_configs(resolve(dataclasses.replace(SMOKE, replicates=2)), df)
    assert chosen["scratch-tiny-f1"]["configs"]["best"] == [0.02, 1e-4]
    table = best_by_schedule(df)
    assert table.set_index("schedule").loc[1.0, "trial_id"] == "b-recipe"
    df["loss"] = np.where(df["trial_id"] == "a-other", 1.0, 1.8)
    assert plan.choose_configs(resolve(dataclasses.replace(SMOKE, replicates=2)), df)["scratch-tiny-f1"]["configs"][
        "best"
    ] == [
        0.04,
        1e-5,
    ]
