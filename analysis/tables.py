"""The study's tables, each a function of ``load_results``'s DataFrame returning a DataFrame.

AP values stay fractions, as in the rows (the paper prints percent; ``paper_bbox_AP`` is
converted to a fraction so the columns compare directly). Every choice of a "best" result is
made on the search split (the unprefixed ``objective``, as the search made it); the chosen
result's test-split numbers (``test_*``, none where the study has no test split) are the
ones to quote, since no decision saw them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.paper import DATA_FRACTION_BBOX_AP, TABLE2, paper_frame
from analysis.results import best_row, final_rows, ranked, trial_rows
from trainables.contract.rows import ARM_KEYS, COMPLETED, TRIAL_STATUSES

# The AP columns a table shows for a chosen result: the test split's, then the search split's.
SHOWN = ("test_bbox_AP", "test_segm_AP", "bbox_AP", "segm_AP")


def shown(objective: str) -> tuple[str, ...]:
    """The AP columns a table carries: box and mask AP, and the objective's where it is
    another (a keypoint study's keypoint AP), each on the test split, then the search split."""
    if objective in SHOWN:
        return SHOWN
    return (*SHOWN[:2], f"test_{objective}", *SHOWN[2:], objective)


def completed(df: pd.DataFrame) -> pd.DataFrame:
    """Every schedule's final result that ended its cooldown (one per trial and schedule)."""
    final = final_rows(df)
    return final[final["status"] == COMPLETED] if not final.empty else final


def best_by_schedule(df: pd.DataFrame, objective: str = "bbox_AP") -> pd.DataFrame:
    """Table 1 style: for each arm and schedule, the final result of the trial best on the
    search split.

    Columns: model, data_fraction, init, schedule, test_bbox_AP, test_segm_AP (that
    trial's test split), bbox_AP, segm_AP (its search split), lr, weight_decay, trial_id,
    trials (trials that scored this schedule: their own or on a branch).
    """
    done = completed(df)
    cols = [*ARM_KEYS, "schedule", *shown(objective), "lr", "weight_decay", "trial_id", "trials"]
    if done.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for key, group in done.groupby([*ARM_KEYS, "schedule"], sort=True):
        best = best_row(group, objective)
        rows.append(
            {
                **dict(zip([*ARM_KEYS, "schedule"], key)),
                **{k: best[k] for k in shown(objective)},
                "lr": best["lr"],
                "weight_decay": best["weight_decay"],
                "trial_id": best["trial_id"],
                "trials": len(group),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def recipe_by_schedule(
    df: pd.DataFrame, recipes: dict[str, tuple[float, float]], objective: str = "bbox_AP"
) -> pd.DataFrame:
    """The paper's design: each arm's recipe (lr, weight decay) at every schedule.

    ``recipes``: arm -> (lr, weight_decay) of its recipe (study.json's arms). Where several
    trials ran the recipe (seeds), the mean. Columns: model, data_fraction, init,
    schedule, test_bbox_AP, test_segm_AP, bbox_AP, segm_AP (and ``objective``'s, shown()).
    """
    done = completed(df)
    cols = [*ARM_KEYS, "schedule", *shown(objective)]
    if done.empty or not recipes:
        return pd.DataFrame(columns=cols)
    mask = pd.Series(False, index=done.index)
    for arm, (lr, wd) in recipes.items():
        mask |= (done["arm"] == arm) & np.isclose(done["lr"], lr) & np.isclose(done["weight_decay"], wd)
    picked = done[mask]
    if picked.empty:
        return pd.DataFrame(columns=cols)
    return picked.groupby([*ARM_KEYS, "schedule"], as_index=False)[list(shown(objective))].mean()[cols]


def recipe_table(df: pd.DataFrame, recipes: dict[str, tuple[float, float]], objective: str = "bbox_AP") -> pd.DataFrame:
    """Each arm's recipe at every schedule, inits as rows and schedules as columns (the
    paper's Table 1 layout); the test split's ``objective`` where there is one."""
    recipe = recipe_by_schedule(df, recipes, objective)
    if recipe.empty:
        return pd.DataFrame(columns=["model", "data_fraction", "init"])
    column = f"test_{objective}" if recipe[f"test_{objective}"].notna().any() else objective
    wide = recipe.pivot_table(index=list(ARM_KEYS), columns="schedule", values=column, aggfunc="first")
    wide.columns = [f"{s:g}x {column}" for s in wide.columns]
    return wide.reset_index()


def scratch_vs_pretrained(
    df: pd.DataFrame,
    objective: str = "bbox_AP",
    with_paper: bool = False,
    recipes: dict[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """Scratch and pretrained side by side per (model, data fraction, schedule), with the gap.

    The result best on the search split per schedule: its test-split AP first
    (``scratch_test_bbox_AP``, ``delta_test_bbox_AP``, ...), then its search-split AP
    (``scratch_bbox_AP``, ..., biased upward by the choice). With ``recipes`` (arm -> its
    recipe's lr and weight decay) the recipe's test AP at the same schedule as
    ``recipe_*`` columns: the paper's Table 1 design, one recipe at every schedule for both
    inits. The objective's columns come first where it is another (a keypoint study's).
    ``with_paper`` adds the paper's AP for the objective (Table 1's bbox AP, Sec. 5.1's
    keypoint AP; as fractions; val2017, the COCO presets' test split) for the same model and
    schedule, for COCO studies.
    """
    best = best_by_schedule(df, objective)
    index = ["model", "data_fraction", "schedule"]
    if best.empty:
        return pd.DataFrame(columns=[*index, "scratch_test_bbox_AP", "pretrained_test_bbox_AP", "delta_test_bbox_AP"])
    metrics = shown(objective)
    wide = best.pivot_table(index=index, columns="init", values=[*metrics, "lr", "weight_decay"], aggfunc="first")
    wide.columns = [f"{init}_{metric}" for metric, init in wide.columns]
    wide = wide.reset_index()
    for metric in metrics:
        for init in ("scratch", "pretrained"):
            if f"{init}_{metric}" not in wide:
                wide[f"{init}_{metric}"] = np.nan
        wide[f"delta_{metric}"] = wide[f"scratch_{metric}"] - wide[f"pretrained_{metric}"]
    recipe = recipe_by_schedule(df, recipes or {}, objective)
    # The recipe's and the paper's columns are the objective's (bbox AP: Table 1; keypoint AP:
    # Sec. 5.1), on the test split.
    test = f"test_{objective}"
    if not recipe.empty and recipe[test].notna().any():
        r = recipe.pivot_table(index=index, columns="init", values=test, aggfunc="first")
        r.columns = [f"recipe_{c}_{test}" for c in r.columns]
        wide = wide.merge(r.reset_index(), on=index, how="left")
    published = paper_frame(objective)
    if with_paper and not published.empty:
        # On all of train2017: only full-data rows get it (subsets: scaling()).
        paper = published.pivot_table(index=["model", "schedule"], columns="init", values="paper_AP") / 100.0
        paper.columns = [f"paper_{c}_{objective}" for c in paper.columns]
        paper = paper.reset_index().assign(data_fraction=1.0)
        wide = wide.merge(paper, on=["model", "data_fraction", "schedule"], how="left")
    order = [
        *index,
        f"scratch_test_{objective}",
        f"pretrained_test_{objective}",
        f"delta_test_{objective}",
        f"paper_scratch_{objective}",
        f"paper_pretrained_{objective}",
        f"recipe_scratch_test_{objective}",
        f"recipe_pretrained_test_{objective}",
        "scratch_test_bbox_AP",
        "pretrained_test_bbox_AP",
        "delta_test_bbox_AP",
        "paper_scratch_bbox_AP",
        "paper_pretrained_bbox_AP",
        "scratch_bbox_AP",
        "pretrained_bbox_AP",
        "delta_bbox_AP",
        "recipe_scratch_test_bbox_AP",
        "recipe_pretrained_test_bbox_AP",
        "scratch_test_segm_AP",
        "pretrained_test_segm_AP",
        "delta_test_segm_AP",
        "scratch_segm_AP",
        "pretrained_segm_AP",
        "delta_segm_AP",
    ]
    order = list(dict.fromkeys(order))
    rest = [c for c in wide.columns if c not in order]
    return wide[[c for c in order if c in wide] + rest].sort_values(index).reset_index(drop=True)


def scaling(df: pd.DataFrame, objective: str = "bbox_AP", with_paper: bool = False) -> pd.DataFrame:
    """Best final AP per init against training-set size (paper Sec. 5.2), completed trials:
    the result best on the search split (``objective``), with its test-split value first.

    ``with_paper`` (COCO studies on bbox AP) adds the paper's Sec. 5.2 best bbox AP (as a
    fraction) to the R50 rows whose training-set size is one of its subsets (35k, 10k, 3.5k,
    1k images).
    """
    with_paper = with_paper and objective == "bbox_AP"
    done = completed(df)
    cols = ["model", "init", "data_fraction", "train_images", f"test_{objective}", objective, "trial_id"]
    if done.empty:
        return pd.DataFrame(columns=cols + (["paper_bbox_AP"] if with_paper else []))
    best = ranked(done, objective).groupby(["model", "init", "data_fraction"]).head(1)
    out = best[cols].sort_values(["model", "init", "train_images"]).reset_index(drop=True)
    if with_paper:
        # Sec. 5.2's subsets were scored on bbox AP only.
        out["paper_bbox_AP"] = [
            DATA_FRACTION_BBOX_AP[int(n)][0 if init == "pretrained" else 1] / 100.0
            if model == "r50" and int(n) in DATA_FRACTION_BBOX_AP
            else np.nan
            for model, init, n in zip(out["model"], out["init"], out["train_images"])
        ]
    return out


TABLE2_KEYS = ("bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_AP75")
# The schedule of each Table 2 row: Table 1's 6x, except R101 pretrained's 42.3 (its 3x and 4x).
TABLE2_SCHEDULE = {
    ("r50", "scratch"): 6.0,
    ("r50", "pretrained"): 6.0,
    ("r101", "scratch"): 6.0,
    ("r101", "pretrained"): 3.0,
}


def table2(df: pd.DataFrame, recipes: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """Paper Table 2: each (model, init)'s recipe at the schedule of the paper's row, six metrics.

    The paper's rows are each init's recipe at 6x (R101 pretrained: 3x/4x); here the same
    recipe (``recipes``: arm -> lr, wd) at the same schedule (its longest where the study
    has not scored that one), on all of train2017, mean over seeds, with its test-split
    metrics beside the paper's (as fractions; val2017, the COCO presets' test split). Only
    models the paper has (r50, r101).
    """
    done = completed(df)
    cols = ["model", "init", "schedule", *(f"test_{k}" for k in TABLE2_KEYS), *(f"paper_{k}" for k in TABLE2_KEYS)]
    if done.empty or not recipes:
        return pd.DataFrame(columns=cols)
    in_paper = np.array([(model, init) in TABLE2 for model, init in zip(done["model"], done["init"])])
    done = done[(done["data_fraction"] == 1.0) & in_paper]
    rows = []
    for (model, init), group in done.groupby(["model", "init"], sort=True):
        arm = group["arm"].iloc[0]
        if arm not in recipes:
            continue
        lr, wd = recipes[arm]
        mine = group[np.isclose(group["lr"], lr, rtol=1e-9) & np.isclose(group["weight_decay"], wd, rtol=1e-9)]
        if mine.empty:
            continue
        wanted = TABLE2_SCHEDULE[(model, init)]
        schedule = wanted if (mine["schedule"] == wanted).any() else float(mine["schedule"].max())
        at = mine[mine["schedule"] == schedule]
        paper = TABLE2[(model, init)]
        rows.append(
            {
                "model": model,
                "init": init,
                "schedule": schedule,
                **{f"test_{k}": at[f"test_{k}"].mean() for k in TABLE2_KEYS},
                **{f"paper_{k}": v / 100.0 for k, v in zip(TABLE2_KEYS, paper)},
            }
        )
    return pd.DataFrame(rows, columns=cols)


def budget(df: pd.DataFrame) -> pd.DataFrame:
    """Trials by status, schedules scored, iterations computed (trunks and branches) and
    worker-hours spent, per arm."""
    last = trial_rows(df)
    cols = ["arm", "trials", *TRIAL_STATUSES, "schedule_results", "iterations", "images", "worker_hours"]
    if last.empty:
        return pd.DataFrame(columns=cols)
    scored = completed(df).groupby("arm").size()
    rows = []
    for arm, group in last.groupby("arm", sort=True):
        status = group["trial_status"].value_counts()
        rows.append(
            {
                "arm": arm,
                "trials": len(group),
                **{s: int(status.get(s, 0)) for s in TRIAL_STATUSES},
                "schedule_results": int(scored.get(arm, 0)),
                "iterations": int(group["cost_iterations"].sum()),
                "images": int(group["cost_images"].sum()),
                "worker_hours": float((group["wall_time_s"].fillna(0) * group["num_workers"]).sum() / 3600),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def boundary_warnings(
    df: pd.DataFrame,
    ranges: dict[str, dict[str, tuple[float, float]]],
    objective: str = "bbox_AP",
    tolerance: float = 0.1,
) -> list[str]:
    """Warnings where an arm's best trial sits at the edge of a searched (log) range.

    ``ranges``: arm -> {"lr": (low, high), "weight_decay": (low, high)}. "At the edge" means
    within ``tolerance`` of the range's width on a log scale (tuning playbook: a best point
    near the boundary means the range should be widened).
    """
    final = completed(df)
    warnings = []
    if final.empty:
        return warnings
    for arm, group in final.groupby("arm", sort=True):
        if arm not in ranges or group[objective].isna().all():
            continue
        best = best_row(group, objective)
        for name, (low, high) in ranges[arm].items():
            value = float(best[name])
            span = np.log(high) - np.log(low)
            if span <= 0:
                continue
            pos = (np.log(value) - np.log(low)) / span
            if pos <= tolerance or pos >= 1 - tolerance:
                side = "low" if pos <= tolerance else "high"
                warnings.append(
                    f"{arm}: the best trial's {name}={value:.3g} is at the {side} edge of the searched "
                    f"range [{low:.3g}, {high:.3g}]; widen the range on that side"
                )
    return warnings
