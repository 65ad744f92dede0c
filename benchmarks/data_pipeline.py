"""The COCO presets' data pipeline on this machine's CPU: padding, loader speed, evaluation.

On generated COCO-format data shaped like train2017 (640 px on the long side for most
images, about a quarter portrait, about 7 polygon instances per image, JPEG files), prints

    padding overhead: grouped G.GGG x, ungrouped U.UUU x
    loader: N.N images/s per worker at 800 px
    workers per GPU for 25 images/s: W (the COCO presets set data.loader_workers = L)
    evaluation, CPU side per image at 800 px with 100 detections: ...

- **Padding**: padded pixels over image pixels for 2-image batches after the model's resize
  (shorter side 800, longer at most 1333, batch padded to a multiple of 32, as torchvision's
  ``GeneralizedRCNNTransform`` does), with the batches drawn at random or grouped by
  aspect ratio as the COCO presets group them, and by orientation alone
  (trainables/data/grouping.py), over many simulated image sizes.
- **Loader**: one loader process (``num_workers=0``: what each worker does) through the
  training path of trainables/data/dataset.py: JPEG decode, flip, every instance's mask rasterised
  once, collate. The resize to 800 px is not in it: torchvision's detection models resize
  inside the model, on the GPU. Medians of 3 passes.
- **Evaluation**: per image, the CPU work of scoring one model output of 100 detections:
  pasting the 28 x 28 masks at the image's size (the model's ``postprocess``), RLE encoding
  (trainables/evaluation/evaluate.py's ``coco_results``), and COCOeval's share (bbox and segm, over the
  generated split).

    python benchmarks/data_pipeline.py [--images 48] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from study.spec.presets import PRESETS
from trainables.data.dataset import CocoDetection, ResumableDistributedSampler, collate, load_coco
from trainables.data.grouping import aspect_group, grouped_order
from trainables.evaluation.coco_eval import evaluate
from trainables.evaluation.evaluate import coco_results

GPU_IMAGES_PER_S = 25.0  # one GPU step of the R50-FPN-GN model at 2 images (benchmarks/README.md)


def coco_like_size(rng: np.random.Generator) -> tuple[int, int]:
    """(width, height) like train2017's: 640 on the long side for most, a quarter portrait."""
    long = 640 if rng.random() < 0.9 else int(rng.integers(400, 641))
    short = int(rng.integers(330, 501))
    return (short, long) if rng.random() < 0.25 else (long, short)


def _polygon(rng: np.random.Generator, width: int, height: int) -> list[float]:
    cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
    radius = rng.uniform(15, 0.3 * min(width, height))
    angles = np.sort(rng.uniform(0, 2 * math.pi, int(rng.integers(8, 17))))
    xs = np.clip(cx + radius * np.cos(angles), 0, width - 1)
    ys = np.clip(cy + radius * np.sin(angles), 0, height - 1)
    return [round(float(v), 1) for xy in zip(xs, ys) for v in xy]


def write_dataset(root: Path, count: int, seed: int = 0) -> Path:
    """``count`` JPEG images with about 7 polygon instances each, and their COCO JSON."""
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for image_id in range(1, count + 1):
        width, height = coco_like_size(rng)
        coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        picture = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
        name = f"{image_id:012d}.jpg"
        picture.save(root / name, quality=90)
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for _ in range(max(1, int(rng.poisson(7)))):
            poly = _polygon(rng, width, height)
            xs, ys = poly[0::2], poly[1::2]
            box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(rng.integers(1, 4)),
                    "iscrowd": 0,
                    "area": box[2] * box[3] * 0.7,
                    "bbox": box,
                    "segmentation": [poly],
                }
            )
    categories = [{"id": i, "name": f"c{i}"} for i in (1, 2, 3)]
    path = root / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def padding_overhead(sizes: list[tuple[int, int]], factor: int | None, seed: int = 0, per_batch: int = 2) -> float:
    """Padded pixels over image pixels for batches of ``per_batch`` after an 800/1333 resize,
    grouped by aspect ratio with ``factor`` (trainables/data/grouping.py), or drawn at random (None)."""
    order = list(np.random.default_rng(seed).permutation(len(sizes)))
    if factor is not None:
        order = grouped_order(order, [aspect_group(w, h, factor) for w, h in sizes], per_batch)
    order = order[: len(order) // per_batch * per_batch]
    padded = real = 0
    for start in range(0, len(order), per_batch):
        shapes = []
        for i in order[start : start + per_batch]:
            w, h = sizes[i]
            scale = min(800 / min(w, h), 1333 / max(w, h))
            shapes.append((round(h * scale), round(w * scale)))
            real += shapes[-1][0] * shapes[-1][1]
        ph = math.ceil(max(s[0] for s in shapes) / 32) * 32
        pw = math.ceil(max(s[1] for s in shapes) / 32) * 32
        padded += per_batch * ph * pw
    return padded / real


def loader_rate(root: Path, ann: Path, repeats: int) -> float:
    """Images/s of one loader process on the training path (medians of ``repeats`` passes)."""
    dataset = CocoDetection(str(root), load_coco(str(ann)), train=True)
    rates = []
    for r in range(repeats):
        sampler = ResumableDistributedSampler(dataset, 1, 0, shuffle=True, seed=r, hflip_prob=0.5)
        loader = DataLoader(dataset, batch_size=2, sampler=sampler, collate_fn=collate, num_workers=0, drop_last=True)
        start, seen = time.perf_counter(), 0
        for images, _targets in loader:
            seen += len(images)
        rates.append(seen / (time.perf_counter() - start))
    return statistics.median(rates)


def evaluation_costs(ann: Path, repeats: int, detections: int = 100) -> dict[str, float]:
    """Seconds per image: pasting masks, RLE encoding, COCOeval (bbox + segm)."""
    coco = load_coco(str(ann))
    # eval(): in training mode postprocess returns the detections as they are.
    transform = GeneralizedRCNNTransform(800, 1333, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).eval()
    rng = torch.Generator().manual_seed(0)
    paste, encode, results = [], [], []
    ids = sorted(coco.getImgIds())
    for image_id in ids:
        info = coco.imgs[image_id]
        h, w = info["height"], info["width"]
        scale = min(800 / min(w, h), 1333 / max(w, h))
        rh, rw = round(h * scale), round(w * scale)
        xy = torch.rand(detections, 2, generator=rng) * torch.tensor([rw * 0.8, rh * 0.8])
        wh = torch.rand(detections, 2, generator=rng) * torch.tensor([rw * 0.2, rh * 0.2]) + 8
        output = {
            "boxes": torch.cat([xy, xy + wh], dim=1),
            "scores": torch.rand(detections, generator=rng),
            "labels": torch.randint(1, 4, (detections,), generator=rng),
            "masks": torch.rand(detections, 1, 28, 28, generator=rng),
        }
        start = time.perf_counter()
        (pasted,) = transform.postprocess([output], [(rh, rw)], [(h, w)])
        middle = time.perf_counter()
        results += coco_results([pasted], [image_id], {1: 1, 2: 2, 3: 3})
        paste.append(middle - start)
        encode.append(time.perf_counter() - middle)
    scoring = []
    for _ in range(repeats):
        start = time.perf_counter()
        evaluate(str(ann), results)
        scoring.append((time.perf_counter() - start) / len(ids))
    return {"paste": statistics.median(paste), "rle": statistics.median(encode), "cocoeval": statistics.median(scoring)}


def handoff_bytes(root: Path, ann: Path) -> tuple[float, float, float]:
    """Mean MB per training image the loader hands over: the uint8 image, its masks whole,
    and its masks as collate crops them."""
    dataset = CocoDetection(str(root), load_coco(str(ann)), train=True)
    image = whole = crops = 0
    for i in range(len(dataset)):
        img, target = dataset[i]
        image += img.numel()
        whole += target["masks"].numel()
        crops += sum(c.numel() for c in collate([(img, target)])[1][0]["mask_crops"])
    return image / len(dataset) / 1e6, whole / len(dataset) / 1e6, crops / len(dataset) / 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=48, help="generated images for the loader and evaluation")
    parser.add_argument("--sizes", type=int, default=20_000, help="simulated image sizes for the padding figure")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one loader process uses one core

    rng = np.random.default_rng(1)
    sizes = [coco_like_size(rng) for _ in range(args.sizes)]
    portrait = sum(h >= w for w, h in sizes) / len(sizes)
    factor = PRESETS["coco-r50-gn"].data.aspect_group_factor
    grouped, ungrouped = padding_overhead(sizes, factor), padding_overhead(sizes, None)
    print(f"sizes: {len(sizes):,} simulated, {portrait:.0%} portrait or square")
    print(f"padding overhead: grouped {grouped:.3f} x, ungrouped {ungrouped:.3f} x")
    others = ", ".join(f"{k} {padding_overhead(sizes, k):.3f} x" for k in range(5) if k != factor)
    alone = padding_overhead(sizes, None, per_batch=1)
    print(
        f"  grouped: aspect-ratio factor {factor}, the COCO presets'; other factors: {others} (0: by orientation, "
        f"as detectron2); one image alone, padded to a multiple of 32: {alone:.3f} x"
    )

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ann = write_dataset(root, args.images)
        count = len(json.loads(ann.read_text())["annotations"])
        rate = loader_rate(root, ann, args.repeats)
        print(
            f"loader: {rate:.1f} images/s per worker at 800 px ({args.images} images, {count / args.images:.1f} "
            "instances each; the resize to 800 runs in the model)"
        )
        image_mb, whole_mb, crops_mb = handoff_bytes(root, ann)
        print(
            f"hand-off per training image: uint8 image {image_mb:.2f} MB, masks {whole_mb:.2f} MB whole, "
            f"{crops_mb:.2f} MB as crops (trainables/data/mask_handoff.py)"
        )
        workers = math.ceil(GPU_IMAGES_PER_S / rate)
        preset = PRESETS["coco-r50-gn"].data.loader_workers
        print(
            f"workers per GPU for {GPU_IMAGES_PER_S:.0f} images/s: {workers} (the COCO presets set "
            f"data.loader_workers = {preset})"
        )
        costs = evaluation_costs(ann, args.repeats)
        total = sum(costs.values())
        shares = ", ".join(f"{k} {v * 1e3:.1f} ms ({v / total:.0%})" for k, v in costs.items())
        print(f"evaluation, CPU side per image at 800 px with 100 detections: {total * 1e3:.1f} ms: {shares}")


if __name__ == "__main__":
    main()
