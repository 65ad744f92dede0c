"""What a study folder records beside its rows, as the report reads it: study.json (the
resolved configuration: recipes, search ranges, margins; trainables/contract/study_record.py reads
it), replicates.json (what the replicate phase chose) and subsets/ (the splits and each
fraction's training images).

A missing file gives an empty answer, never an error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.stats import regime
from trainables.contract.study_record import StudyRecord, read_record

REPLICATES_FILE = "replicates.json"
# The margin when study.json names none: the COCO presets' (study/spec/coco_presets.py).
DEFAULT_MARGIN = 0.005


def read_study(study_dir: str | os.PathLike) -> StudyRecord:
    """The study folder's study.json (an empty record when there is none)."""
    return read_record(str(study_dir), missing_ok=True)


def read_replicates(study_dir: str | os.PathLike) -> dict[str, Any]:
    """replicates.json's arms (arm -> trunk and configurations), {} when there is none."""
    path = Path(study_dir) / REPLICATES_FILE
    return json.loads(path.read_text()).get("arms", {}) if path.exists() else {}


def search_ranges(study: StudyRecord) -> dict[str, dict[str, tuple[float, float]]]:
    """arm -> its searched lr and weight-decay ranges (per-arm overrides applied)."""
    return study.search_ranges()


def recipes(study: StudyRecord) -> dict[str, tuple[float, float]]:
    """arm -> the recipe's (lr, weight_decay): study.json's arm configs carry it."""
    return study.recipes()


def margins(study: StudyRecord) -> tuple[Callable[[str, float], float], list[str]]:
    """The margin of each (model, data fraction) as study.json states it, and the notes on
    where it came from: its ``margins`` (one per comparison, written before the first
    trial), else the preset's single margin, else :data:`DEFAULT_MARGIN` (said so)."""
    listed = study.margins
    preset = study.preset
    notes = []
    fallback = (preset.get("margin") or {}).get("ap") or preset.get("equivalence_margin")
    if fallback is None:
        fallback = DEFAULT_MARGIN
        if not listed:
            notes.append(f"The study's non-inferiority margin is unknown (no study.json): {fallback:g} AP is assumed.")

    def margin(model: str, fraction: float) -> float:
        for m in listed:
            if m["model"] == model and abs(float(m["data_fraction"]) - float(fraction)) < 1e-9:
                return float(m["ap"])
        return float(fallback)

    return margin, notes


def margin_lines(study: StudyRecord) -> list[str]:
    """Each comparison's margin with its reason, as written before the study ran."""
    return [
        f"{m['model']}, data fraction {float(m['data_fraction']):g}: {float(m['ap']):g} AP — {m.get('reason', '')}"
        for m in study.margins
    ]


def split_notes(study_dir: Path) -> list[str]:
    """What the trials recorded about the search and test splits (subsets/splits-seed-*.json)."""
    lines = []
    for path in sorted((study_dir / "subsets").glob("splits-seed-*.json")):
        blob = json.loads(path.read_text())
        search, test = blob.get("search") or {}, blob.get("test")
        where = "held out of the training images" if search.get("held_out_of_training") else search.get("annotations")
        lines.append(
            f"search split: {search.get('images')} images ({where}); "
            + (f"test split: {test['images']} images ({test['annotations']})" if test else "no test split")
            + f"; ids in `subsets/{path.name}`"
        )
    return lines


def pretraining_lines(study_dir: Path) -> list[str]:
    """What each generated backbone was trained on and how far (pretraining/seed-*.json)."""
    lines = []
    for path in sorted((study_dir / "pretraining").glob("seed-*.json")):
        meta = json.loads(path.read_text())
        curve = ", ".join(f"{a:.3f}" for _, a in meta.get("accuracy_curve", []))
        lines.append(
            f"pretraining seed {meta['spec']['seed']}: {len(meta.get('classes', []))} classes "
            f"({', '.join(meta.get('classes', []))}), {meta['spec']['num_images']:,} distinct images, "
            f"{meta['images_seen']:,} seen; held-out accuracy {meta['accuracy']:.3f} (along the way: {curve}), "
            + ("levelled off" if meta.get("levelled_off") else "still rising")
            + " over the last quarter of its budget"
        )
    return lines


def test_images(study_dir: Path) -> int | None:
    """The test split's image count, where a trial recorded it."""
    for path in sorted((study_dir / "subsets").glob("splits-seed-*.json")):
        test = json.loads(path.read_text()).get("test")
        if test:
            return int(test["images"])
    return None


def regime_points(study: StudyRecord, df: pd.DataFrame, study_dir: Path) -> list[regime.Point]:
    """Each (model, data fraction)'s regime from what ran: training images (and instances,
    where the trials recorded them in subsets/), the pretraining the pretrained rows name,
    and the most images a scratch result was trained on."""
    if df.empty:
        return []
    instances = {}
    for path in (study_dir / "subsets").glob("fraction-*-seed-*.json"):
        blob = json.loads(path.read_text())
        if blob.get("train_instances") is not None:
            instances[round(float(blob["data_fraction"]), 9)] = int(blob["train_instances"])
    arms = study.arms
    points = []
    for (model, fraction), pair in df.groupby(["model", "data_fraction"], sort=True):
        pretrained = [a for a in arms.values() if a.get("init") == "pretrained" and a.get("model_name") == model]
        distinct = seen = None
        if pretrained and pretrained[0].get("pretrain"):
            distinct, seen = pretrained[0]["pretrain"].get("num_images"), pretrained[0].get("pretrain_images_seen")
        elif pretrained:
            distinct, seen = regime.IMAGENET_IMAGES, pretrained[0].get("pretrain_images_seen")
        scratch = pair[(pair["init"] == "scratch") & (pair["phase"] == "final")]
        points.append(
            regime.Point(
                f"{model}, data fraction {fraction:g}",
                int(pair["train_images"].max()),
                instances.get(round(float(fraction), 9)),
                distinct,
                int(seen) if seen else None,
                int(scratch["images_seen"].max()) if not scratch.empty else None,
                key=(str(model), float(fraction)),
            )
        )
    return points
