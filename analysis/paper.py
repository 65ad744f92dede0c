"""The paper's published numbers, as data (He, Girshick, Dollár 2019; Tables 1-2, Figs. 1-5).

Table 1: bbox AP on COCO val2017 of Mask R-CNN with GroupNorm, by schedule (N x 90k
iterations at 16 images). Table 2: the multi-metric rows (Table 1's 6x entries, except R101
pretrained, which equals its 3x/4x entry of 42.3). Sec. 5.2: the data-fraction results.
Sec. 5.1 ("multiple tasks and metrics"): COCO person keypoint AP. All values are AP in
percent, as printed in the paper.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas only where a frame is built: the presets import the numbers
    import pandas as pd

# (model, init) -> {schedule: bbox AP}
TABLE1_BBOX_AP: dict[tuple[str, str], dict[float, float]] = {
    ("r50", "scratch"): {2.0: 36.8, 3.0: 39.5, 4.0: 40.6, 5.0: 40.7, 6.0: 41.3},
    ("r50", "pretrained"): {2.0: 40.3, 3.0: 40.8, 4.0: 40.9, 5.0: 40.9, 6.0: 41.1},
    ("r101", "scratch"): {2.0: 38.2, 3.0: 41.0, 4.0: 41.8, 5.0: 42.2, 6.0: 42.7},
    ("r101", "pretrained"): {2.0: 41.8, 3.0: 42.3, 4.0: 42.3, 5.0: 41.9, 6.0: 42.2},
}

# (model, init) -> AP_bb, AP_bb50, AP_bb75, AP_mk, AP_mk50, AP_mk75
TABLE2 = {
    ("r50", "scratch"): (41.3, 61.8, 45.6, 36.6, 59.0, 38.9),
    ("r50", "pretrained"): (41.1, 61.7, 44.6, 36.4, 58.5, 38.7),
    ("r101", "scratch"): (42.7, 62.9, 47.0, 37.6, 59.9, 39.7),
    ("r101", "pretrained"): (42.3, 62.6, 46.2, 37.2, 59.7, 39.7),
}

# Sec. 5.2, R50 GN: training images -> (pretrained, scratch) best bbox AP. 1k scratch is
# 3.5 with the pretrained model's hyperparameters and 5.4 with its own grid search.
DATA_FRACTION_BBOX_AP: dict[int, tuple[float, float]] = {
    35_000: (36.3, 36.3),
    10_000: (26.0, 25.9),
    3_500: (16.0, 9.3),
    1_000: (9.9, 5.4),
}


# Sec. 5.1, Mask R-CNN R50-FPN GN on COCO person keypoints (val2017 keypoint AP): 2x is the
# one value the text prints; 3x is shown only in a figure, so it is left out.
KEYPOINT_AP: dict[tuple[str, str], dict[float, float]] = {
    ("r50", "scratch"): {2.0: 65.6},
    ("r50", "pretrained"): {2.0: 65.5},
}


def paper_frame(objective: str) -> pd.DataFrame:
    """The paper's AP by schedule for ``objective`` as a long frame (model, init, schedule,
    paper_AP, percent): Table 1 for bbox_AP, the keypoint AP for keypoints_AP; empty for
    others (the paper gives mask AP at 6x only, Table 2)."""
    import pandas as pd

    source = {"bbox_AP": TABLE1_BBOX_AP, "keypoints_AP": KEYPOINT_AP}.get(objective, {})
    rows = [
        {"model": m, "init": i, "schedule": s, "paper_AP": ap}
        for (m, i), by_schedule in source.items()
        for s, ap in by_schedule.items()
    ]
    return pd.DataFrame(rows, columns=["model", "init", "schedule", "paper_AP"])
