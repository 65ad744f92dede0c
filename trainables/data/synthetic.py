"""The embedded default data: a generated COCO-format instance-segmentation dataset.

Three splits (training, search and test), each JPEG images plus
``annotations/instances_{split}.json`` shaped exactly like COCO's: polygon segmentations for
whole polygonal objects, compressed RLE for occluded or holed ones, uncompressed-RLE crowd
regions, xywh boxes, areas, and category ids that are not contiguous. Objects vary in
shape, size, colour, texture and overlap over a cluttered background. Generation is
deterministic in :class:`SyntheticSpec` and cached under a folder keyed by it, so every
process (and every node) gets the same dataset.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from trainables.contract.storage import cache_dir, spec_key
from trainables.contract.trial_config import SyntheticSpec
from trainables.data import shapes

# Bump when the generator changes what it draws, so old caches are not reused.
GENERATOR_VERSION = 2

# Non-contiguous ids on purpose: COCO's 80 classes use ids 1..90 with gaps, and a remapping
# bug there gives AP 0 (open-mmlab/mmdetection#2361); the generated data catches it too.
CATEGORIES = (
    {"id": 3, "name": "disc", "supercategory": "round"},
    {"id": 7, "name": "square", "supercategory": "polygon"},
    {"id": 12, "name": "triangle", "supercategory": "polygon"},
    {"id": 25, "name": "ring", "supercategory": "round"},
    {"id": 40, "name": "cross", "supercategory": "polygon"},
)
# The keypoint task's one category, shaped like COCO's person in person_keypoints_*.json:
# named keypoints and a skeleton (1-based), plus each keypoint's OKS sigma, which COCO keeps
# in its evaluator (the corners are as sharp as COCO's wrists, 0.062; the centre, inside
# the object, is looser, like COCO's hips, 0.107). Evaluation reads them from here.
KITE = {
    "id": 1,
    "name": "kite",
    "supercategory": "keypoint",
    "keypoints": list(shapes.KITE_KEYPOINTS),
    "skeleton": [[1, 2], [1, 3], [2, 3]],
    "keypoint_sigmas": [0.06, 0.06, 0.06, 0.1],
}
# Image ids of the search and test splits start here, so no id is in two splits.
SEARCH_ID_OFFSET = 1_000_000
TEST_ID_OFFSET = 2_000_000
# Probability that an image holds a crowd region (a cluster of tiny discs, iscrowd=1).
CROWD_PROB = 0.15


@dataclasses.dataclass(frozen=True)
class DatasetPaths:
    root: Path
    train_images: Path
    train_annotations: Path
    search_images: Path
    search_annotations: Path
    test_images: Path
    test_annotations: Path


def dataset_paths(root: Path) -> DatasetPaths:
    return DatasetPaths(
        root,
        root / "train",
        root / "annotations" / "instances_train.json",
        root / "search",
        root / "annotations" / "instances_search.json",
        root / "test",
        root / "annotations" / "instances_test.json",
    )


def ensure_dataset(spec: SyntheticSpec, root: Path | None = None) -> DatasetPaths:
    """Generate the dataset for ``spec`` unless it is cached; return its paths.

    Safe under concurrency: each process generates into a private folder and renames it
    into place; the loser of a race discards its copy.
    """
    base = root or cache_dir()
    final = base / f"synthetic-{spec_key(dataclasses.asdict(spec), GENERATOR_VERSION)}"
    if not final.exists():
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=base))
        try:
            generate(spec, tmp)
            try:
                os.rename(tmp, final)
            except OSError:  # another process finished first
                if not final.exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dataset_paths(final)


def generate(spec: SyntheticSpec, root: Path) -> DatasetPaths:
    """Write the three splits under ``root`` (no caching)."""
    paths = dataset_paths(root)
    paths.train_annotations.parent.mkdir(parents=True, exist_ok=True)
    # Independent streams per split, so changing one split's size leaves the others unchanged
    # (and the test split, added last, left the training and search images as they were).
    train_rng, search_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(3))
    if spec.test_seed >= 0:
        # A test split drawn afresh, after every choice was made on the search split.
        test_rng = np.random.default_rng(np.random.SeedSequence((spec.seed, spec.test_seed)))
    for split_rng, images_dir, ann_file, count, offset in (
        (train_rng, paths.train_images, paths.train_annotations, spec.num_train, 1),
        (search_rng, paths.search_images, paths.search_annotations, spec.num_search, SEARCH_ID_OFFSET),
        (test_rng, paths.test_images, paths.test_annotations, spec.num_test, TEST_ID_OFFSET),
    ):
        images_dir.mkdir(parents=True, exist_ok=True)
        coco = _split(spec, split_rng, images_dir, count, offset)
        ann_file.write_text(json.dumps(coco))
    return paths


def _split(spec: SyntheticSpec, rng: np.random.Generator, images_dir: Path, count: int, first_id: int) -> dict:
    images, annotations = [], []
    for image_id in range(first_id, first_id + count):
        height = int(rng.integers(spec.min_side, spec.max_side + 1))
        width = int(rng.integers(spec.min_side, spec.max_side + 1))
        pixels, objects = _draw_image(spec, rng, height, width)
        file_name = f"{image_id:012d}.jpg"
        Image.fromarray(pixels).save(images_dir / file_name, quality=92)
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width, "license": 1})
        for obj in objects:
            annotations.append({"id": len(annotations) + first_id * 100, "image_id": image_id, **obj})
    return {
        "info": {"description": "rethink-pretraining generated COCO-format dataset", "version": str(GENERATOR_VERSION)},
        "licenses": [{"id": 1, "name": "generated", "url": ""}],
        "images": images,
        "annotations": annotations,
        "categories": [dict(KITE)] if spec.keypoints else [dict(c) for c in CATEGORIES[: spec.categories]],
    }


def _draw_image(spec: SyntheticSpec, rng: np.random.Generator, height: int, width: int):
    img = shapes.background(rng, height, width, clutter=spec.clutter)
    placed: list[dict] = []  # each: category, kind, full mask, visible mask, polygon, crowd
    n_objects = int(rng.integers(1, spec.max_objects + 1))
    short = min(height, width)
    for _ in range(n_objects):
        cat = KITE if spec.keypoints else CATEGORIES[int(rng.integers(spec.categories))]
        for _attempt in range(5):
            # Log-uniform radius: as many small as medium objects, as in COCO.
            r = float(np.exp(rng.uniform(np.log(spec.min_radius), np.log(spec.max_radius_frac * short))))
            cx, cy = rng.uniform(0.3 * r, width - 0.3 * r), rng.uniform(0.3 * r, height - 0.3 * r)
            angle = float(rng.uniform(0, 2 * np.pi))
            mask = _mask(cat["name"], height, width, cx, cy, r, angle)
            if mask.sum() >= 12 and _fits(mask, placed, spec.max_occlusion):
                inside = cx - r >= 0 and cy - r >= 0 and cx + r <= width - 1 and cy + r <= height - 1
                poly = shapes.outline(cat["name"], cx, cy, r, angle) if inside else None
                _place(placed, mask)
                placed.append(
                    {"category_id": cat["id"], "mask": mask, "visible": mask.copy(), "polygon": poly, "crowd": False}
                )
                if spec.keypoints:
                    placed[-1]["keypoints"] = shapes.kite_keypoints(cx, cy, r, angle)
                shapes.composite(img, mask, shapes.texture(rng, height, width, spec.textures))
                break
    if rng.random() < CROWD_PROB:
        mask = _crowd_mask(rng, height, width)
        if mask.sum() >= 12 and _fits(mask, placed, spec.max_occlusion):
            _place(placed, mask)
            placed.append(
                {
                    "category_id": KITE["id"] if spec.keypoints else CATEGORIES[0]["id"],
                    "mask": mask,
                    "visible": mask.copy(),
                    "polygon": None,
                    "crowd": True,
                    **({"keypoints": []} if spec.keypoints else {}),
                }
            )
            shapes.composite(img, mask, shapes.texture(rng, height, width, spec.textures))
    return shapes.to_uint8(img), [_annotation(p) for p in placed if p["visible"].any()]


def _mask(kind: str, height: int, width: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """The object's mask; polygons are rasterized by pycocotools, exactly as any COCO reader
    will rasterize the polygon annotation, so pixels, mask, area and box all agree."""
    outline = shapes.outline(kind, cx, cy, r, angle)
    if outline is None:
        return shapes.shape_mask(kind, height, width, cx, cy, r, angle)
    flat = [c for pt in outline for c in pt]
    return mask_utils.decode(mask_utils.frPyObjects([flat], height, width))[..., 0].astype(bool)


def _fits(mask: np.ndarray, placed: list[dict], max_occlusion: float) -> bool:
    return all((p["visible"] & ~mask).sum() >= (1 - max_occlusion) * p["mask"].sum() for p in placed)


def _place(placed: list[dict], mask: np.ndarray) -> None:
    for p in placed:
        p["visible"] &= ~mask
        if "keypoints" in p:  # what hides its keypoints: the objects placed after it
            p["covered"] = p["covered"] | mask if "covered" in p else mask.copy()


def _crowd_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    cx, cy = rng.uniform(10, width - 10), rng.uniform(10, height - 10)
    mask = np.zeros((height, width), dtype=bool)
    for _ in range(int(rng.integers(5, 11))):
        x, y = cx + rng.normal(0, 6), cy + rng.normal(0, 6)
        mask |= shapes.shape_mask("disc", height, width, x, y, float(rng.uniform(1.5, 3.0)), 0.0)
    return mask


def _annotation(p: dict) -> dict:
    visible = p["visible"]
    occluded = visible.sum() < p["mask"].sum()
    rle = mask_utils.encode(np.asfortranarray(visible.astype(np.uint8)))
    x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
    if p["crowd"]:
        # COCO stores crowd regions as uncompressed RLE: counts is a list of run lengths.
        segmentation = {"size": list(visible.shape), "counts": _uncompressed_counts(visible)}
    elif p["polygon"] is not None and not occluded:
        segmentation = [[round(c, 2) for pt in p["polygon"] for c in pt]]
    else:
        segmentation = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    out = {
        "category_id": p["category_id"],
        "segmentation": segmentation,
        "area": float(mask_utils.area(rle)),
        "bbox": [x, y, w, h],
        "iscrowd": int(p["crowd"]),
    }
    if "keypoints" in p:
        out.update(_keypoints(p["keypoints"], p.get("covered"), visible.shape))
    return out


def _keypoints(points: list[tuple[float, float]], covered: np.ndarray | None, shape: tuple[int, int]) -> dict:
    """COCO's keypoint fields: v = 1 where a later object hides the point, 2 where it shows,
    and 0 (with x = y = 0) outside the image; a crowd region has none labelled."""
    height, width = shape
    flat: list[float] = []
    for x, y in points:
        col, row = int(x), int(y)
        if 0 <= col < width and 0 <= row < height:
            hidden = covered is not None and covered[row, col]
            flat += [round(x, 2), round(y, 2), 1 if hidden else 2]
        else:
            flat += [0.0, 0.0, 0]
    flat += [0.0, 0.0, 0] * (len(KITE["keypoints"]) - len(points))
    return {"keypoints": flat, "num_keypoints": sum(v > 0 for v in flat[2::3])}


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    """Column-major run lengths starting with a run of zeros (COCO's uncompressed RLE)."""
    flat = mask.flatten(order="F").astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat[0] else runs
