"""Did early rungs predict the late ones? Rank agreement between each schedule and the
longest, per arm, over the trials that reached the longest.

Early stopping judges a trial at a schedule's cooled-down result and stops the worse ones
before they train more trunk (study/hpo/scheduler.py). That is only as good as the ranking a
short schedule gives: on COCO a setting that helps only long scratch schedules looks worse
at 2x (36.8 AP in the paper against 41.3 at 6x, Table 1). Spearman's rank correlation
between each schedule's AP and the longest schedule's, over the completed trials, shows
whether it held in this study. It is measured on the trials that survived every rung, a
range already cut by the rule it checks: a low value is a warning, a high one is evidence
only about the survivors.
"""

from __future__ import annotations

import math
import warnings

import pandas as pd

from analysis.tables import completed

COLUMNS = ["arm", "schedule", "longest", "trials", "spearman", "p_value"]


def rank_agreement(df: pd.DataFrame, objective: str = "bbox_AP", seed: int | None = None) -> pd.DataFrame:
    """Per arm and shorter schedule: Spearman's ρ between the search-split ``objective`` at
    that schedule and at the arm's longest, over trials that scored both (and the study's
    ``seed`` only, if given: the search's own trials). ρ is nan below 3 trials."""
    from scipy import stats

    done = completed(df)
    if seed is not None and not done.empty:
        done = done[done["seed"] == seed]
    out = []
    for arm, group in done.groupby("arm", sort=True) if not done.empty else ():
        wide = group.pivot_table(index="trial_id", columns="schedule", values=objective, aggfunc="last")
        if wide.shape[1] < 2:
            continue
        longest = max(wide.columns)
        for schedule in sorted(wide.columns)[:-1]:
            both = wide[[schedule, longest]].dropna()
            rho = p = math.nan
            if len(both) >= 3:
                with warnings.catch_warnings():
                    # Constant input (every AP 0 at an early rung) has no rank order: nan.
                    warnings.simplefilter("ignore")
                    result = stats.spearmanr(both[schedule], both[longest])
                rho, p = float(result.statistic), float(result.pvalue)
            out.append((arm, float(schedule), float(longest), len(both), rho, p))
    return pd.DataFrame(out, columns=COLUMNS)
