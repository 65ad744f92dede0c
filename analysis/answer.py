"""The report's lead: the study's answer in the shape of the paper's Table 1.

One table per (model, data fraction): the inits as rows, the schedules as columns, the test
split's AP of each init's result chosen on the search split; then the gap Δ = scratch −
pretrained and, where seed replicates exist, their mean ± std, Δ's 95 % interval and the
equivalence verdict (analysis/replicates.py); and pretrained's change from one schedule to
the next, with its plateau marked where the change lies within the equivalence margin (the
paper: 40.3 → 41.1 from 2× to 6×, Table 1).
"""

from __future__ import annotations

import math

import pandas as pd

from analysis import replicates
from analysis.paper import paper_frame
from analysis.tables import best_by_schedule, completed


def _label(schedule: float) -> str:
    return f"{schedule:g}×"


def answer_tables(
    df: pd.DataFrame,
    objective: str,
    margin: float,
    gaps: pd.DataFrame | None = None,
    with_paper: bool = False,
    rows: pd.DataFrame | None = None,
) -> list[tuple[str, pd.DataFrame]]:
    """[(title, table)] per (model, data fraction); cells are formatted strings.

    Without replicates each cell is one draw: the trial best on the search split at that
    schedule, on the test split (the search split where the study has none). With them
    (``gaps`` from replicates.gap_intervals), the "best" configuration's seeds (or the recipe,
    where it was the best) give mean ± std (seeds), Δ with its 95 % interval and the verdict.
    ``with_paper`` adds the paper's AP for ``objective`` (Table 1's bbox AP, or the keypoint
    AP of Sec. 5.1; val2017, as fractions) for a COCO study's full-data model. ``rows``
    (replicate_rows' output) judge pretrained's plateau over seeds.
    """
    best = best_by_schedule(df, objective)
    done = completed(df)
    column = f"test_{objective}" if best[f"test_{objective}"].notna().any() else objective
    out = []
    for (model, fraction), group in best.groupby(["model", "data_fraction"], sort=True):
        schedules = sorted(group["schedule"].unique())
        values = {
            init: group[group["init"] == init].set_index("schedule")[column].reindex(schedules)
            for init in ("scratch", "pretrained")
        }
        mine = _replicated(gaps, model, fraction)
        curve_trial = None
        cells_by_row = {"scratch": [], "pretrained": [], "Δ scratch − pretrained": []}
        if mine is not None:
            cells_by_row[f"verdict (margin ±{margin:g})"] = []
            schedules = sorted(set(schedules) | set(mine.index))
            means = mine["pretrained_mean"].reindex(schedules)
        else:
            # One seed: the change along one trial's branches, not across the cells above
            # (each best on the search split, possibly from different trials).
            means, curve_trial = _one_trial_curve(done, group, column, schedules)
        for s in schedules:
            gap = mine.loc[s] if mine is not None and s in mine.index else None
            if gap is not None:
                cells_by_row["scratch"].append(
                    replicates.seeds_cell(gap.scratch_seeds, gap.scratch_mean, gap.scratch_std)
                )
                cells_by_row["pretrained"].append(
                    replicates.seeds_cell(gap.pretrained_seeds, gap.pretrained_mean, gap.pretrained_std)
                )
                ci = "" if math.isnan(gap.low) else f" [{gap.low:+.3f}, {gap.high:+.3f}]"
                cells_by_row["Δ scratch − pretrained"].append(f"{gap.delta:+.3f}{ci}")
                cells_by_row[f"verdict (margin ±{margin:g})"].append(f"**{gap.verdict}**")
                continue
            cells = {init: values[init].get(s, math.nan) for init in values}
            for init in ("scratch", "pretrained"):
                cells_by_row[init].append(_ap(cells[init]))
            cells_by_row["Δ scratch − pretrained"].append(_ap(cells["scratch"] - cells["pretrained"], signed=True))
            if mine is not None:
                cells_by_row[f"verdict (margin ±{margin:g})"].append("no replicates")
        paired = None
        if mine is not None and rows is not None:
            config = str(mine["config"].iloc[0])
            arm_rows = rows[(rows["model"] == model) & (rows["data_fraction"] == fraction)]
            paired = replicates.plateau_test(arm_rows, config, margin)
        cells_by_row["pretrained: change from the schedule before"] = _changes(means, margin, paired, curve_trial)
        if with_paper and fraction == 1.0:
            paper = paper_frame(objective)
            for init, name in (("scratch", "paper: random init"), ("pretrained", "paper: w/ pre-train")):
                mine_paper = paper[(paper["model"] == model) & (paper["init"] == init)].set_index("schedule")
                if not mine_paper.empty:
                    cells_by_row[name] = [_ap(mine_paper["paper_AP"].get(s, math.nan) / 100) for s in schedules]
        table = pd.DataFrame(
            [[name, *cells] for name, cells in cells_by_row.items()], columns=["", *map(_label, schedules)]
        )
        split = "test split" if column.startswith("test_") else "search split (the study has no test split)"
        what = "mean ± std over seeds" if mine is not None else "one seed"
        out.append((f"{model}, data fraction {fraction:g}: {objective} on the {split}, {what}", table))
    return out


def _replicated(gaps: pd.DataFrame | None, model: str, fraction: float) -> pd.DataFrame | None:
    """The replicated "best" configuration's gaps (or "recipe = best") for one arm pair, by schedule."""
    if gaps is None or gaps.empty:
        return None
    mine = gaps[(gaps["model"] == model) & (gaps["data_fraction"] == fraction)]
    for kind in (replicates.BOTH, replicates.BEST):
        chosen = mine[mine["config"] == kind]
        if not chosen.empty:
            return chosen.set_index("schedule")
    return None


def _one_trial_curve(
    done: pd.DataFrame, best: pd.DataFrame, column: str, schedules: list[float]
) -> tuple[pd.Series, str | None]:
    """Pretrained's AP at every schedule along one trial (``done``: the completed final rows):
    the trial of the longest schedule's cell, which scored each shorter schedule on a branch
    of the same trunk. A plateau is a property of one recipe's schedule curve (Table 1: one
    recipe per init at every schedule); the cells of different schedules may be different
    trials, chosen on the search split, whose difference mixes the trials' seed noise and
    that choice into it."""
    mine = best[(best["init"] == "pretrained") & best[column].notna()]
    if mine.empty:
        return pd.Series(math.nan, index=schedules), None
    trial = str(mine.sort_values("schedule")["trial_id"].iloc[-1])
    curve = done[done["trial_id"] == trial].drop_duplicates("schedule").set_index("schedule")[column]
    return curve.reindex(schedules), trial


def _changes(means: pd.Series, margin: float, paired: dict | None = None, trial: str | None = None) -> list[str]:
    """Pretrained's change from each schedule to the next; at the longest, whether it has
    levelled off: over seeds (``paired``, replicates.plateau_test) or, with one seed, the
    point estimate along one ``trial``'s branches against the margin, said to be one."""
    cells, previous = [], math.nan
    for i, value in enumerate(means):
        if i == 0 or math.isnan(previous) or math.isnan(value):
            cells.append("–")
        else:
            change = value - previous
            cell = f"{change:+.3f}"
            if i == len(means) - 1:
                if paired is not None and paired["seeds"] >= 2:
                    cell += (
                        f" (**{paired['reading']}**: 90% CI [{paired['low90']:+.3f}, {paired['high90']:+.3f}] "
                        f"against ±{margin:g})"
                    )
                else:
                    along = f"trial {trial}'s branches, " if trial else ""
                    reading = "within" if abs(change) <= margin else "beyond"
                    cell += f" ({reading} ±{margin:g}; {along}one seed, no interval)"
            cells.append(cell)
        previous = value
    return cells


def _ap(value: float, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:+.3f}" if signed else f"{value:.3f}"
