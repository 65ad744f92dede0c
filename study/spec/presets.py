"""Named study presets, each a small delta on one base.

The local presets (study/spec/toy_presets.py: ``smoke``, ``toy``, ``toy-paper``, ...) run on a laptop
CPU with the generated data and the embedded pretraining; the COCO presets
(study/spec/coco_presets.py) follow the paper's protocol (He et al. 2019, Secs. 3-5). Derived
numbers are computed, never typed twice.
"""

from __future__ import annotations

from study.spec.coco_presets import (
    COCO_R50_GN,
    COCO_R50_GN_KEYPOINTS,
    COCO_R50_GN_SUBSETS,
    COCO_R50_GN_TIMM,
    COCO_R50_SYNCBN,
    COCO_R101_GN,
    OWN_DATA,
)
from study.spec.study_config import StudyConfig
from study.spec.toy_presets import (
    LOCAL_PRESETS,
    SMOKE,
    SMOKE_KEYPOINTS,
    TOY,
    TOY_KEYPOINTS,
    TOY_PAPER,
    TOY_REPLICATES,
)

PRESETS: dict[str, StudyConfig] = {
    p.name: p
    for p in (
        *LOCAL_PRESETS,
        COCO_R50_GN,
        COCO_R50_GN_TIMM,
        COCO_R101_GN,
        COCO_R50_SYNCBN,
        COCO_R50_GN_SUBSETS,
        COCO_R50_GN_KEYPOINTS,
        OWN_DATA,
    )
}


def get_preset(name: str) -> StudyConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; choose from: {', '.join(PRESETS)}") from None


__all__ = ["PRESETS", "get_preset", "SMOKE", "SMOKE_KEYPOINTS", "TOY", "TOY_KEYPOINTS", "TOY_PAPER", "TOY_REPLICATES"]
