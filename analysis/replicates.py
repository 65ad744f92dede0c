"""Seed replicates: mean ± std per (init, schedule), a 95 % interval for the gap, a verdict.

The study's replicate phase (``--replicates K``) reruns each arm's recipe and its best
(lr, weight decay) under further seeds (model init and data order; the data subset stays
the same), with the trunk to the arm's longest schedule. Their final results are the seed
noise the paper's gaps (0.1-0.4 AP, Table 1) have to be judged against. The value used is
the test split's where the study has one (no decision saw it), else the search split's.

A configuration counts as replicated once two or more seeds scored it at a schedule. In an
arm, the replicated configuration that is not the recipe is its "best"; if the recipe is the
only one, it was also the best ("recipe = best": the replicate phase had one configuration
to rerun).
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


def gap_intervals(rows: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Δ = scratch − pretrained per (model, data fraction, config, schedule), with Welch's
    interval for the difference of the two means (seeds are independent draws in each
    init; the variances need not be equal). Needs two seeds in each init; fewer leave the
    interval empty.

    "best" pairs each init's best, "recipe" each init's recipe; an init whose recipe was
    its best ("recipe = best") takes part in both, and where both inits are so the gap is
    given once, as "recipe = best". Also each side's seeds, mean and std.
    """
    from scipy import stats  # only the report needs it

    sides = [f"{init}_{s}" for init in ("scratch", "pretrained") for s in ("seeds", "mean", "std")]
    cols = ["model", "data_fraction", "config", "schedule", *sides, "delta", "low", "high"]
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
                delta = scratch.mean() - pretrained.mean()
                low = high = math.nan
                if len(scratch) >= 2 and len(pretrained) >= 2:
                    if scratch.std() == 0 and pretrained.std() == 0:
                        low = high = delta  # no spread at all: the interval is the point
                    else:
                        with warnings.catch_warnings():
                            # Seeds that agree to the last digit on one side are fine for Welch
                            # (that side adds no variance); scipy warns about it all the same.
                            warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
                            test = stats.ttest_ind(scratch, pretrained, equal_var=False)
                            ci = test.confidence_interval(confidence)
                        low, high = float(ci.low), float(ci.high)
                spread = [
                    v
                    for x in (scratch, pretrained)
                    for v in (len(x), x.mean(), x.std(ddof=1) if len(x) > 1 else math.nan)
                ]
                out.append((model, fraction, kind, schedule, *spread, delta, low, high))
    return pd.DataFrame(out, columns=cols)


def verdict(gap: pd.Series) -> str:
    """One line on one schedule's gap: within seed noise, or which init is ahead beyond it."""
    where = f"{gap['config']} (lr, wd), {gap['schedule']:g}x"
    if math.isnan(gap["low"]):
        seeds = f"scratch {gap['scratch_seeds']}, pretrained {gap['pretrained_seeds']}"
        return f"{where}: too few seeds for an interval ({seeds})"
    numbers = f"Δ = {gap['delta']:+.3f}, 95% CI [{gap['low']:+.3f}, {gap['high']:+.3f}]"
    if gap["low"] <= 0 <= gap["high"]:
        what = "scratch matches pretrained within seed noise"
    elif gap["high"] < 0:
        what = "pretrained is ahead beyond seed noise"
    else:
        what = "scratch is ahead beyond seed noise"
    return f"{where}: {what} ({numbers}; {gap['scratch_seeds']} vs {gap['pretrained_seeds']} seeds)"


def headline(gaps: pd.DataFrame) -> list[str]:
    """Per (model, data fraction, config): from which schedule on scratch is no longer behind
    beyond seed noise ("scratch matches pretrained within seed noise at ≥ 3x"), or that it is
    still behind at the longest schedule scored."""
    lines = []
    for (model, fraction, config), group in gaps.dropna(subset=["low"]).groupby(
        ["model", "data_fraction", "config"], sort=True
    ):
        group = group.sort_values("schedule")
        behind = group["high"] < 0
        where = f"{model}, data fraction {fraction:g}, {config} (lr, wd)"
        if not behind.any():
            lines.append(f"{where}: scratch matches pretrained within seed noise at every schedule scored")
        elif behind.iloc[-1]:
            at = ", ".join(f"{x:g}x" for x in group.loc[behind, "schedule"])
            lines.append(
                f"{where}: scratch is still behind pretrained beyond seed noise at the longest schedule scored "
                f"(behind at {at})"
            )
        else:
            last_behind = int(np.flatnonzero(behind.to_numpy())[-1])
            start = group["schedule"].iloc[last_behind + 1]
            lines.append(f"{where}: scratch matches pretrained within seed noise at ≥ {start:g}x")
    return lines


def summary_table(gaps: pd.DataFrame) -> pd.DataFrame:
    """One line per (model, data fraction, config, schedule): each init's mean ± std (seeds),
    the gap and its interval, for the report."""
    cols = ["model", "data_fraction", "config", "schedule", "scratch", "pretrained", "delta_AP", "95% CI of delta"]
    out = []
    for g in gaps.itertuples():
        cells = [
            f"{mean:.3f} ± {std:.3f} ({n})" if n > 1 else f"{mean:.3f} (1)"
            for n, mean, std in (
                (g.scratch_seeds, g.scratch_mean, g.scratch_std),
                (g.pretrained_seeds, g.pretrained_mean, g.pretrained_std),
            )
        ]
        ci = "–" if math.isnan(g.low) else f"[{g.low:+.3f}, {g.high:+.3f}]"
        out.append((g.model, g.data_fraction, g.config, g.schedule, *cells, g.delta, ci))
    return pd.DataFrame(out, columns=cols)
