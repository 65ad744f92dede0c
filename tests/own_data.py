"""A COCO-format dataset the generator did not make, as a team's own would come: sparse
category ids, grayscale and empty images, file names in subfolders, an annotation with a
box under a pixel, and a test split of its own (10 images)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

CATEGORIES = [{"id": 3, "name": "washer"}, {"id": 7, "name": "bolt"}, {"id": 42, "name": "gear"}]
COLOURS = {3: (220, 40, 40), 7: (40, 200, 60), 42: (40, 80, 230)}


def _image(rng: np.random.Generator, image_id: int, grey: bool) -> tuple[Image.Image, list[dict]]:
    """Noise with 0-3 filled rectangles, each of one category's colour."""
    w, h = int(rng.integers(80, 113)), int(rng.integers(80, 113))
    pixels = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    anns = []
    for k in range(int(rng.integers(1, 4))):
        cat = CATEGORIES[int(rng.integers(0, 3))]["id"]
        bw, bh = int(rng.integers(16, 36)), int(rng.integers(16, 36))
        x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        pixels[y : y + bh, x : x + bw] = COLOURS[cat]
        poly = [x, y, x + bw, y, x + bw, y + bh, x, y + bh]
        anns.append(
            {
                "id": image_id * 10 + k,
                "image_id": image_id,
                "category_id": cat,
                "iscrowd": 0,
                "area": float(bw * bh),
                "bbox": [float(x), float(y), float(bw), float(bh)],
                "segmentation": [[float(v) for v in poly]],
            }
        )
    img = Image.fromarray(pixels)
    return (img.convert("L") if grey else img), anns


def write_own_dataset(root: Path, train: int = 26, test: int = 10) -> dict[str, str]:
    """Write ``root/images/{site_a,site_b}/...`` with ``root/annotations/{train,test}.json``;
    returns the config's data keys. Of the training images, two hold no annotation and one
    holds a sub-pixel box beside its objects; every fourth image is grayscale."""
    rng = np.random.default_rng(7)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    paths = {}
    next_id = 101  # sparse image ids too
    for split, count in (("train", train), ("test", test)):
        images, anns = [], []
        for i in range(count):
            image_id, next_id = next_id, next_id + 3
            img, objects = _image(rng, image_id, grey=i % 4 == 3)
            if split == "train" and i in (5, 17):
                objects = []  # an empty image: listed, never trained on
            if split == "train" and i == 9:
                degenerate = {**objects[0], "id": image_id * 10 + 9, "bbox": [4.0, 4.0, 0.5, 12.0], "area": 6.0}
                objects.append(degenerate)
            name = f"{split}/site_{'ab'[i % 2]}/frame_{image_id:05d}.jpg"
            (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
            img.save(root / "images" / name, quality=90)
            images.append({"id": image_id, "file_name": name, "width": img.width, "height": img.height})
            anns += objects
        blob = {"images": images, "annotations": anns, "categories": CATEGORIES}
        (root / "annotations" / f"{split}.json").write_text(json.dumps(blob))
        paths[f"{split}_images"] = str(root / "images")
        paths[f"{split}_annotations"] = str(root / "annotations" / f"{split}.json")
    return paths
