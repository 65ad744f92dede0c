"""The report's lead: the study's answer in the shape of the paper's Table 1.

The paper's design is one recipe per init at every schedule, so the lead table is each
init's recipe against the other's: per (model, data fraction), inits as rows and schedules
as columns, the test split's AP; with seed replicates their mean ± std, Δ with the 90 %
interval the verdict reads, the verdict (analysis/stats/verdict.py), and each init's change from
schedule to schedule with its plateau at the longest (paired by seed). The paper's numbers
stand beside the recipe rows where the study's model and weights are the paper's.

The best of the search follows as a second table, never beside the paper: each cell is the
trial best on the search split among the N that scored that schedule (N in the cell), and
its test-split value keeps part of the luck that chose it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from analysis.headline import plateaus
from analysis.paper import paper_frame
from analysis.stats import replicates
from analysis.stats.verdict import NO_SPREAD, TOO_FEW, per_doubling
from analysis.tables import best_by_schedule
from trainables.contract.rows import DIVERGED, FINAL

INITS = ("scratch", "pretrained")
DELTA = "Δ scratch − pretrained"


def _label(schedule: float) -> str:
    return f"{schedule:g}×"


def _ap(value: float, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def recipe_tables(
    df: pd.DataFrame,
    objective: str,
    recipes: dict[str, tuple[float, float]],
    margins: Callable[[str, float], float],
    gaps: pd.DataFrame | None = None,
    rows: pd.DataFrame | None = None,
    seed: int = 0,
    with_paper: bool = False,
) -> list[tuple[str, pd.DataFrame]]:
    """[(title, table)] per (model, data fraction): each init's recipe at every schedule.

    ``df``: every row of the study; ``recipes``: arm -> its recipe's (lr, wd); ``gaps`` and
    ``rows``: analysis/stats/replicates.py's, where the recipe was replicated (else the recipe's
    own trial under the study's ``seed``, one draw without an interval). ``with_paper`` adds
    the paper's AP for ``objective`` (Table 1's bbox AP, Sec. 5.1's keypoint AP; val2017, as
    fractions) for full-data rows of the paper's models.
    """
    finals = df[df["phase"] == FINAL] if not df.empty else df
    if finals.empty:
        return []
    column = replicates.value_column(finals, objective)
    out = []
    for (model, fraction), pair in finals.groupby(["model", "data_fraction"], sort=True):
        margin = margins(model, fraction)
        schedules = sorted(pair["schedule"].unique())
        mine = _reading(gaps, model, fraction, replicates.RECIPE)
        if mine is not None:
            table = _replicated_table(mine, schedules, rows, model, fraction, margin)
            what = "mean ± std over seeds"
        else:
            table = _one_seed_table(pair, recipes, column, schedules, seed, margin)
            what = "one seed"
        if table is None:
            continue
        if with_paper and fraction == 1.0:
            paper = paper_frame(objective)
            for init, name in (("scratch", "paper: random init"), ("pretrained", "paper: w/ pre-train")):
                theirs = paper[(paper["model"] == model) & (paper["init"] == init)].set_index("schedule")
                if not theirs.empty:
                    table[name] = [_ap(theirs["paper_AP"].get(s, math.nan) / 100) for s in schedules]
        frame = pd.DataFrame([[k, *v] for k, v in table.items()], columns=["", *map(_label, schedules)])
        split = "test split" if column.startswith("test_") else "search split (the study has no test split)"
        out.append(
            (f"{model}, data fraction {fraction:g}: each init's recipe, {objective} on the {split}, {what}", frame)
        )
    return out


def _reading(gaps: pd.DataFrame | None, model: str, fraction: float, reading: str) -> pd.DataFrame | None:
    if gaps is None or gaps.empty:
        return None
    mine = gaps[(gaps["model"] == model) & (gaps["data_fraction"] == fraction) & (gaps["reading"] == reading)]
    return mine.set_index("schedule") if not mine.empty else None


def _replicated_table(
    gaps: pd.DataFrame, schedules: list[float], rows: pd.DataFrame, model: str, fraction: float, margin: float
) -> dict[str, list[str]]:
    """Mean ± std (seeds), Δ [90 % interval], the verdict and each init's changes."""
    table: dict[str, list[str]] = {init: [] for init in INITS}
    table[f"{DELTA} [90% CI]"] = []
    table[f"verdict (margin {margin:g})"] = []
    for s in schedules:
        if s not in gaps.index:
            for key in table:
                table[key].append("–")
            continue
        g = gaps.loc[s]
        for init in INITS:
            table[init].append(
                replicates.seeds_cell(g[f"{init}_seeds"], g[f"{init}_mean"], g[f"{init}_std"], g[f"{init}_diverged"])
            )
        ci = "" if math.isnan(g["low90"]) else f" [{g['low90']:+.3f}, {g['high90']:+.3f}]"
        table[f"{DELTA} [90% CI]"].append(f"{g['delta']:+.3f}{ci}")
        table[f"verdict (margin {margin:g})"].append(_verdict_cell(g))
    changes = plateaus(rows, model, fraction, replicates.RECIPE, margin)
    for init in INITS:
        means = gaps[f"{init}_mean"].reindex(schedules)
        table[f"{init}: change from the schedule before"] = _changes(means, margin, changes.get(init))
    return table


def _verdict_cell(g: pd.Series) -> str:
    cell = f"**{g['verdict']}**"
    beside = [
        b
        for b in ("equivalent" if g["equivalent"] else "", f"scratch {g['difference']}" if g["difference"] else "")
        if b
    ]
    return cell + (f" ({', '.join(beside)})" if beside else "")


def recipe_curves(
    pair: pd.DataFrame, recipes: dict[str, tuple[float, float]], column: str, schedules: list[float], seed: int
) -> dict[str, pd.Series]:
    """Each init's recipe trial under the study's ``seed`` (``pair``: the final rows of one
    model and data fraction): its value at every schedule, one trunk (diverged at AP 0)."""
    curves = {}
    for init in INITS:
        mine = pair[(pair["init"] == init) & (pair["seed"] == seed)]
        arm = mine["arm"].iloc[0] if not mine.empty else None
        if arm is None or arm not in recipes:
            curves[init] = pd.Series(math.nan, index=schedules)
            continue
        lr, wd = recipes[arm]
        trial = mine[np.isclose(mine["lr"], lr, rtol=1e-9) & np.isclose(mine["weight_decay"], wd, rtol=1e-9)]
        trial = trial.sort_values("written_at").drop_duplicates("schedule", keep="last").set_index("schedule")
        value = trial[column].where(trial["status"] != DIVERGED, 0.0) if not trial.empty else trial[column]
        curves[init] = value.reindex(schedules)
    return curves


def _one_seed_table(
    pair: pd.DataFrame,
    recipes: dict[str, tuple[float, float]],
    column: str,
    schedules: list[float],
    seed: int,
    margin: float,
) -> dict[str, list[str]] | None:
    """The recipe's own trial per init under the study's seed: one draw, no interval; the
    change from schedule to schedule along that one trial's branches."""
    curves = recipe_curves(pair, recipes, column, schedules, seed)
    if all(c.isna().all() for c in curves.values()):
        return None
    table = {init: [_ap(v) for v in curves[init]] for init in INITS}
    table[DELTA] = [_ap(a - b, signed=True) for a, b in zip(curves["scratch"], curves["pretrained"])]
    for init in INITS:
        table[f"{init}: change from the schedule before"] = _changes(curves[init], margin, None)
    return table


def one_seed_lines(
    df: pd.DataFrame,
    objective: str,
    recipes: dict[str, tuple[float, float]],
    margins: Callable[[str, float], float],
    seed: int,
    regimes: dict[tuple[str, float], str],
) -> list[str]:
    """Without replicates, per (model, data fraction): where the study stands, in words: its
    regime, pretrained's lead at the shortest schedule and each init's last step against the
    margin, along its recipe trial (one seed: no verdict, and each said to be one draw)."""
    finals = df[df["phase"] == FINAL] if not df.empty else df
    if finals.empty:
        return []
    column = replicates.value_column(finals, objective)
    lines = []
    for (model, fraction), pair in finals.groupby(["model", "data_fraction"], sort=True):
        schedules = sorted(pair["schedule"].unique())
        curves = recipe_curves(pair, recipes, column, schedules, seed)
        if any(c.isna().all() for c in curves.values()):
            continue
        margin = margins(model, fraction)
        first = schedules[0]
        lead = curves["pretrained"].get(first, math.nan) - curves["scratch"].get(first, math.nan)
        steps, rising = [], []
        for init in ("pretrained", "scratch"):
            c = curves[init].dropna()
            if len(c) < 2:
                continue
            change = float(c.iloc[-1] - c.iloc[-2])
            flat = abs(change) <= margin
            doubling = per_doubling(change, c.index[-2], c.index[-1])
            state = (
                "levelled off" if flat else f"still rising, {doubling:+.3f} per doubling" if change > 0 else "falling"
            )
            steps.append(f"{init} {c.index[-2]:g}x -> {c.index[-1]:g}x {change:+.3f} ({state}, against ±{margin:g})")
            rising += [] if flat else [init]
        budget = f"at this budget: {' and '.join(rising)} still moving" if rising else "both inits levelled off"
        regime = regimes.get((model, float(fraction)), "")
        lines.append(
            f"{model}, data fraction {fraction:g}, one seed (no verdict){': ' + regime if regime else ''}. "
            f"Pretrained leads scratch at {first:g}x by {lead:+.3f}; " + "; ".join(steps) + f": {budget}."
        )
    return lines


def _changes(values: pd.Series, margin: float, paired=None) -> list[str]:
    """Each schedule's change from the one before; at the longest, whether the init has
    levelled off: over seeds (``paired``, a verdict.Change) or, with one seed, the point
    change against the margin, said to be one."""
    cells, previous = [], math.nan
    for i, value in enumerate(values):
        if i == 0 or math.isnan(previous) or math.isnan(value):
            cells.append("–")
        else:
            cell = f"{value - previous:+.3f}"
            if i == len(values) - 1:
                if paired is not None and paired.reading not in (NO_SPREAD, TOO_FEW):
                    ci = f"[{paired.low90:+.3f}, {paired.high90:+.3f}]"
                    cell += f" (**{paired.reading}**: 90% CI {ci} against ±{margin:g})"
                elif paired is not None:
                    cell += f" ({paired.reading})"
                else:
                    reading = "within" if abs(value - previous) <= margin else "beyond"
                    cell += f" ({reading} ±{margin:g}; one seed, no interval)"
            cells.append(cell)
        previous = value
    return cells


def best_tables(df: pd.DataFrame, objective: str) -> list[tuple[str, pd.DataFrame]]:
    """[(title, table)] per (model, data fraction): each init's best of the search per
    schedule, with N, the trials that scored that schedule, in every cell. ``df``: the
    search's own trials (the study's seed)."""
    best = best_by_schedule(df, objective)
    if best.empty:
        return []
    column = f"test_{objective}" if best[f"test_{objective}"].notna().any() else objective
    out = []
    for (model, fraction), group in best.groupby(["model", "data_fraction"], sort=True):
        schedules = sorted(group["schedule"].unique())
        by_init = {init: group[group["init"] == init].set_index("schedule") for init in INITS}
        table = {}
        for init in INITS:
            mine = by_init[init]
            table[init] = [
                f"{_ap(mine.loc[s, column])} (N={mine.loc[s, 'trials']})" if s in mine.index else "–" for s in schedules
            ]
        table[DELTA] = [
            _ap(by_init["scratch"].loc[s, column] - by_init["pretrained"].loc[s, column], signed=True)
            if all(s in by_init[i].index for i in INITS)
            else "–"
            for s in schedules
        ]
        frame = pd.DataFrame([[k, *v] for k, v in table.items()], columns=["", *map(_label, schedules)])
        out.append(
            (f"{model}, data fraction {fraction:g}: best of the search, {objective} on the {_split(column)}", frame)
        )
    return out


def _split(column: str) -> str:
    return "test split" if column.startswith("test_") else "search split"
