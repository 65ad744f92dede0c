"""Seed replicates: each arm's recipe and best configuration under several seeds, and the
gap per schedule that the verdict reads (analysis/stats/verdict.py, analysis/headline.py).

The study's replicate phase (``--replicates K``) trains configurations again under further
seeds (all of an init's randomness: model init, data order and, for the generated
pretraining, the pretraining itself; the training images stay the same), the trunk to the
arm's longest schedule. Two readings come of it, each scratch against pretrained:

- **recipe**: the preset's (lr, weight decay), fixed before the search. Every seed of it
  counts, the search's own included: it was never chosen, so no selection favoured it.
  This is the paper's design (Table 1: one recipe per init at every schedule), and the
  primary reading.
- **best**: the arm's best (lr, weight decay) on the search split, chosen among the search's
  trials. The trial that won that choice keeps part of its luck on every split (the search
  and test scores come from one model), so the reading uses only the replicate phase's fresh
  seeds, never the seed the search ran under.

Every seed the reading planned is accounted for. A seed that diverged (NaN/inf loss) enters
at AP 0, the value its row records: the recipe left no usable model under that seed. A
divergence ends the trial, so the seed enters at AP 0 at every longer schedule of its trunk
as well. A seed without a result at a schedule (the trial failed, or still runs) is counted
as missing and left out of the statistics. The value is the test split's where the study
has one (no decision saw it), else the search split's.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from analysis.results import final_rows
from analysis.stats.verdict import compare
from trainables.contract.rows import COMPLETED, DIVERGED

RECIPE, BEST = "recipe", "best"
READINGS = (RECIPE, BEST)
MISSING = "missing"
GROUP = ["model", "data_fraction", "init", "reading", "schedule"]
ROW_COLUMNS = [
    "model",
    "data_fraction",
    "init",
    "arm",
    "reading",
    "lr",
    "weight_decay",
    "schedule",
    "seed",
    "trial_id",
    "status",
    "value",
]


def value_column(df: pd.DataFrame, objective: str = "bbox_AP") -> str:
    """The test split's column of ``objective`` where any final row has it, else the search split's."""
    test = f"test_{objective}"
    return test if test in df and df[test].notna().any() else objective


def planned_configs(
    df: pd.DataFrame,
    recipes: dict[str, tuple[float, float]],
    chosen: dict[str, dict] | None = None,
    selection_seed: int = 0,
    objective: str = "bbox_AP",
) -> dict[str, dict[str, tuple[float, float]]]:
    """arm -> {"recipe": (lr, wd), "best": (lr, wd)}: what each reading replicates.

    ``chosen``: replicates.json's arms (study/hpo/replicate_phase.py wrote them when the phase
    started); an arm whose search had one configuration has no "best". Without it (a study
    from before that file), the arm's best is its replicated configuration that is not the
    recipe, the best of them on the search split.
    """
    if chosen:
        return {
            arm: {k: (float(v[0]), float(v[1])) for k, v in (plan.get("configs") or {}).items() if v}
            for arm, plan in chosen.items()
        }
    finals = final_rows(df) if not df.empty else df
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for arm, group in finals.groupby("arm", sort=True) if not finals.empty else ():
        configs = {}
        if arm in recipes:
            configs[RECIPE] = tuple(map(float, recipes[arm]))
        seeds = group.groupby(["lr", "weight_decay"])["seed"].nunique()
        others = [c for c, n in seeds.items() if n >= 2 and not (RECIPE in configs and _same(c, configs[RECIPE]))]
        if others:
            configs[BEST] = max(others, key=lambda c: group.loc[_match(group, c), objective].max())
        out[str(arm)] = configs
    return out


def _same(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return bool(np.isclose(a, b, rtol=1e-9, atol=0).all())


def _match(group: pd.DataFrame, config: tuple[float, float]) -> pd.Series:
    return np.isclose(group["lr"], config[0], rtol=1e-9, atol=0) & np.isclose(
        group["weight_decay"], config[1], rtol=1e-9, atol=0
    )


def replicate_rows(
    df: pd.DataFrame,
    configs: dict[str, dict[str, tuple[float, float]]],
    selection_seed: int = 0,
    objective: str = "bbox_AP",
) -> pd.DataFrame:
    """One row per (arm, reading, seed, schedule) of every reading scored under two or more
    seeds: its value and status ("completed", "diverged" or "missing").

    ``configs``: :func:`planned_configs`. A seed's schedules are those of its arm that its
    trunk reaches; a seed that ran a configuration twice (a search trial and its replicate to
    a longer trunk score the shorter schedules alike) counts once, its last result.
    """
    if df.empty:
        return pd.DataFrame(columns=ROW_COLUMNS)
    column = value_column(final_rows(df), objective)
    finals = final_rows(df)
    out = []
    for arm, group in df.groupby("arm", sort=True):
        schedules = sorted(finals.loc[finals["arm"] == arm, "schedule"].unique())
        for reading, config in configs.get(str(arm), {}).items():
            mine = group[_match(group, config)]
            if reading == BEST:
                mine = mine[mine["seed"] != selection_seed]
            rows = [r for _, trial in mine.groupby("trial_id", sort=True) for r in _seed_rows(trial, schedules, column)]
            if not rows:
                continue
            table = pd.DataFrame(rows).assign(reading=reading)
            table["found"] = table["status"] != MISSING
            table = table.sort_values(["found", "written_at"]).drop_duplicates(["seed", "schedule"], keep="last")
            seeds = table[table["found"]].groupby("schedule")["seed"].nunique()
            if seeds.empty or seeds.max() < 2:
                continue  # one seed: no replicate
            out.append(table[ROW_COLUMNS])
    if not out:
        return pd.DataFrame(columns=ROW_COLUMNS)
    return pd.concat(out, ignore_index=True).sort_values(["arm", "reading", "schedule", "seed"]).reset_index(drop=True)


def _seed_rows(trial: pd.DataFrame, schedules: list[float], column: str) -> list[dict]:
    """One trial's value at each schedule its trunk reaches (see replicate_rows)."""
    first = trial.iloc[0]
    trunk = float(first["trunk_schedule"])
    finals = trial[trial["phase"] == "final"].sort_values("written_at").drop_duplicates("schedule", keep="last")
    by_schedule = finals.set_index("schedule")
    diverged = finals.loc[finals["status"] == DIVERGED, "schedule"]
    diverged_at = float(diverged.min()) if len(diverged) else math.inf
    written = float(trial["written_at"].max()) if trial["written_at"].notna().any() else 0.0
    base = {k: first[k] for k in ("model", "data_fraction", "init", "arm", "lr", "weight_decay", "seed", "trial_id")}
    rows = []
    for s in schedules:
        if s > trunk + 1e-9:
            break
        if s in by_schedule.index and by_schedule.loc[s, "status"] in (COMPLETED, DIVERGED):
            status = str(by_schedule.loc[s, "status"])
            value = 0.0 if status == DIVERGED else float(by_schedule.loc[s, column])
            stamp = by_schedule.loc[s, "written_at"]
            at = written if pd.isna(stamp) else float(stamp)
        elif s > diverged_at:
            status, value, at = DIVERGED, 0.0, written
        else:
            status, value, at = MISSING, math.nan, written
        rows.append({**base, "schedule": float(s), "status": status, "value": value, "written_at": at})
    return rows


def seed_stats(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (model, data fraction, init, reading, schedule): seeds with a value (diverged ones
    at AP 0 included), of which diverged, seeds missing, and mean ± std (n - 1) over seeds."""
    cols = [*GROUP, "lr", "weight_decay", "seeds", "diverged", "missing", "mean", "std"]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    found = rows["status"] != MISSING
    stats = (
        rows.assign(
            present=found.astype(int),
            div=(rows["status"] == DIVERGED).astype(int),
            miss=(~found).astype(int),
            v=rows["value"].where(found),
        )
        .groupby(GROUP, sort=True)
        .agg(
            lr=("lr", "first"),
            weight_decay=("weight_decay", "first"),
            seeds=("present", "sum"),
            diverged=("div", "sum"),
            missing=("miss", "sum"),
            mean=("v", "mean"),
            std=("v", "std"),
        )
    )
    return stats.reset_index()[cols]


Margins = Callable[[str, float], float]


def gap_intervals(rows: pd.DataFrame, margins: Margins | float) -> pd.DataFrame:
    """Δ = scratch − pretrained per (model, data fraction, reading, schedule) and its
    verdict (analysis/stats/verdict.py's compare): recipe against recipe, best against best.

    ``margins``: the non-inferiority margin δ of each (model, data fraction), AP units (a
    callable), or one for all. Columns: each side's seeds, diverged, missing, mean and std;
    then the Gap's fields (delta, low95, high95, low90, high90, p_no_worse, p_worse, margin,
    reading, equivalent, difference, seeds_if_zero, seeds_if_observed).
    """
    margin_of = margins if callable(margins) else (lambda model, fraction: float(margins))
    sides = [f"{i}_{s}" for i in ("scratch", "pretrained") for s in ("seeds", "diverged", "missing", "mean", "std")]
    fields = [
        "delta",
        "low95",
        "high95",
        "low90",
        "high90",
        "p_no_worse",
        "p_worse",
        "margin",
        "reading_",
        "equivalent",
        "difference",
        "seeds_if_zero",
        "seeds_if_observed",
    ]
    cols = ["model", "data_fraction", "reading", "schedule", *sides, *fields]
    out = []
    stats = seed_stats(rows).set_index(GROUP) if not rows.empty else None
    for (model, fraction, reading, schedule), at in rows.groupby(GROUP[:2] + GROUP[3:], sort=True):
        values = {}
        for init in ("scratch", "pretrained"):
            mine = at[(at["init"] == init) & (at["status"] != MISSING)]
            values[init] = mine["value"].to_numpy(float)
        if not len(values["scratch"]) or not len(values["pretrained"]):
            continue
        spread = []
        for init in ("scratch", "pretrained"):
            s = stats.loc[(model, fraction, init, reading, schedule)]
            spread += [int(s["seeds"]), int(s["diverged"]), int(s["missing"]), float(s["mean"]), float(s["std"])]
        gap = compare(values["scratch"], values["pretrained"], margin_of(model, fraction))
        out.append(
            (
                model,
                fraction,
                reading,
                schedule,
                *spread,
                gap.delta,
                gap.low95,
                gap.high95,
                gap.low90,
                gap.high90,
                gap.p_no_worse,
                gap.p_worse,
                gap.margin,
                gap.reading,
                gap.equivalent,
                gap.difference,
                gap.seeds_if_zero,
                gap.seeds_if_observed,
            )
        )
    frame = pd.DataFrame(out, columns=cols).rename(columns={"reading_": "verdict"})
    order = {r: i for i, r in enumerate(READINGS)}
    return frame.sort_values(
        ["model", "data_fraction", "reading", "schedule"], key=lambda c: c.map(order) if c.name == "reading" else c
    ).reset_index(drop=True)


def seeds_cell(n: int, mean: float, std: float, diverged: int = 0) -> str:
    """``mean ± std (n)`` over seeds, or ``mean (1)`` for a single seed; ``(n, k diverged)``
    where k of the n entered at AP 0."""
    count = f"{n}, {diverged} diverged" if diverged else f"{n}"
    return f"{mean:.3f} ± {std:.3f} ({count})" if n > 1 else f"{mean:.3f} ({count})"
