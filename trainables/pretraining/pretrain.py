"""The embedded default's "ImageNet": supervised pre-training of the detector's backbone.

The pretrained arm must be honestly pretrained, as in the paper: the same backbone (same
depth, width and normalization) is trained for a fixed budget to classify a separate
generated dataset — the first ``num_classes`` of trainables/pretraining/pretrain_data.py's classes,
shapes the detection data never draws, with textures and backgrounds of their own (ImageNet
is not COCO: neither its classes nor its images) — and its weights are then loaded by the
same function that loads real ImageNet weights. The result is cached by its parameters,
with metadata: the classes, images seen, wall time, and the held-out accuracy along the
way, so that whether it levelled off within its budget is on record.

The toy's own stand-ins (its spec, pretraining seeds 0-2) ship with the package in
``trainables/pretraining/standin/``, made by this code (``python -m study.standin``), as the COCO
presets load ImageNet weights rather than train them; a folder there is named by the same
key as in the cache, so a changed spec or recipe never finds a stale one. Any other spec
is pretrained where it is first needed: in the first trial of a study whose pretrained
init loads it (trainables/engine/trial.py), on that trial's CPU, while other trials (scratch
ones) train on the other CPUs. A file lock in the cache makes it one run per spec: a
second process that needs the same backbone waits for it and loads the cached result.

Recipe (version 4): 48 px, batch 64, SGD lr 0.1 with momentum, 5% warm-up and cosine decay,
over ``num_images`` generated images (the preset's spec sets the classes and iterations).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from torch import nn

from trainables.contract.storage import cache_dir, spec_key
from trainables.contract.trial_config import ModelConfig, PretrainSpec
from trainables.data import shapes
from trainables.model.mask_rcnn import build_backbone_body, param_groups
from trainables.pretraining import pretrain_data

PRETRAIN_VERSION = 4
# The stand-ins that ship with the package, one folder per cache key.
SHIPPED = Path(__file__).resolve().parent / "standin"
WEIGHTS_FILE = "backbone.pt"
META_FILE = "meta.json"
# Held-out images to measure the classifier's accuracy with.
NUM_HELD_OUT = 500
# Held-out accuracy is measured this many times along the way: the last two tell whether
# it levelled off (a gain of at most PLATEAU_GAIN over the last quarter of the budget).
ACCURACY_POINTS = 4
PLATEAU_GAIN = 0.01
# Shape size as a fraction of the image side (radius), the shape fully inside the image.
RADIUS_RANGE = (0.3, 0.48)
# A shape's mean colour must differ from the background under it by at least this much
# (sum of absolute RGB differences, 0-765); textures are redrawn (up to MAX_REDRAWS times)
# until it does. Shapes nearly invisible against the background only slow learning down.
MIN_CONTRAST = 60.0
MAX_REDRAWS = 20


def classes(spec: PretrainSpec) -> tuple[str, ...]:
    """The spec's class names: the first ``num_classes`` of pretrain_data.CLASSES."""
    return pretrain_data.class_names(spec.num_classes)


@dataclass(frozen=True)
class Pretrained:
    path: Path
    images_seen: int
    wall_time_s: float
    accuracy: float
    meta: dict  # meta.json: classes, the accuracy along the way, whether it levelled off


def classification_images(spec: PretrainSpec, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` generated images (N, 3, S, S) in [0, 1] and labels in [0, num_classes).

    One shape of the spec's classes per image, large and wholly inside the image, at a random
    rotation, with one of pretrain_data's textures over its background, visibly different in
    colour from the background under it.
    """
    kinds = classes(spec)
    rng = np.random.default_rng(seed)
    size = spec.image_size
    images = np.empty((count, size, size, 3), np.uint8)
    labels = rng.integers(len(kinds), size=count)
    for i, label in enumerate(labels):
        img = pretrain_data.background(rng, size)
        r = rng.uniform(*RADIUS_RANGE) * size
        cx, cy = rng.uniform(r, size - r, size=2)
        mask = pretrain_data.class_mask(kinds[label], size, cx, cy, r, float(rng.uniform(0, 2 * math.pi)))
        under = img[mask].mean(0) if mask.any() else img.mean((0, 1))
        for _ in range(MAX_REDRAWS):
            tex = pretrain_data.texture(rng, size)
            if np.abs(tex[mask].mean(0) - under).sum() >= MIN_CONTRAST:
                break
        shapes.composite(img, mask, tex)
        images[i] = shapes.to_uint8(img)
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255), torch.from_numpy(labels)


def cache_key(model: ModelConfig, spec: PretrainSpec) -> str:
    body = {k: getattr(model, k) for k in ("depth", "width", "norm", "gn_groups", "pixel_mean", "pixel_std")}
    # The class names too: a changed class list is another stand-in, never a cached one.
    return spec_key({"body": body, "spec": dataclasses.asdict(spec), "classes": classes(spec)}, PRETRAIN_VERSION)


def ensure_pretrained(
    model: ModelConfig, spec: PretrainSpec, root: Path | None = None, log: Callable[[str], None] = print
) -> Pretrained:
    """Pretrain the backbone for ``model`` unless a cached or shipped result exists; return it.

    Processes that ask for the same backbone at once (two trials, or the ranks of one) take
    turns on a lock beside the cache folder: the first pretrains, the others then load its
    result. The folder appears complete or not at all (written aside, then renamed).
    """
    if model.norm == "frozenbn":
        # Frozen BN needs BN statistics: pretrain with BN, then freeze at fine-tuning.
        model = dataclasses.replace(model, norm="syncbn")
    folder = (root or cache_dir()) / f"pretrain-{cache_key(model, spec)}"
    if not (folder / META_FILE).exists() and (SHIPPED / folder.name / META_FILE).exists():
        folder = SHIPPED / folder.name
    if not (folder / META_FILE).exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(folder.parent / f"{folder.name}.lock"):
            if not (folder / META_FILE).exists():
                tmp = Path(tempfile.mkdtemp(prefix=".pretrain-", dir=folder.parent))
                try:
                    _train(model, spec, tmp, log)
                    os.rename(tmp, folder)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
    meta = json.loads((folder / META_FILE).read_text())
    return Pretrained(folder / WEIGHTS_FILE, meta["images_seen"], meta["wall_time_s"], meta["accuracy"], meta)


def _train(model_cfg: ModelConfig, spec: PretrainSpec, out: Path, log: Callable[[str], None]) -> None:
    torch.manual_seed(spec.seed)
    num_train = min(spec.images_seen, spec.num_images)
    log(
        f"pretraining the backbone (depth {model_cfg.depth}, width {model_cfg.width}, {model_cfg.norm}) "
        f"on {num_train} generated images, {spec.iterations} iterations x {spec.batch_size}"
    )
    start = time.time()
    images, labels = classification_images(spec, num_train + NUM_HELD_OUT, spec.seed)
    # The detector's own input normalization, so the features transfer as they were learned.
    mean = torch.tensor(model_cfg.pixel_mean).view(1, 3, 1, 1)
    std = torch.tensor(model_cfg.pixel_std).view(1, 3, 1, 1)
    images = (images - mean) / std
    train_x, train_y = images[:num_train], labels[:num_train]
    held_x, held_y = images[num_train:], labels[num_train:]

    body = build_backbone_body(model_cfg)
    body.fc = nn.Linear(body.fc.in_features, spec.num_classes)
    checkpoints = {round(spec.iterations * (k + 1) / ACCURACY_POINTS) for k in range(ACCURACY_POINTS)}
    curve = []
    optimizer = torch.optim.SGD(param_groups(body, 1e-4, 0.0), lr=spec.lr, momentum=0.9)
    # Cosine decay with a short warm-up: a classification recipe, independent of detection.
    warmup = max(1, spec.iterations // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: min(1.0, (it + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * it / spec.iterations))
    )
    gen = torch.Generator().manual_seed(spec.seed)
    body.train()
    for it in range(spec.iterations):
        idx = torch.randint(num_train, (spec.batch_size,), generator=gen)
        x = train_x[idx]
        flip = torch.rand(spec.batch_size, generator=gen) < 0.5
        x[flip] = x[flip].flip(-1)
        loss = nn.functional.cross_entropy(body(x), train_y[idx])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretraining diverged at iteration {it} (lr={spec.lr})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if it + 1 in checkpoints:
            curve.append((it + 1, _accuracy(body, held_x, held_y)))
            log(
                f"  pretraining {it + 1}/{spec.iterations}  loss {loss.item():.3f}  held-out accuracy "
                f"{curve[-1][1]:.3f}  {time.time() - start:.0f}s"
            )
    body.eval()
    accuracy = curve[-1][1]
    levelled = len(curve) < 2 or curve[-1][1] - curve[-2][1] <= PLATEAU_GAIN
    wall = time.time() - start
    state = {k: v for k, v in body.state_dict().items() if not k.startswith("fc.")}
    torch.save(state, out / WEIGHTS_FILE)
    meta = {
        "images_seen": spec.images_seen,
        "wall_time_s": round(wall, 2),
        "accuracy": round(accuracy, 4),
        # (iteration, held-out accuracy) along the way, and whether the last quarter of the
        # budget gained at most PLATEAU_GAIN: the stand-in trained to its own plateau.
        "accuracy_curve": [[i, round(a, 4)] for i, a in curve],
        "levelled_off": levelled,
        "num_classes": spec.num_classes,
        "classes": list(classes(spec)),
        "model": dataclasses.asdict(model_cfg),
        "spec": dataclasses.asdict(spec),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    log(
        f"pretraining done in {wall:.0f}s: held-out accuracy {accuracy:.3f} "
        f"({'levelled off' if levelled else 'still rising'} over the last quarter of its budget)"
    )


def _accuracy(body: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Held-out accuracy, in eval mode and back."""
    body.eval()
    with torch.no_grad():
        accuracy = float((body(x).argmax(1) == y).float().mean())
    body.train()
    return accuracy
