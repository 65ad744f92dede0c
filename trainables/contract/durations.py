"""Seconds as the progress lines of a trial (trainables/engine/progress.py) and of the study
(study/hpo/study_progress.py) print them: one format for both. Pure; imports nothing."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """12s, 4m05s, 3h07m, 2d04h."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
