"""Checks of a COCO-format dataset that need only ``json`` and ``os``.

The driver runs them before Ray starts (study/guards/preflight.py) and every trial's workers run
them again on the files they see (trainables/data/dataset.py), so a broken annotation file, an
unknown category id or a missing image is reported with the file and record it concerns,
never as a KeyError deep inside training. Nothing here imports torch or pycocotools.
"""

from __future__ import annotations

import json
import os
from typing import Any

from trainables.contract.errors import InputError, MissingInputError

REQUIRED = ("images", "annotations", "categories")


def read_coco_json(path: str, field: str | None = None) -> dict[str, Any]:
    """Parse a COCO-format annotation file and check its records refer to each other."""
    if not os.path.isfile(path):
        what = "a folder, not a file" if os.path.isdir(path) else "not found"
        raise MissingInputError(f"COCO annotation file {path} is {what}" + _named(field), field)
    try:
        with open(path, "rb") as f:
            blob = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path} is not valid JSON ({err}){_named(field)}", field) from None
    except OSError as err:
        raise InputError(f"{path} cannot be read ({err}){_named(field)}", field) from None
    check_coco(blob, path, field)
    return blob


def check_coco(blob: Any, path: str, field: str | None = None) -> None:
    """The three lists exist, ids are unique, and every annotation names a known image and category."""
    if not isinstance(blob, dict):
        raise InputError(
            f"{path} is not a COCO-format annotation file: the top level is a "
            f"{type(blob).__name__}, not an object{_named(field)}",
            field,
        )
    absent = [k for k in REQUIRED if not isinstance(blob.get(k), list)]
    if absent:
        raise InputError(
            f"{path} is not a COCO-format annotation file: no list '{absent[0]}' (it needs "
            f"{', '.join(REQUIRED)}){_named(field)}",
            field,
        )
    for key in ("images", "categories"):
        for record in blob[key]:
            _check_record(record, key, path, field)
    images = {img["id"] for img in blob["images"]}
    categories = {c["id"] for c in blob["categories"]}
    if len(images) != len(blob["images"]):
        raise InputError(f"{path}: image ids are not unique{_named(field)}", field)
    for ann in blob["annotations"]:  # one pass: COCO train2017 has 860k of them
        _check_record(ann, "annotations", path, field)
        box = ann["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            raise InputError(
                f"{path}: annotation {ann['id']} (image {ann['image_id']}) has bbox {box!r}, not "
                f"[x, y, width, height]{_named(field)}",
                field,
            )
        if ann["image_id"] not in images:
            raise InputError(
                f"{path}: annotation {ann['id']} refers to image {ann['image_id']}, which is not in "
                f"its images{_named(field)}",
                field,
            )
        if ann["category_id"] not in categories:
            raise InputError(
                f"{path}: annotation {ann['id']} (image {ann['image_id']}) has category_id "
                f"{ann['category_id']}, which is not in its categories "
                f"({', '.join(map(str, sorted(categories)[:10]))}{', ...' if len(categories) > 10 else ''})"
                f"{_named(field)}",
                field,
            )


_NEEDS = {
    "images": ("id", "file_name"),
    "categories": ("id",),
    "annotations": ("id", "image_id", "category_id", "bbox"),
}


def _check_record(record: Any, key: str, path: str, field: str | None) -> None:
    """A record of ``key`` has the fields COCO needs and an integer or string id."""
    lacking = [n for n in _NEEDS[key] if not isinstance(record, dict) or n not in record]
    if lacking:
        raise InputError(
            f"{path}: a record of '{key}' has no '{lacking[0]}': {str(record)[:200]}{_named(field)}", field
        )
    if not isinstance(record["id"], (int, str)) or isinstance(record["id"], bool):
        raise InputError(
            f"{path}: a record of '{key}' has id {record['id']!r}, not an integer or string{_named(field)}", field
        )


def check_same_categories(
    train: dict[str, Any], other_blob: dict[str, Any], train_path: str, other_path: str, field: str
) -> None:
    """A split scored against the trained model has the training file's categories."""
    ids = {c["id"]: c.get("name") for c in train["categories"]}
    other = {c["id"]: c.get("name") for c in other_blob["categories"]}
    if ids != other:
        diff = sorted(set(ids.items()) ^ set(other.items()), key=str)[:3]
        raise InputError(
            f"{train_path} and {other_path} have different categories (first differences: {diff}); "
            f"a model trained on one cannot be scored on the other{_named(field)}",
            field,
        )


def check_images_present(
    images_dir: str, images: list[dict[str, Any]], annotations: str, field: str | None = None, first: int | None = None
) -> None:
    """The folder exists and holds the listed files (all of them, or the ``first`` few).

    One directory listing per folder (file names may name subfolders): a few seconds for
    COCO's 118k images, where a stat per file on a network disk takes minutes.
    """
    if not os.path.isdir(images_dir):
        raise MissingInputError(f"image folder {images_dir} not found{_named(field)}", field)
    listed = images if first is None else images[:first]
    listings: dict[str, set[str]] = {}

    def present(file_name: str) -> bool:
        folder, name = os.path.split(os.path.join(images_dir, file_name))
        if folder not in listings:
            try:
                listings[folder] = set(os.listdir(folder))
            except FileNotFoundError:
                listings[folder] = set()
            except OSError as err:
                raise InputError(f"image folder {folder} cannot be read: {err}{_named(field)}", field) from None
        return name in listings[folder]

    missing = [img for img in listed if not present(img["file_name"])]
    if missing:
        img = missing[0]
        more = f" and {len(missing) - 1} more of the {len(listed)} checked" if len(missing) > 1 else ""
        raise MissingInputError(
            f"image {img['id']} listed in {annotations} is missing: "
            f"{os.path.join(images_dir, img['file_name'])}{more}{_named(field)}",
            field,
        )


def _named(field: str | None) -> str:
    return f" (set by {field})" if field else ""
