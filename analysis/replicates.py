"""Seed replicates: mean ± std per (init, schedule), the gap's intervals, an equivalence verdict.

The study's replicate phase (``--replicates K``) reruns each arm's recipe and its best
(lr, weight decay) under further seeds (all of an init's randomness: model init, data order
and, for the generated pretraining, the pretraining itself; the data subset stays the same),
with the trunk to the arm's longest schedule. Their final results are the seed
noise the paper's gaps (0.1-0.4 AP, Table 1) have to be judged against. The value used is
the test split's where the study has one (no decision saw it), else the search split's.

A configuration counts as replicated once two or more seeds scored it at a schedule. In an
arm, the replicated configuration that is not the recipe is its "best"; if the recipe is the
only one, it was also the best ("recipe = best": the replicate phase had one configuration
to rerun).

"Scratch matches pretrained" is an equivalence claim, so a gap that is merely not
significant is never read as one: each schedule is equivalent (two one-sided tests against
the preset's margin), behind, ahead, or inconclusive (more seeds needed).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from analysis.tables import completed

RECIPE, BEST, BOTH = "recipe", "best", "recipe = best"
GROUP = ["model", "data_fraction", "init", "config", "schedule"]


def value_column(df: pd.DataFrame, objective: str = "bbox_AP") -> str:
    """The test split's column of ``objective`` where any final row has it, else the search split's."""
    test = f"test_{objective}"
    return test if test in df and df[test].notna().any() else objective


def replicate_rows(
    df: pd.DataFrame, recipes: dict[str, tuple[float, float]], objective: str = "bbox_AP"
) -> pd.DataFrame:
    """Completed final results of configurations scored under two or more seeds.

    One row per (arm, lr, weight decay, seed, schedule), the last written if a seed ran the
    same schedule twice (a search trial and its replicate to a longer trunk score the same
    shorter schedules alike). ``config`` is "recipe", "best" or, for one configuration that
    is both, "recipe = best". Columns: model, data_fraction, init, arm, config, lr, weight_decay,
    schedule, seed, value.
    """
    cols = ["model", "data_fraction", "init", "arm", "config", "lr", "weight_decay", "schedule", "seed", "value"]
    done = completed(df)
    if done.empty:
        return pd.DataFrame(columns=cols)
    column = value_column(done, objective)
    done = done.sort_values("written_at").drop_duplicates(
        ["arm", "lr", "weight_decay", "seed", "schedule"], keep="last"
    )
    out = []
    for arm, group in done.groupby("arm", sort=True):
        seeds = group.groupby(["lr", "weight_decay", "schedule"])["seed"].nunique()
        replicated = sorted({(lr, wd) for (lr, wd, _), n in seeds.items() if n >= 2})
        recipe = recipes.get(arm)
        is_recipe = {c: recipe is not None and bool(np.isclose(c, recipe).all()) for c in replicated}
        others = [c for c in replicated if not is_recipe[c]]
        labels = {c: RECIPE for c in replicated if is_recipe[c]}
        if others:
            # The arm's best: the one non-recipe configuration the replicate phase reran (the
            # best on the search split, should there be more than one).
            labels[max(others, key=lambda c: group.loc[_match(group, c), objective].max())] = BEST
        elif labels:
            labels = dict.fromkeys(labels, BOTH)
        for (lr, wd), kind in labels.items():
            rows = group[_match(group, (lr, wd))]
            out.append(rows.assign(config=kind, value=rows[column])[cols])
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=cols)


def _match(group: pd.DataFrame, config: tuple[float, float]) -> pd.Series:
    return np.isclose(group["lr"], config[0]) & np.isclose(group["weight_decay"], config[1])


def seed_stats(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std (n - 1) over seeds per (model, data fraction, init, config, schedule)."""
    cols = [*GROUP, "lr", "weight_decay", "seeds", "mean", "std"]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    stats = rows.groupby(GROUP, sort=True).agg(
        lr=("lr", "first"),
        weight_decay=("weight_decay", "first"),
        seeds=("seed", "nunique"),
        mean=("value", "mean"),
        std=("value", "std"),
    )
    return stats.reset_index()[cols]


# The verdict's levels: two one-sided tests at 5 % each (equivalence: the 90 % interval inside
# ±margin) and the ordinary two-sided 95 % interval for a difference (Schuirmann 1987; Lakens
# 2017, "Equivalence tests", Social Psychological and Personality Science 8:355).
ALPHA = 0.05
# Power the seed estimate for an inconclusive schedule aims at.
POWER = 0.8
EQUIVALENT, BEHIND, AHEAD, INCONCLUSIVE = "equivalent", "behind", "ahead", "inconclusive"


def gap_intervals(rows: pd.DataFrame, margin: float) -> pd.DataFrame:
    """Δ = scratch − pretrained per (model, data fraction, config, schedule), its intervals and
    its three-way reading against the equivalence margin ``margin`` (in AP units).

    Welch's unequal-variance t (seeds are independent draws in each init; the spreads need
    not be equal): ``low``/``high`` is the 95 % interval, ``low90``/``high90`` the 90 % one
    that the two one-sided tests at 5 % amount to; ``p_tost`` is the larger of their two
    p-values. ``verdict`` is exactly one of "equivalent" (the 90 % interval inside ±margin),
    "behind"/"ahead" (the 95 % interval excludes 0 and the gap is not equivalent) or
    "inconclusive" (neither, or fewer than two seeds in an init); ``seeds_needed`` is, for an
    inconclusive schedule, about how many seeds per init TOST needs for 80 % power if the
    true gap were 0 (normal approximation, pooled seed std).

    "best" pairs each init's best, "recipe" each init's recipe; an init whose recipe was its
    best ("recipe = best") takes part in both, and where both inits are so the gap is given
    once, as "recipe = best". Also each side's seeds, mean and std.
    """
    sides = [f"{init}_{s}" for init in ("scratch", "pretrained") for s in ("seeds", "mean", "std")]
    cols = [
        "model",
        "data_fraction",
        "config",
        "schedule",
        *sides,
        "delta",
        "low",
        "high",
        "low90",
        "high90",
        "p_tost",
        "margin",
        "verdict",
        "seeds_needed",
    ]
    out = []
    for (model, fraction), group in rows.groupby(["model", "data_fraction"], sort=True):
        kinds = [BOTH] if set(group["config"]) == {BOTH} else [BEST, RECIPE]
        for kind in kinds:
            mine = group[group["config"].isin([kind, BOTH])]
            for schedule, at in mine.groupby("schedule", sort=True):
                scratch = at.loc[at["init"] == "scratch", "value"].to_numpy(float)
                pretrained = at.loc[at["init"] == "pretrained", "value"].to_numpy(float)
                if not len(scratch) or not len(pretrained):
                    continue
                spread = [
                    v
                    for x in (scratch, pretrained)
                    for v in (len(x), x.mean(), x.std(ddof=1) if len(x) > 1 else math.nan)
                ]
                out.append((model, fraction, kind, schedule, *spread, *equivalence(scratch, pretrained, margin)))
    return pd.DataFrame(out, columns=cols)


def equivalence(scratch: np.ndarray, pretrained: np.ndarray, margin: float) -> tuple:
    """(delta, low95, high95, low90, high90, p_tost, margin, verdict, seeds_needed) for one
    schedule's seeds of each init."""
    from scipy import stats  # only the report needs it

    delta = float(scratch.mean() - pretrained.mean())
    if len(scratch) < 2 or len(pretrained) < 2:
        return delta, *(math.nan,) * 5, margin, INCONCLUSIVE, math.nan
    if scratch.std() == 0 and pretrained.std() == 0:
        # No spread at all: every interval is the point, and the tests are decided by it.
        low = high = low90 = high90 = delta
        p_tost = 0.0 if abs(delta) < margin else 1.0
    else:
        with warnings.catch_warnings():
            # Seeds that agree to the last digit on one side are fine for Welch (that side
            # adds no variance); scipy warns about it all the same.
            warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
            test = stats.ttest_ind(scratch, pretrained, equal_var=False)
            ci95 = test.confidence_interval(1 - ALPHA)
            ci90 = test.confidence_interval(1 - 2 * ALPHA)
            lower = stats.ttest_ind(scratch + margin, pretrained, equal_var=False, alternative="greater")
            upper = stats.ttest_ind(scratch - margin, pretrained, equal_var=False, alternative="less")
        low, high, low90, high90 = (float(v) for v in (ci95.low, ci95.high, ci90.low, ci90.high))
        p_tost = float(max(lower.pvalue, upper.pvalue))
    verdict = classify(low, high, low90, high90, margin)
    needed = math.nan
    if verdict == INCONCLUSIVE:
        sigma2 = (scratch.var(ddof=1) + pretrained.var(ddof=1)) / 2
        z = stats.norm.ppf(1 - ALPHA) + stats.norm.ppf(1 - (1 - POWER) / 2)
        needed = float(max(math.ceil(2 * z**2 * sigma2 / margin**2), len(scratch) + 1, len(pretrained) + 1))
    return delta, low, high, low90, high90, p_tost, margin, verdict, needed


def classify(low: float, high: float, low90: float, high90: float, margin: float) -> str:
    """The three-way reading of one gap: equivalent, behind/ahead, or inconclusive."""
    if any(math.isnan(v) for v in (low, high, low90, high90)):
        return INCONCLUSIVE
    if -margin < low90 and high90 < margin:
        return EQUIVALENT
    if high < 0:
        return BEHIND
    if low > 0:
        return AHEAD
    return INCONCLUSIVE


def verdict(gap: pd.Series) -> str:
    """One line on one schedule's gap: its reading, the numbers behind it."""
    where = f"{gap['config']} (lr, wd), {gap['schedule']:g}x"
    seeds = f"{gap['scratch_seeds']} vs {gap['pretrained_seeds']} seeds"
    if math.isnan(gap["low"]):
        return f"{where}: inconclusive, too few seeds for an interval ({seeds}; at least 2 per init)"
    numbers = (
        f"Δ = {gap['delta']:+.3f}, 95% CI [{gap['low']:+.3f}, {gap['high']:+.3f}], "
        f"90% CI [{gap['low90']:+.3f}, {gap['high90']:+.3f}] against ±{gap['margin']:g}; {seeds}"
    )
    what = {
        EQUIVALENT: "scratch is equivalent to pretrained (TOST: the 90% interval lies inside the margin)",
        BEHIND: "scratch is behind pretrained (the 95% interval excludes 0)",
        AHEAD: "scratch is ahead of pretrained (the 95% interval excludes 0)",
        INCONCLUSIVE: f"inconclusive: neither equivalent nor different; about {gap['seeds_needed']:.0f} seeds per "
        "init would settle equivalence if the true gap were 0",
    }[gap["verdict"]]
    if gap["verdict"] == EQUIVALENT and not gap["low"] <= 0 <= gap["high"]:
        what += f", with a small but significant gap ({'scratch' if gap['delta'] > 0 else 'pretrained'} ahead)"
    return f"{where}: {what} ({numbers})"


def plateau(means: pd.Series, margin: float) -> tuple[float, float, float, bool] | None:
    """Pretrained's change between its two longest schedules, from one value per schedule:
    (from, to, change, within the margin); ``means`` is AP by schedule. None with fewer
    than two schedules. A point estimate: use :func:`plateau_test` where seeds exist."""
    means = means.dropna().sort_index()
    if len(means) < 2:
        return None
    (s0, a0), (s1, a1) = means.iloc[-2:].items()
    change = float(a1 - a0)
    return float(s0), float(s1), change, abs(change) <= margin


def plateau_test(rows: pd.DataFrame, config: str, margin: float) -> dict | None:
    """Whether pretrained has levelled off between its two longest schedules, over seeds.

    Each seed scores both schedules on one trunk, so the change is paired by seed: its 90 %
    interval (one-sample t over the per-seed changes) inside ±margin reads "plateaued"
    (equivalence, as for the gap), its 95 % interval above 0 "still rising", below 0
    "falling", else "inconclusive". ``rows`` are replicate_rows' rows of one (model, data
    fraction); ``config`` the gap's configuration ("best", "recipe" or "recipe = best").
    """
    from scipy import stats

    mine = rows[(rows["init"] == "pretrained") & rows["config"].isin([config, BOTH])]
    schedules = sorted(mine["schedule"].unique())
    if len(schedules) < 2:
        return None
    s0, s1 = schedules[-2:]
    wide = mine[mine["schedule"].isin([s0, s1])].pivot_table(index="seed", columns="schedule", values="value")
    change = (wide[s1] - wide[s0]).dropna().to_numpy(float)
    out = {"from": float(s0), "to": float(s1), "change": float(change.mean()) if len(change) else math.nan}
    out["seeds"] = len(change)
    if len(change) < 2:
        out["reading"] = INCONCLUSIVE
        return out
    if change.std() == 0:
        low = high = low90 = high90 = float(change.mean())
    else:
        test = stats.ttest_1samp(change, 0.0)
        ci95, ci90 = test.confidence_interval(1 - ALPHA), test.confidence_interval(1 - 2 * ALPHA)
        low, high, low90, high90 = (float(v) for v in (ci95.low, ci95.high, ci90.low, ci90.high))
    reading = classify(low, high, low90, high90, margin)
    out["reading"] = {EQUIVALENT: "plateaued", BEHIND: "falling", AHEAD: "still rising"}.get(reading, reading)
    out["low90"], out["high90"] = low90, high90
    return out


def headline(gaps: pd.DataFrame, rows: pd.DataFrame | None = None) -> list[str]:
    """Per (model, data fraction, config): from which schedule on scratch is equivalent to
    pretrained (every longer schedule equivalent too), or what it is at each schedule; and
    whether pretrained has levelled off between its two longest schedules (paired by seed
    with ``rows``, replicate_rows' output; else from the means, a point estimate)."""
    lines = []
    for (model, fraction, config), group in gaps.groupby(["model", "data_fraction", "config"], sort=True):
        group = group.sort_values("schedule")
        where = f"{model}, data fraction {fraction:g}, {config} (lr, wd)"
        equivalent = (group["verdict"] == EQUIVALENT).to_numpy()
        margin = float(group["margin"].iloc[0])
        if equivalent[-1]:
            first = len(equivalent) - int(np.argmin(equivalent[::-1])) if not equivalent.all() else 0
            what = f"scratch is equivalent to pretrained (±{margin:g}) from {group['schedule'].iloc[first]:g}x on"
        else:
            readings = ", ".join(f"{v} at {s:g}x" for s, v in zip(group["schedule"], group["verdict"]))
            what = f"scratch is not equivalent to pretrained (±{margin:g}) at the longest schedule: {readings}"
        paired = None
        if rows is not None:
            mine = rows[(rows["model"] == model) & (rows["data_fraction"] == fraction)]
            paired = plateau_test(mine, config, margin)
        if paired is not None and paired["seeds"] >= 2:
            what += (
                f"; pretrained {paired['from']:g}x -> {paired['to']:g}x: {paired['change']:+.3f} over "
                f"{paired['seeds']} seeds, 90% CI [{paired['low90']:+.3f}, {paired['high90']:+.3f}]: "
                f"{paired['reading']}"
            )
        else:
            flat = plateau(group.set_index("schedule")["pretrained_mean"], margin)
            if flat is None:
                what += "; pretrained's plateau cannot be judged from one schedule"
            else:
                s0, s1, change, within = flat
                what += (
                    f"; pretrained {'has plateaued' if within else 'is still changing'} "
                    f"({change:+.3f} from {s0:g}x to {s1:g}x, {'within' if within else 'beyond'} the margin)"
                )
        lines.append(f"{where}: {what}")
    return lines


def summary_table(gaps: pd.DataFrame) -> pd.DataFrame:
    """One line per (model, data fraction, config, schedule): each init's mean ± std (seeds),
    the gap, its intervals and its reading, for the report."""
    cols = [
        "model",
        "data_fraction",
        "config",
        "schedule",
        "scratch",
        "pretrained",
        "delta_AP",
        "95% CI of delta",
        "90% CI of delta",
        "margin",
        "verdict",
        "seeds needed",
    ]
    out = []
    for g in gaps.itertuples():
        ci95 = "–" if math.isnan(g.low) else f"[{g.low:+.3f}, {g.high:+.3f}]"
        ci90 = "–" if math.isnan(g.low90) else f"[{g.low90:+.3f}, {g.high90:+.3f}]"
        needed = "–" if math.isnan(g.seeds_needed) else f"{g.seeds_needed:.0f}"
        cells = (seeds_cell(g.scratch_seeds, g.scratch_mean, g.scratch_std),) + (
            seeds_cell(g.pretrained_seeds, g.pretrained_mean, g.pretrained_std),
        )
        out.append(
            (
                g.model,
                g.data_fraction,
                g.config,
                g.schedule,
                *cells,
                g.delta,
                ci95,
                ci90,
                f"±{g.margin:g}",
                g.verdict,
                needed,
            )
        )
    return pd.DataFrame(out, columns=cols)


def seeds_cell(n: int, mean: float, std: float) -> str:
    """``mean ± std (n)`` over seeds, or ``mean (1)`` for a single seed."""
    return f"{mean:.3f} ± {std:.3f} ({n})" if n > 1 else f"{mean:.3f} (1)"
