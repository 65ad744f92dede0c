"""The non-inferiority margin of a comparison, scratch against pretrained: what "no worse"
allows, stated with its reason before a study runs (study/spec/study_config.py's presets set one per
comparison; analysis/stats/verdict.py tests against it). No imports of the study's other modules.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainables.contract.trial_config import _check


@dataclass(frozen=True)
class Margin:
    """The non-inferiority margin δ of one comparison, scratch against pretrained at one
    (model, data fraction): the largest gap scratch - pretrained that still counts as "no
    worse" (analysis/stats/verdict.py). A property of the question, fixed before the study runs and
    written to study.json before its first trial; ``reason`` says where it comes from.

    Absolute (``ap``), or relative: ``relative`` x ``reference`` (an AP fixed in advance, e.g.
    the paper's pretrained AP for the setting), which :func:`relative_margin` builds.
    """

    ap: float
    reason: str
    relative: float = 0.0
    reference: float = 0.0

    def __post_init__(self) -> None:
        _check(0 < self.ap < 1, "margin.ap", self.ap, "in (0, 1) AP")
        _check(bool(self.reason.strip()), "margin.reason", self.reason, "a reason for the margin")

    def describe(self) -> str:
        if self.relative:
            return f"{self.ap:.4g} AP ({self.relative:.3g} x {self.reference:.4g}): {self.reason}"
        return f"{self.ap:.4g} AP: {self.reason}"


def relative_margin(relative: float, reference: float, reason: str) -> Margin:
    """δ = ``relative`` x ``reference`` AP, both recorded."""
    return Margin(ap=round(relative * reference, 6), reason=reason, relative=relative, reference=reference)
