"""The replicate phase's plan: which (arm, lr, weight decay, seed) to score, after the search.

With ``replicates`` = K > 1, each arm's recipe and its best (lr, weight decay) on the search
split are trained under K seeds (the study's seed, then the next K - 1: model init and data
order change, the training images stay the same), with the trunk to the arm's longest
schedule so that every schedule is scored under every seed. A seed already scored that far
(the recipe's search trial, usually) is not run again.

The configurations are chosen once, when the phase first starts, and written to
``replicates.json`` beside the rows: the replicates' own results must not change which
configuration is "best" when the study resumes. No Ray here (study/tuning.py runs the plan).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pandas as pd

from analysis.results import best_row, final_rows, trial_rows
from study.config import StudyConfig, default_point, search_space
from study.config import arms as study_arms
from trainables import storage
from trainables.rows import COMPLETED, DIVERGED

REPLICATES_FILE = "replicates.json"


def choose_configs(study: StudyConfig, df: pd.DataFrame) -> dict[str, Any]:
    """Per arm: its trunk (longest schedule) and configurations, ``recipe`` and ``best``.

    ``best``: the (lr, weight decay) of the arm's best completed final result on the search
    split among the search's own trials (the study's seed); the recipe where nothing else
    did better (then the two are one configuration, run once per seed).
    """
    finals = final_rows(df) if not df.empty else df
    chosen = {}
    for arm in study_arms(study):
        recipe = default_point(study, dataclasses.asdict(arm))
        space = search_space(study, arm)
        configs = {"recipe": [float(recipe["lr"]), float(recipe["weight_decay"])]}
        if not finals.empty:
            mine = finals[
                (finals["arm"] == arm.name)
                & (finals["status"] == COMPLETED)
                & (finals["seed"] == study.seed)
                & finals[study.objective].notna()
            ]
            if not mine.empty:
                top = best_row(mine, study.objective)
                configs["best"] = [float(top["lr"]), float(top["weight_decay"])]
        configs.setdefault("best", configs["recipe"])
        chosen[arm.name] = {"trunk": float(max((*space.schedule, float(recipe["schedule"])))), "configs": configs}
    return chosen


def load_or_choose(study: StudyConfig, df: pd.DataFrame, results_uri: str) -> dict[str, Any]:
    """The configurations written when the phase first started, else chosen now and written."""
    path = storage.join(results_uri, REPLICATES_FILE)
    if storage.exists(path):
        return json.loads(storage.read_bytes(path))["arms"]
    chosen = choose_configs(study, df)
    blob = {"objective": study.objective, "split": "search", "arms": chosen}
    storage.write_bytes_atomic(path, json.dumps(blob, indent=2).encode())
    return chosen


def seeds(study: StudyConfig) -> list[int]:
    return [study.seed + k for k in range(study.replicates)]


def pending_points(study: StudyConfig, chosen: dict[str, Any], df: pd.DataFrame) -> list[dict[str, Any]]:
    """The trials still to run: one per (arm, configuration, seed) that no trial has scored to
    the arm's trunk yet (completed, or diverged: a rerun would diverge the same way)."""
    ended = trial_rows(df) if not df.empty else df
    points = []
    for arm, plan in chosen.items():
        unique = {tuple(c) for c in plan["configs"].values()}
        for lr, wd in sorted(unique):
            for seed in seeds(study):
                if not _done(ended, arm, lr, wd, seed, plan["trunk"]):
                    points.append({"arm": arm, "lr": lr, "weight_decay": wd, "schedule": plan["trunk"], "seed": seed})
    return points


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
    lines = [f"replicates: seeds {', '.join(map(str, seeds(study)))}; {len(points)} trial(s) to run"]
    for arm, plan in chosen.items():
        recipe, best = plan["configs"]["recipe"], plan["configs"]["best"]
        same = recipe == best
        lines.append(
            f"  {arm:<26} trunk {plan['trunk']:g}x  recipe lr {recipe[0]:g} wd {recipe[1]:g}"
            + ("  (also the best on the search split)" if same else f"  best lr {best[0]:.4g} wd {best[1]:.2g}")
            + f"  -> {sum(p['arm'] == arm for p in points)} to run"
        )
    return "\n".join(lines)
