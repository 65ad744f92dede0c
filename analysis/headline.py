"""The verdict in words: per (model, data fraction), the primary reading (each init's recipe
against the other's, the paper's design) and the secondary one (each init's best of the
search, on fresh seeds), each with both inits' plateau beside it.

"Behind, scratch still rising" is a statement about the budget, "behind, both plateaued"
one about the question: the headline says which (analysis/stats/verdict.py has the tests).
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.stats.replicates import BEST, MISSING, READINGS, RECIPE
from analysis.stats.verdict import (
    INCONCLUSIVE,
    NO_SPREAD,
    NO_WORSE,
    PLATEAUED,
    RISING,
    TOO_FEW,
    WORSE,
    Change,
    describe_change,
    paired_change,
)

LABEL = {
    RECIPE: "Primary: recipe against recipe (the paper's design)",
    BEST: "Secondary: best of the search against best, on fresh seeds",
}
CONDITIONAL = "intervals over seeds, conditional on this test set"


def plateaus(rows: pd.DataFrame, model: str, fraction: float, reading: str, margin: float) -> dict[str, Change]:
    """Each init's change between its two longest schedules, paired by seed (both scored on
    one trunk); inits with fewer than two schedules are left out."""
    out = {}
    mine = rows[
        (rows["model"] == model)
        & (rows["data_fraction"] == fraction)
        & (rows["reading"] == reading)
        & (rows["status"] != MISSING)
    ]
    for init in ("pretrained", "scratch"):
        own = mine[mine["init"] == init]
        schedules = sorted(own["schedule"].unique())
        if len(schedules) < 2:
            continue
        start, end = schedules[-2:]
        wide = own[own["schedule"].isin([start, end])].pivot_table(index="seed", columns="schedule", values="value")
        changes = (wide[end] - wide[start]).dropna().to_numpy(float)
        out[init] = paired_change(init, float(start), float(end), changes, margin)
    return out


def seeds_text(gap: pd.Series) -> str:
    """How many seeds per init would settle an inconclusive reading."""
    zero = f"about {gap['seeds_if_zero']:.0f} seeds per init would show it with 80% power if the true gap were 0"
    if math.isinf(gap["seeds_if_observed"]):
        return f"{zero}; at the observed gap ({gap['delta']:+.3f}, beyond -{gap['margin']:g}) no number of seeds could"
    return f"{zero}, about {gap['seeds_if_observed']:.0f} at the observed gap ({gap['delta']:+.3f})"


def schedule_line(gap: pd.Series) -> str:
    """One schedule's reading with the numbers behind it."""
    where = f"{gap['reading']}, {gap['schedule']:g}x"
    seeds = f"{gap['scratch_seeds']} vs {gap['pretrained_seeds']} seeds"
    marks = _marks(gap)
    if gap["verdict"] == TOO_FEW:
        return f"{where}: no verdict, too few seeds for an interval ({seeds}; at least 2 per init){marks}"
    if gap["verdict"] == NO_SPREAD:
        return (
            f"{where}: no verdict, no spread measured: every seed of each init scored alike "
            f"(scratch {gap['scratch_mean']:.3f}, pretrained {gap['pretrained_mean']:.3f}; {seeds}), so the "
            f"interval would have zero width; add seeds{marks}"
        )
    what = {
        NO_WORSE: "scratch is no worse than pretrained",
        WORSE: "scratch is worse than pretrained",
        INCONCLUSIVE: "inconclusive",
    }[gap["verdict"]]
    beside = [
        "equivalent" if gap["equivalent"] else "not shown equivalent",
        f"scratch {gap['difference']}" if gap["difference"] else "no significant difference",
    ]
    numbers = (
        f"Δ = {gap['delta']:+.3f}, 90% CI [{gap['low90']:+.3f}, {gap['high90']:+.3f}] against -{gap['margin']:g} "
        f"(one-sided p = {gap['p_no_worse']:.3f} for no worse, {gap['p_worse']:.3f} for worse), 95% CI "
        f"[{gap['low95']:+.3f}, {gap['high95']:+.3f}]; {seeds}"
    )
    settle = f"; {seeds_text(gap)}" if gap["verdict"] == INCONCLUSIVE else ""
    return f"{where}: **{what}** ({', '.join(beside)}): {numbers}{settle}{marks}"


def _marks(gap: pd.Series) -> str:
    """Diverged and missing seeds, never dropped silently."""
    marks = []
    for init in ("scratch", "pretrained"):
        n, diverged, missing = gap[f"{init}_seeds"], gap[f"{init}_diverged"], gap[f"{init}_missing"]
        if diverged:
            marks.append(f"{diverged} of {n} {init} seeds diverged and entered at AP 0")
        if missing:
            marks.append(f"{missing} {init} seed(s) without a result (failed or still running), left out")
    return f" [{'; '.join(marks)}]" if marks else ""


def claim(group: pd.DataFrame) -> str:
    """The paper's claim for one reading's schedules: from which schedule on scratch is no
    worse, or what the longest schedule says."""
    group = group.sort_values("schedule")
    verdicts = list(group["verdict"])
    longest = group.iloc[-1]
    margin = f"margin {longest['margin']:g}"
    if verdicts[-1] == NO_WORSE:
        first = len(verdicts)
        while first > 0 and verdicts[first - 1] == NO_WORSE:
            first -= 1
        schedule = group["schedule"].iloc[first]
        if first == len(verdicts) - 1:
            return f"at {schedule:g}x, the longest schedule, scratch is no worse than pretrained ({margin})"
        return f"from {schedule:g}x on, scratch is no worse than pretrained ({margin})"
    at = f"at {longest['schedule']:g}x, the longest schedule"
    if verdicts[-1] == WORSE:
        return f"{at}, scratch is worse than pretrained ({margin})"
    if verdicts[-1] == INCONCLUSIVE:
        return f"{at}, whether scratch is no worse than pretrained ({margin}) is inconclusive: {seeds_text(longest)}"
    why = "no spread measured" if verdicts[-1] == NO_SPREAD else "too few seeds"
    return f"{at}, no verdict ({why})"


def budget(verdict: str, changes: dict[str, Change]) -> str:
    """Whether the answer is about the question or about this budget."""
    scratch, pretrained = changes.get("scratch"), changes.get("pretrained")
    notes = []
    open_question = verdict in (WORSE, INCONCLUSIVE)
    if open_question and scratch is not None and scratch.reading == RISING:
        notes.append(
            f"at this budget: scratch is still rising, {scratch.per_doubling:+.3f} per doubling of the schedule"
        )
    elif open_question and scratch is not None and scratch.reading == PLATEAUED:
        if pretrained is not None and pretrained.reading == PLATEAUED:
            notes.append("both inits have plateaued")
        else:
            notes.append("scratch has plateaued")
    if pretrained is not None and pretrained.reading == RISING:
        notes.append("pretrained is still rising too, so neither has reached its own end")
    if scratch is None or pretrained is None:
        notes.append("a plateau needs two schedules per init")
    return "; ".join(notes)


def headline(gaps: pd.DataFrame, rows: pd.DataFrame) -> list[str]:
    """One line per (model, data fraction, reading), the primary reading first."""
    lines = []
    for (model, fraction), pair in gaps.groupby(["model", "data_fraction"], sort=True):
        for reading in READINGS:
            group = pair[pair["reading"] == reading]
            if group.empty:
                continue
            margin = float(group["margin"].iloc[0])
            changes = plateaus(rows, model, fraction, reading, margin)
            words = claim(group)
            note = budget(group.sort_values("schedule")["verdict"].iloc[-1], changes)
            per = ", ".join(f"{v} at {s:g}x" for s, v in zip(group["schedule"], group["verdict"]))
            plateau = "; ".join(describe_change(c) for c in changes.values())
            lines.append(
                f"{LABEL[reading]}. {model}, data fraction {fraction:g}: {words}"
                + (f" ({note})" if note else "")
                + f". Per schedule: {per}. "
                + (f"Plateaus (paired by seed, against ±{margin:g}): {plateau}. " if plateau else "")
                + f"({CONDITIONAL}.)"
            )
    return lines


def summary_table(gaps: pd.DataFrame) -> pd.DataFrame:
    """One line per (model, data fraction, reading, schedule): each init's mean ± std
    (seeds), Δ, its intervals, the primary reading and what stands beside it."""
    from analysis.stats.replicates import seeds_cell

    cols = [
        "model",
        "data_fraction",
        "reading",
        "schedule",
        "scratch",
        "pretrained",
        "delta_AP",
        "90% CI of delta",
        "95% CI of delta",
        "margin",
        "verdict",
        "beside",
        "seeds needed (true gap 0 / observed)",
    ]
    out = []
    for g in gaps.itertuples():
        decided = not math.isnan(g.low90)
        needed = "–"
        if g.verdict == INCONCLUSIVE:
            observed = "unreachable" if math.isinf(g.seeds_if_observed) else f"{g.seeds_if_observed:.0f}"
            needed = f"{g.seeds_if_zero:.0f} / {observed}"
        beside = "–"
        if decided:
            beside = ("equivalent" if g.equivalent else "not equivalent") + (
                f", scratch {g.difference}" if g.difference else ""
            )
        out.append(
            (
                g.model,
                g.data_fraction,
                g.reading,
                g.schedule,
                seeds_cell(g.scratch_seeds, g.scratch_mean, g.scratch_std, g.scratch_diverged),
                seeds_cell(g.pretrained_seeds, g.pretrained_mean, g.pretrained_std, g.pretrained_diverged),
                g.delta,
                f"[{g.low90:+.3f}, {g.high90:+.3f}]" if decided else "–",
                f"[{g.low95:+.3f}, {g.high95:+.3f}]" if decided else "–",
                f"-{g.margin:g}",
                g.verdict,
                beside,
                needed,
            )
        )
    return pd.DataFrame(out, columns=cols)
