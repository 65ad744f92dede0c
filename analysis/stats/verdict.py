"""The verdict's statistics: is scratch *no worse* than pretrained, over seeds?

The paper's claim is one-sided: from some schedule on, a model trained from scratch is no
worse than its ImageNet-pretrained counterpart (Table 1: R50 6x 41.3 against 41.1; R101 4x
at -0.5 is still called caught up). That is a non-inferiority claim against a margin δ
fixed before the run, so the primary reading is one one-sided test per schedule, on
Δ = mean(scratch) - mean(pretrained) over seeds (Welch's unequal-variance t, scipy):

- **no worse**: H0 Δ <= -δ is rejected at 5 % (the 90 % interval's lower bound lies above -δ);
- **worse**: H0 Δ >= -δ is rejected at 5 % (the 90 % interval's upper bound lies below -δ);
- **inconclusive** otherwise, with the seeds per init that would settle it.

Beside it, never instead of it: equivalence (both one-sided tests, Schuirmann 1987: the
90 % interval inside ±δ) and a difference either way (the 95 % interval excludes 0: scratch
ahead or behind). A difference that is not significant is never read as equality.

Two cases give no verdict at all: fewer than two seeds in an init (no interval), and no
spread in either init (every seed identical: the interval would have zero width, a firm
answer from a measurement that did not vary).

The intervals are of seed noise (model init, data order, generated pretraining), for the
one test set the study scores: conditional on it. Every seed of both inits is scored on
the same test images, so that set's own sampling noise is shared by both sides of Δ.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

# One-sided tests at 5 % each (the 90 % two-sided interval), and the ordinary 95 % interval
# for a difference (Schuirmann 1987; Lakens 2017, Social Psychological and Personality
# Science 8:355).
ALPHA = 0.05
# The power the seed counts aim at.
POWER = 0.8

NO_WORSE, WORSE, INCONCLUSIVE = "no worse", "worse", "inconclusive"
NO_SPREAD, TOO_FEW = "no spread measured", "too few seeds"
AHEAD, BEHIND = "ahead", "behind"
# A paired change between two schedules of one init.
PLATEAUED, RISING, FALLING = "plateaued", "still rising", "falling"


@dataclass(frozen=True)
class Gap:
    """One schedule's comparison of scratch with pretrained over seeds."""

    delta: float
    low95: float
    high95: float
    low90: float
    high90: float
    # One-sided p-values: of H0 Δ <= -δ (small: no worse) and of H0 Δ >= -δ (small: worse).
    p_no_worse: float
    p_worse: float
    margin: float
    reading: str  # NO_WORSE, WORSE, INCONCLUSIVE, NO_SPREAD or TOO_FEW
    equivalent: bool  # the 90 % interval inside ±δ
    difference: str  # AHEAD, BEHIND or "" (the 95 % interval holds 0)
    # Seeds per init for 80 % power to show "no worse" if the true gap were 0, and if it
    # were the observed one (inf: the observed gap lies at or beyond -δ, more seeds cannot
    # show "no worse"); nan where no spread was measured.
    seeds_if_zero: float
    seeds_if_observed: float

    @property
    def decided(self) -> bool:
        return self.reading in (NO_WORSE, WORSE)


def compare(scratch: np.ndarray, pretrained: np.ndarray, margin: float) -> Gap:
    """Non-inferiority of ``scratch`` against ``pretrained`` (one value per seed) at ``margin``."""
    from scipy import stats  # only the report needs it

    scratch, pretrained = np.asarray(scratch, float), np.asarray(pretrained, float)
    delta = float(scratch.mean() - pretrained.mean()) if len(scratch) and len(pretrained) else math.nan
    nan4 = (math.nan,) * 4
    if min(len(scratch), len(pretrained)) < 2:
        return Gap(delta, *nan4, math.nan, math.nan, margin, TOO_FEW, False, "", math.nan, math.nan)
    if _flat(scratch) and _flat(pretrained):
        return Gap(delta, *nan4, math.nan, math.nan, margin, NO_SPREAD, False, "", math.nan, math.nan)
    with warnings.catch_warnings():
        # Seeds that agree to the last digit on one side are fine for Welch (that side adds
        # no variance); scipy warns about it all the same.
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        test = stats.ttest_ind(scratch, pretrained, equal_var=False)
        ci95, ci90 = test.confidence_interval(1 - ALPHA), test.confidence_interval(1 - 2 * ALPHA)
        no_worse = stats.ttest_ind(scratch + margin, pretrained, equal_var=False, alternative="greater")
        worse = stats.ttest_ind(scratch + margin, pretrained, equal_var=False, alternative="less")
    low95, high95, low90, high90 = (float(v) for v in (ci95.low, ci95.high, ci90.low, ci90.high))
    p_no_worse, p_worse = float(no_worse.pvalue), float(worse.pvalue)
    if p_no_worse < ALPHA:
        reading = NO_WORSE
    elif p_worse < ALPHA:
        reading = WORSE
    else:
        reading = INCONCLUSIVE
    difference = AHEAD if low95 > 0 else BEHIND if high95 < 0 else ""
    sigma2 = (scratch.var(ddof=1) + pretrained.var(ddof=1)) / 2
    return Gap(
        delta,
        low95,
        high95,
        low90,
        high90,
        p_no_worse,
        p_worse,
        margin,
        reading,
        -margin < low90 and high90 < margin,
        difference,
        seeds_needed(sigma2, 0.0, margin),
        seeds_needed(sigma2, delta, margin),
    )


def _flat(values: np.ndarray) -> bool:
    """Every value alike, to float precision (sums of APs differ in the last bits)."""
    return bool(np.ptp(values) <= 1e-12 * max(1.0, float(np.abs(values).max())))


def seeds_needed(sigma2: float, true_gap: float, margin: float, limit: int = 10_000) -> float:
    """Seeds per init for ``POWER`` to reject H0 Δ <= -δ at one-sided ``ALPHA`` if the true
    gap were ``true_gap``, with seed variance ``sigma2`` in both inits.

    n = 2 σ² (t_{1-α, df} + t_{power, df})² / (Δ* + δ)², with Student's t quantiles at
    df = 2n - 2 (Welch with equal n and spreads), solved by counting up from 2. ``inf`` when
    Δ* <= -δ: more seeds only make "worse" surer. σ from three seeds per init is itself
    uncertain: its 90 % range is about x0.65 to x2.4 of the estimate (4 degrees of freedom),
    so the count is good to a factor of about 0.4 to 5.6.
    """
    from scipy import stats

    distance = true_gap + margin
    if distance <= 0:
        return math.inf
    if sigma2 == 0:
        return 2.0
    for n in range(2, limit + 1):
        df = 2 * n - 2
        z = stats.t.ppf(1 - ALPHA, df) + stats.t.ppf(POWER, df)
        if n >= 2 * sigma2 * z**2 / distance**2:
            return float(n)
    return math.inf


@dataclass(frozen=True)
class Change:
    """One init's change between two schedules, paired by seed along each seed's trunk."""

    init: str
    start: float  # schedule
    end: float
    change: float  # mean over seeds
    seeds: int
    low90: float
    high90: float
    reading: str  # PLATEAUED, RISING, FALLING, INCONCLUSIVE, NO_SPREAD or TOO_FEW

    @property
    def per_doubling(self) -> float:
        """The change scaled to a doubling of the schedule (log-linear between the two)."""
        return per_doubling(self.change, self.start, self.end)


def per_doubling(change: float, start: float, end: float) -> float:
    """A change from schedule ``start`` to ``end``, scaled to one doubling (log-linear)."""
    return change / math.log2(end / start)


def paired_change(init: str, start: float, end: float, changes: np.ndarray, margin: float) -> Change:
    """Whether one init has levelled off from ``start`` to ``end``: per-seed ``changes``
    (end - start on one trunk), their one-sample t intervals against ±``margin``.

    **plateaued** when the 90 % interval lies inside ±δ (equivalence of the change with 0:
    it gains less than the margin, the paper's own criterion for "caught up"), **still
    rising** / **falling** when the 95 % interval excludes 0 otherwise, else inconclusive.
    """
    from scipy import stats

    changes = np.asarray(changes, float)
    mean = float(changes.mean()) if len(changes) else math.nan
    if len(changes) < 2:
        return Change(init, start, end, mean, len(changes), math.nan, math.nan, TOO_FEW)
    if _flat(changes):
        return Change(init, start, end, mean, len(changes), mean, mean, NO_SPREAD)
    test = stats.ttest_1samp(changes, 0.0)
    ci95, ci90 = test.confidence_interval(1 - ALPHA), test.confidence_interval(1 - 2 * ALPHA)
    low90, high90 = float(ci90.low), float(ci90.high)
    if -margin < low90 and high90 < margin:
        reading = PLATEAUED
    elif ci95.low > 0:
        reading = RISING
    elif ci95.high < 0:
        reading = FALLING
    else:
        reading = INCONCLUSIVE
    return Change(init, start, end, mean, len(changes), low90, high90, reading)


def describe_change(change: Change) -> str:
    """``scratch 7x -> 8x: +0.068, 90% CI [+0.040, +0.096] over 3 seeds: still rising``."""
    head = f"{change.init} {change.start:g}x -> {change.end:g}x: {change.change:+.3f}"
    if change.reading == TOO_FEW:
        return f"{head} ({change.seeds} seed{'s' if change.seeds != 1 else ''}, no interval)"
    if change.reading == NO_SPREAD:
        return f"{head} over {change.seeds} seeds, every seed alike: no spread measured"
    return f"{head}, 90% CI [{change.low90:+.3f}, {change.high90:+.3f}] over {change.seeds} seeds: {change.reading}"
