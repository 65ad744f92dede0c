"""The replicate phase's plan: which (arm, lr, weight decay, seed) to score, after the search.

With ``replicates`` = K > 1, each arm's recipe and its best (lr, weight decay) on the search
split are trained under K seeds each (model init, data order and generated pretraining
change, the training images stay the same), with the trunk to the arm's longest schedule so
that every schedule is scored under every seed:

- the recipe under the study's seed and the next K - 1. Its search trial (the study's seed)
  counts: the recipe was fixed before the search, never chosen, so no selection favoured it.
- the best under the K seeds after the study's: never the search's own seed, whose trial
  won the choice and keeps part of that luck on every split (analysis/stats/replicates.py reads it
  so). A best that is the recipe takes the recipe's seeds but the search's own (K - 1 fresh
  ones, no trial more). An arm whose search had one configuration chose nothing and has no
  best.

A seed already scored that far (the recipe's search trial, usually) is not run again.

The configurations are chosen once, when the phase first starts, and written to
``replicates.json`` beside the rows: the replicates' own results must not change which
configuration is "best" when the study resumes. No Ray here (study/hpo/tuning.py runs the plan).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from analysis.results import best_row, final_rows, trial_rows
from study.spec.resolved import ResolvedStudy
from study.spec.study_config import StudyConfig
from trainables.contract import storage
from trainables.contract.rows import COMPLETED, DIVERGED, is_completed_final

REPLICATES_FILE = "replicates.json"


def choose_configs(resolved: ResolvedStudy, df: pd.DataFrame) -> dict[str, Any]:
    """Per arm: its trunk (longest schedule) and configurations, ``recipe`` and ``best``.

    ``best``: the (lr, weight decay) of the arm's best completed final result on the search
    split among the search's own trials (the study's seed), possibly the recipe; None where
    the search scored one configuration only (nothing was chosen), or where the preset
    replicates the recipe alone (``replicate_best``).
    """
    study = resolved.study
    finals = final_rows(df) if not df.empty else df
    chosen = {}
    for spec in resolved.arms:
        arm, recipe = spec.arm, spec.recipe
        configs = {"recipe": [recipe["lr"], recipe["weight_decay"]]}
        if not finals.empty:
            mine = finals[
                (finals["arm"] == arm.name)
                & is_completed_final(finals, study.objective)
                & (finals["seed"] == study.seed)
            ]
            if study.replicate_best and len(mine.groupby(["lr", "weight_decay"])) >= 2:
                top = best_row(mine, study.objective)
                configs["best"] = [float(top["lr"]), float(top["weight_decay"])]
        configs.setdefault("best", None)
        chosen[arm.name] = {"trunk": float(max((*spec.schedules, recipe["schedule"]))), "configs": configs}
    return chosen


def load_or_choose(resolved: ResolvedStudy, df: pd.DataFrame, results_uri: str) -> dict[str, Any]:
    """The configurations written when the phase first started, else chosen now and written."""
    path = storage.join(results_uri, REPLICATES_FILE)
    if storage.exists(path):
        return json.loads(storage.read_bytes(path))["arms"]
    chosen = choose_configs(resolved, df)
    blob = {"objective": resolved.study.objective, "split": "search", "arms": chosen}
    storage.write_bytes_atomic(path, json.dumps(blob, indent=2).encode())
    return chosen


def seeds(study: StudyConfig, config: str = "recipe") -> list[int]:
    """The seeds a configuration is scored under: the recipe's from the study's own, the
    best's after it (fresh)."""
    first = study.seed + (1 if config == "best" else 0)
    return [first + k for k in range(study.replicates)]


def all_seeds(study: StudyConfig) -> list[int]:
    """Every seed the phase may run (the generated pretraining is made per seed)."""
    return sorted(set(seeds(study, "recipe")) | set(seeds(study, "best")))


def pending_points(study: StudyConfig, chosen: dict[str, Any], df: pd.DataFrame) -> list[dict[str, Any]]:
    """The trials still to run: one per (arm, configuration, seed) that no trial has scored to
    the arm's trunk yet (completed, or diverged: a rerun would diverge the same way)."""
    ended = trial_rows(df) if not df.empty else df
    points = []
    for arm, plan in chosen.items():
        recipe, best = plan["configs"]["recipe"], plan["configs"].get("best")
        wanted = {(float(recipe[0]), float(recipe[1]), seed) for seed in seeds(study, "recipe")}
        if best and best != recipe:  # a best that is the recipe reads the recipe's fresh seeds
            wanted |= {(float(best[0]), float(best[1]), seed) for seed in seeds(study, "best")}
        for lr, wd, seed in sorted(wanted):
            if not _done(ended, arm, lr, wd, seed, plan["trunk"]):
                points.append({"arm": arm, "lr": lr, "weight_decay": wd, "schedule": plan["trunk"], "seed": seed})
    return points


def _span(values: list[int]) -> str:
    return f"{values[0]}-{values[-1]}" if len(values) > 1 else str(values[0])


def _done(ended: pd.DataFrame, arm: str, lr: float, wd: float, seed: int, trunk: float) -> bool:
    if ended.empty:
        return False
    same = ended[
        (ended["arm"] == arm)
        & (ended["seed"] == seed)
        & ended["lr"].map(lambda v: math.isclose(v, lr, rel_tol=1e-9))
        & ended["weight_decay"].map(lambda v: math.isclose(v, wd, rel_tol=1e-9))
        & ended["trunk_schedule"].map(lambda v: math.isclose(v, trunk, rel_tol=1e-9))
    ]
    return bool(same["trial_status"].isin([COMPLETED, DIVERGED]).any())


def describe(study: StudyConfig, chosen: dict[str, Any], points: list[dict[str, Any]]) -> str:
    """What the phase will run, for the log."""
    recipe_seeds, best_seeds = seeds(study, "recipe"), seeds(study, "best")
    lines = [
        f"replicates: each recipe under seeds {_span(recipe_seeds)} (the search's own included: the recipe was "
        f"not chosen), each best under fresh seeds {_span(best_seeds)} (never the seed whose trial won the "
        f"choice); {len(points)} trial(s) to run"
    ]
    for arm, plan in chosen.items():
        recipe, best = plan["configs"]["recipe"], plan["configs"].get("best")
        if best is None:
            what = "  no best (the search scored one configuration)"
        elif recipe == best:
            what = "  best = the recipe (its seeds but the search's own)"
        else:
            what = f"  best lr {best[0]:.4g} wd {best[1]:.2g}"
        lines.append(
            f"  {arm:<26} trunk {plan['trunk']:g}x  recipe lr {recipe[0]:g} wd {recipe[1]:g}{what}"
            f"  -> {sum(p['arm'] == arm for p in points)} to run"
        )
    return "\n".join(lines)
