"""Shared fixtures: a private cache, a COCO fixture with real COCO quirks, a one-process Session."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from trainables.runtime import Session


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Generated data and pretrained backbones go to a per-session cache, never ~/.cache."""
    path = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("RETHINK_CACHE", str(path))
    yield path
    mp.undo()


def _rle_counts(mask: np.ndarray) -> str:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("ascii")


def _uncompressed(mask: np.ndarray) -> list[int]:
    flat = mask.flatten(order="F").astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat[0] else runs


def write_coco_fixture(root: Path) -> dict:
    """A 4-image COCO-format split with COCO's quirks; returns the JSON dict.

    - category ids 1, 18 and 90 (gaps, the largest id COCO uses);
    - image 1: a polygon person and a two-part polygon dog (an occluded object);
    - image 2: a compressed-RLE object and a crowd region in uncompressed RLE;
    - image 3: no annotations at all; image 4: only a crowd region and a degenerate box.
    """
    root.mkdir(parents=True, exist_ok=True)
    h, w = 48, 64
    rng = np.random.default_rng(0)
    images = []
    for image_id in (1, 2, 3, 4):
        name = f"{image_id:012d}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / name)
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
    blob = np.zeros((h, w), bool)
    blob[10:30, 20:44] = True
    crowd = np.zeros((h, w), bool)
    crowd[30:40, 2:20] = True
    anns = [
        {
            "id": 11,
            "image_id": 1,
            "category_id": 1,
            "iscrowd": 0,
            "area": 200.0,
            "bbox": [5.0, 5.0, 10.0, 20.0],
            "segmentation": [[5, 5, 15, 5, 15, 25, 5, 25]],
        },
        {
            "id": 12,
            "image_id": 1,
            "category_id": 18,
            "iscrowd": 0,
            "area": 200.0,
            "bbox": [30.0, 10.0, 30.0, 20.0],
            "segmentation": [[30, 10, 40, 10, 40, 30, 30, 30], [50, 10, 60, 10, 60, 30, 50, 30]],
        },
        {
            "id": 21,
            "image_id": 2,
            "category_id": 90,
            "iscrowd": 0,
            "area": float(blob.sum()),
            "bbox": [20.0, 10.0, 24.0, 20.0],
            "segmentation": {"size": [h, w], "counts": _rle_counts(blob)},
        },
        {
            "id": 22,
            "image_id": 2,
            "category_id": 1,
            "iscrowd": 1,
            "area": float(crowd.sum()),
            "bbox": [2.0, 30.0, 18.0, 10.0],
            "segmentation": {"size": [h, w], "counts": _uncompressed(crowd)},
        },
        {
            "id": 41,
            "image_id": 4,
            "category_id": 1,
            "iscrowd": 1,
            "area": float(crowd.sum()),
            "bbox": [2.0, 30.0, 18.0, 10.0],
            "segmentation": {"size": [h, w], "counts": _uncompressed(crowd)},
        },
        {
            "id": 42,
            "image_id": 4,
            "category_id": 18,
            "iscrowd": 0,
            "area": 0.0,
            "bbox": [10.0, 10.0, 0.0, 5.0],
            "segmentation": [[10, 10, 10, 10, 10, 15]],
        },
    ]
    coco = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 90, "name": "toothbrush"}],
    }
    (root / "instances.json").write_text(json.dumps(coco))
    return coco


@pytest.fixture
def coco_fixture(tmp_path):
    root = tmp_path / "coco"
    coco = write_coco_fixture(root)
    return root, root / "instances.json", coco


class MemoryCheckpoints:
    """A one-process stand-in for Ray Train's report/get_checkpoint, kept in memory."""

    def __init__(self) -> None:
        self.state = None
        self.reports: list[dict] = []

    def session(self, log=lambda _m: None, hooks=()) -> Session:
        return Session(
            rank=0,
            world_size=1,
            device=torch.device("cpu"),
            report=self.report,
            load_checkpoint=lambda: copy.deepcopy(self.state),
            log=log,
            hooks=hooks,
        )

    def report(self, metrics: dict, state: dict | None) -> None:
        self.reports.append(metrics)
        if state is not None:
            self.state = copy.deepcopy(state)


@pytest.fixture
def s3_bucket(monkeypatch):
    """An S3 bucket on an in-process S3 server (moto's), for tests of s3:// results: pyarrow
    and boto reach it through AWS_ENDPOINT_URL. Yields the bucket's name."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3").create_bucket(Bucket="study-results")
    try:
        yield "study-results"
    finally:
        server.stop()
