"""Where the dry run's seconds per iteration come from: every figure a COCO preset uses, with
whether it was measured (by which benchmark, on which card, when), cited (from which page) or
derived from other figures (how).

The presets take their ``seconds_per_iteration`` from these tables; the dry run prints each
figure's provenance beside its GPU-hours (:func:`provenance`), and a figure set for one study
(``--set seconds_per_iteration.A100=S`` or a config file) says so.
"""

from __future__ import annotations

from dataclasses import dataclass

MEASURED, CITED, DERIVED = "measured", "cited", "derived"

# torchvision's detection reference speeds (docs, models/detection, 8 V100): Keypoint R-CNN
# R50-FPN trains at 0.3789 s/it and tests at 0.1242 s/it, Mask R-CNN at 0.2728 and 0.0903.
KEYPOINT_TRAIN_COST = 0.3789 / 0.2728
KEYPOINT_TEST_COST = 0.1242 / 0.0903


@dataclass(frozen=True)
class StepTime:
    """Seconds per iteration of a preset's whole step (all its GPUs), and where it comes from."""

    seconds: float
    kind: str  # MEASURED, CITED or DERIVED
    source: str

    def __post_init__(self) -> None:
        if self.kind not in (MEASURED, CITED, DERIVED):
            raise ValueError(f"StepTime.kind={self.kind!r}: expected {MEASURED}, {CITED} or {DERIVED}")


# coco-r50-gn: R50-FPN, GroupNorm everywhere, 4conv1fc, from scratch; 16 images on 8 GPUs.
R50_GN = {
    "V100": StepTime(0.338, CITED, "detectron2 MODEL_ZOO.md, Misc/scratch_mask_rcnn_R_50_FPN_3x_gn, 8 V100"),
    "P100": StepTime(1.087, CITED, "Detectron projects/GN README, R-50-FPN GN scratch 3x, 8 P100"),
    "H200": StepTime(
        0.086,
        MEASURED,
        "benchmarks/gpu_step.py on 1 H200, 2026-11-26: 23.2 images/s, AMP, 2 images per GPU "
        "(the bare step: no trial loop, no 8-GPU all-reduce, so a lower bound)",
    ),
}
# coco-r101-gn: the same at R101.
R101_GN = {
    "P100": StepTime(1.243, CITED, "Detectron projects/GN README, R-101-FPN GN scratch 3x, 8 P100"),
    "V100": StepTime(
        round(0.338 * 1.243 / 1.087, 3),
        DERIVED,
        "coco-r50-gn's V100 figure x 1.243/1.087 (Detectron's R101/R50 GN on P100; no published R101 GN "
        "scratch speed on V100)",
    ),
}
# coco-r50-syncbn.
R50_SYNCBN = {"V100": StepTime(0.345, CITED, "detectron2 MODEL_ZOO.md, mask_rcnn_R_50_FPN_3x_syncbn, 8 V100")}
# coco-r50-gn-keypoints: coco-r50-gn's figures at the keypoint model's cost.
R50_GN_KEYPOINTS = {
    gpu: StepTime(
        round(t.seconds * KEYPOINT_TRAIN_COST, 3),
        DERIVED,
        f"coco-r50-gn's {gpu} figure x {KEYPOINT_TRAIN_COST:.3f} (torchvision's Keypoint / Mask R-CNN "
        "R50-FPN training times)",
    )
    for gpu, t in R50_GN.items()
}
TABLES = (R50_GN, R101_GN, R50_SYNCBN, R50_GN_KEYPOINTS)


def seconds(table: dict[str, StepTime]) -> dict[str, float]:
    """A table as a preset's ``seconds_per_iteration``."""
    return {gpu: t.seconds for gpu, t in table.items()}


def provenance(gpu: str, seconds_per_iteration: float) -> str:
    """ "measured: ...", "cited: ...", "derived: ..." for a figure of these tables, else what
    a figure without a recorded source is."""
    for table in TABLES:
        t = table.get(gpu)
        if t is not None and t.seconds == seconds_per_iteration:
            return f"{t.kind}: {t.source}"
    return "set for this study (--set or a config file; no source recorded)"
