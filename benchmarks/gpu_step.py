"""GPU training step: this project's R50-FPN-GN Mask R-CNN vs. torchvision's stock model.

    python benchmarks/gpu_step.py [--iterations 200] [--batch 2] [--amp/--no-amp]

On one GPU, at the paper's image size (shorter side 800, longer up to 1333) and 2 images
per GPU, trains on generated images with AMP and prints images/s and peak memory for
(a) the study's R50-FPN with GroupNorm everywhere and 4conv1fc heads (``coco-r50-gn``'s
model, from scratch, nothing frozen) and (b) ``torchvision.models.detection.
maskrcnn_resnet50_fpn`` (plain BN, as torchvision builds it without weights; 2fc head) in the
same loop, in the same run.
It also checks that timm's ``resnet50_gn`` has exactly the key layout the weight loader
maps (when timm is installed). About a minute on an H100.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from trainables.data import shapes
from trainables.model.mask_rcnn import build_backbone_body, build_model, param_groups
from trainables.model.zoo import R50_GN


def generated_batch(n: int, seed: int, num_classes: int = 80) -> tuple[list[torch.Tensor], list[dict]]:
    """``n`` 800x1066-1333 images with 4-12 shapes each, boxes, labels and masks."""
    rng = np.random.default_rng(seed)
    images, targets = [], []
    for _ in range(n):
        h, w = 800, int(rng.integers(1066, 1334))
        img = shapes.background(rng, h, w, clutter=4)
        boxes, masks = [], []
        for _ in range(int(rng.integers(4, 13))):
            r = float(np.exp(rng.uniform(math.log(16), math.log(250))))
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            m = shapes.shape_mask(shapes.KINDS[int(rng.integers(5))], h, w, cx, cy, r, float(rng.uniform(0, 6.28)))
            ys, xs = np.nonzero(m)
            if len(xs) < 20:
                continue
            shapes.composite(img, m, shapes.texture(rng, h, w))
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            masks.append(m)
        images.append(torch.from_numpy(shapes.to_uint8(img)).permute(2, 0, 1).float() / 255)
        targets.append(
            {
                "boxes": torch.tensor(boxes, dtype=torch.float32),
                "labels": torch.from_numpy(rng.integers(1, num_classes + 1, len(boxes))),
                "masks": torch.from_numpy(np.stack(masks).astype(np.uint8)),
            }
        )
    return images, targets


def train_speed(
    model: torch.nn.Module,
    data,
    iterations: int,
    batch: int,
    amp: bool,
    lr: float,
    device: str = "cuda",
    warmup: int = 10,
) -> tuple[float, float]:
    """(images/s, peak GiB) over ``iterations`` SGD steps after ``warmup`` steps."""
    cuda = device == "cuda"
    model.to(device).train()
    opt = torch.optim.SGD(param_groups(model, 1e-4, 0.0), lr=lr, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and cuda)
    images, targets = data
    images = [i.to(device) for i in images]
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for step in range(iterations + warmup):
        if step == warmup:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
        k = (step * batch) % len(images)
        idx = [(k + j) % len(images) for j in range(batch)]
        with torch.autocast(device, enabled=amp and cuda):
            losses = model([images[j] for j in idx], [targets[j] for j in idx])
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step}: {float(loss)}")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return iterations * batch / seconds, (torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"))


def timm_layout_check() -> str:
    try:
        import timm
    except ImportError:
        return "timm not installed: layout check skipped"
    ref = {k: tuple(v.shape) for k, v in timm.create_model("resnet50_gn", pretrained=False).state_dict().items()}
    ours = {k: tuple(v.shape) for k, v in build_backbone_body(R50_GN).state_dict().items()}
    same = ref == ours
    diff = sorted(set(ref) ^ set(ours))[:5]
    return f"timm {timm.__version__} resnet50_gn key layout {'identical to' if same else 'DIFFERS from'} ours" + (
        "" if same else f" (e.g. {diff})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--batch", type=int, default=2, help="images per step on the one GPU (paper: 2)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: this benchmark measures a GPU training step")
    print(
        f"{torch.cuda.get_device_name()} | torch {torch.__version__} | {args.iterations} iterations x "
        f"{args.batch} images, AMP {'on' if args.amp else 'off'}, 800 x 1066-1333 px",
        flush=True,
    )
    torch.manual_seed(0)
    data = generated_batch(8, seed=0)
    # Linear scaling: 0.02 at 16 images -> 0.0025 at 2.
    lr = 0.02 * args.batch / 16
    ours = build_model(R50_GN, 80, min_size=(800,), max_size=1333)
    speed, mem = train_speed(ours, data, args.iterations, args.batch, args.amp, lr)
    print(f"(a) study R50-FPN-GN, 4conv1fc, scratch:     {speed:6.2f} images/s, peak {mem:5.2f} GiB", flush=True)
    del ours
    torch.cuda.empty_cache()
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    stock = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=81)
    speed_tv, mem_tv = train_speed(stock, data, args.iterations, args.batch, args.amp, lr)
    print(f"(b) torchvision maskrcnn_resnet50_fpn (BN):    {speed_tv:6.2f} images/s, peak {mem_tv:5.2f} GiB")
    print(f"ratio (a)/(b): {speed / speed_tv:.2f}")
    print(timm_layout_check())


if __name__ == "__main__":
    main()
