"""The per-arm table printed at the end of a study (and on demand)."""

from __future__ import annotations

import pandas as pd

from analysis.results import best_row, final_rows, trial_rows
from trainables.contract.rows import COMPLETED, DIVERGED, FAILED, STOPPED


def best_per_arm(df: pd.DataFrame, objective: str = "bbox_AP") -> pd.DataFrame:
    """For each arm, its best schedule result on the search split (completed first), its
    test-split AP (NaN without a test split), and how its trials ended."""
    if df.empty:
        return pd.DataFrame()
    final = final_rows(df)
    last = trial_rows(df)
    rows = []
    for arm, trials in last.groupby("arm", sort=True):
        group = final[final["arm"] == arm]
        done = group[group["status"] == COMPLETED]
        pool = done if not done.empty else group if not group.empty else trials
        best = best_row(pool, objective)
        counts = trials["trial_status"].value_counts()
        rows.append(
            {
                "arm": arm,
                "trial_id": best["trial_id"],
                "status": best["status"],
                "test_bbox_AP": best.get("test_bbox_AP"),
                "test_segm_AP": best.get("test_segm_AP"),
                "bbox_AP": best["bbox_AP"],
                "segm_AP": best["segm_AP"],
                "test_keypoints_AP": best.get("test_keypoints_AP"),
                "keypoints_AP": best.get("keypoints_AP"),
                "lr": best["lr"],
                "weight_decay": best["weight_decay"],
                "schedule": best["schedule"],
                "iterations": best["iteration"],
                "trials": len(trials),
                "schedule_results": len(done),
                "stopped": int(counts.get(STOPPED, 0)),
                "diverged": int(counts.get(DIVERGED, 0)),
                "failed": int(counts.get(FAILED, 0)),
            }
        )
    return pd.DataFrame(rows)


def format_summary(table: pd.DataFrame) -> str:
    if table.empty:
        return "no evaluation rows yet"
    # A keypoint task's keypoint AP beside box and mask AP, on both splits.
    keys = ["bbox_AP", "segm_AP"] + (["keypoints_AP"] if table["keypoints_AP"].notna().any() else [])
    names = " ".join(f"{k.replace('_AP', ' AP').replace('keypoints', 'kp'):>8}" for k in keys)
    width = 9 * len(keys) - 1
    lines = [
        f"{'':<26} {'test split':^{width}} {'search split':^{width}}",
        f"{'arm':<26} {names} {names} {'lr':>9} {'wd':>9} {'sched':>6} "
        f"{'trials':>6} {'results':>7} {'stopped':>7} {'diverged':>8}  best trial",
    ]
    for r in table.itertuples():
        scores = " ".join(_ap(getattr(r, f"test_{k}")) for k in keys) + " " + " ".join(_ap(getattr(r, k)) for k in keys)
        lines.append(
            f"{r.arm:<26} {scores} "
            f"{r.lr:>9.4g} {r.weight_decay:>9.2g} "
            f"{r.schedule:>5g}x {r.trials:>6} {r.schedule_results:>7} {r.stopped:>7} {r.diverged:>8}  "
            f"{r.trial_id} ({r.status})"
        )
    return "\n".join(lines)


def _ap(value) -> str:
    return f"{'–':>8}" if value is None or pd.isna(value) else f"{value:>8.3f}"
