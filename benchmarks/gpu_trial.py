"""The GPU trial path, measured in one run: a Ray Tune + Ray Train trial with AMP, and the step's knobs.

    python benchmarks/gpu_trial.py [--iterations 150] [--step-iterations 100] [--loader-workers 2]
                                   [--no-knobs] [--compile]
    python benchmarks/gpu_trial.py --cpu-check      # the same code at toy size on a CPU

On one GPU, in this order (about 3 minutes on an H200 without ``--compile``), so that a run
cut short by its time limit has measured what matters first:

1. **The bare step** (benchmarks/gpu_step.py's loop: ``coco-r50-gn``'s R50-FPN-GN Mask R-CNN
   from scratch, 2 generated 800 x 1066-1333 images per step, AMP) as it runs today:
   images/s and peak memory.
2. **One trial through Ray Tune + Ray Train** (1 worker, 1 GPU, AMP, the engine's own loop with
   its evaluation, checkpoint and Parquet row, batches grouped by aspect ratio and 2 loader
   workers as in the COCO presets) on a generated COCO-format dataset of 800-px images:
   the loop's images/s (benchmarks/trial_probe.py; after one epoch of 24 steps, which holds
   the first-seen batch shapes), its start-up and evaluation time, its
   peak GPU memory, and the loop's speed as a fraction of the bare step's.
3. **The step's knobs** (skipped with ``--no-knobs``): channels-last tensors and cuDNN's
   benchmark mode, each against step 1; with ``--compile`` also the backbone under
   ``torch.compile`` (dynamic shapes: detection images vary in size) alone and with both
   knobs, which compiles for minutes.

Results and the date they were measured: docs/cluster.md, "GPU trial benchmark".

The GPU machines this project is measured on have torch but neither Ray nor the COCO
tools; install ``ray[default,tune,train]==2.60.0``, ``pycocotools``, ``faster-coco-eval``
and ``optuna`` there first (as wheels, where the machine has no network).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_step  # noqa: E402  (this folder's bare-step loop)
import trial_probe  # noqa: E402

from study.spec.presets import COCO_R50_GN, TOY  # noqa: E402
from study.spec.resolved import base_trial  # noqa: E402
from study.spec.study_config import Arm  # noqa: E402
from trainables.contract.trial_config import SyntheticSpec  # noqa: E402
from trainables.data.synthetic import ensure_dataset  # noqa: E402
from trainables.model.mask_rcnn import build_model  # noqa: E402
from trainables.model.zoo import TINY_GN  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Scale:
    """What one run measures: the paper's model at 800 px on a GPU, or the toy on a CPU."""

    device: str
    model: object
    min_size: int
    max_size: int
    images: SyntheticSpec


GPU = Scale(
    "cuda",
    COCO_R50_GN.models["r50"],
    800,
    1333,
    SyntheticSpec(
        num_train=48,
        num_search=8,
        num_test=8,
        min_side=800,
        max_side=1066,
        max_objects=8,
        min_radius=16,
        max_radius_frac=0.3,
        clutter=4,
        max_occlusion=0.3,
        textures=2,
        seed=0,
    ),
)
CPU_CHECK = Scale("cpu", TINY_GN, 128, 192, dataclasses.replace(TOY.data.synthetic, num_train=16, num_search=4))


AS_TODAY = [("as today", {})]
KNOBS = [
    ("channels-last", {"channels_last": True}),
    ("cuDNN benchmark", {"cudnn_benchmark": True}),
]
COMPILED = [
    ("compiled backbone", {"compile": True}),
    ("all three", {"channels_last": True, "cudnn_benchmark": True, "compile": True}),
]


def step_variants(
    scale: Scale, iterations: int, amp: bool, variants: list[tuple[str, dict]], against: float | None = None
) -> list[tuple[str, float, float]]:
    """(name, images/s, peak GiB) of the bare step with each variant's knobs; ``against``:
    the step as today's images/s, printed as a ratio beside each."""
    data = gpu_step.generated_batch(8, seed=0) if scale.device == "cuda" else _small_batch(scale)
    lr = 0.02 * 2 / 16
    out = []
    for name, knobs in variants:
        if knobs.get("compile") and scale.device == "cpu":
            print(f"  step, {name:<18} skipped on the CPU (inductor compiles for minutes on 2 cores)")
            continue
        torch.manual_seed(0)
        torch.backends.cudnn.benchmark = bool(knobs.get("cudnn_benchmark"))
        model = build_model(scale.model, 80, min_size=(scale.min_size,), max_size=scale.max_size)
        if knobs.get("channels_last"):
            model = model.to(memory_format=torch.channels_last)
        if knobs.get("compile"):
            model.backbone = torch.compile(model.backbone, dynamic=True)
        start = time.perf_counter()
        speed, peak = gpu_step.train_speed(model, data, iterations, 2, amp, lr, device=scale.device)
        print(
            f"  step, {name:<18} {speed:7.2f} images/s{ratio(speed, against)}, peak {peak:5.2f} GiB "
            f"({time.perf_counter() - start:.0f} s with warm-up)",
            flush=True,
        )
        out.append((name, speed, peak))
        del model
        if scale.device == "cuda":
            torch.cuda.empty_cache()
    torch.backends.cudnn.benchmark = False
    return out


def ratio(speed: float, against: float | None) -> str:
    return "" if against is None else f" ({speed / against:.2f} x as today)"


def _small_batch(scale: Scale):
    """A CPU-sized stand-in for gpu_step.generated_batch: 4 toy images with targets."""
    from trainables.data.dataset import CocoDetection, load_coco

    paths = ensure_dataset(scale.images)
    ds = CocoDetection(str(paths.train_images), load_coco(str(paths.train_annotations)), train=True)
    pairs = [ds[i] for i in range(4)]
    return [p[0] for p in pairs], [{k: v for k, v in p[1].items() if k != "image_id"} for p in pairs]


def trial_base(scale: Scale, iterations: int, loader_workers: int = 2) -> dict:
    """The trial config of one scratch trial of the scale's model, 1 worker, 2 images, no
    evaluation before its end; its data generated."""
    study = dataclasses.replace(
        COCO_R50_GN if scale.device == "cuda" else TOY,
        models={"m": scale.model},
        axes=dataclasses.replace(COCO_R50_GN.axes, init=("scratch",), model=("m",)),
        data=dataclasses.replace(
            TOY.data,
            synthetic=scale.images,
            min_size=(scale.min_size,),
            max_size=scale.max_size,
            test_min_size=scale.min_size,
            loader_workers=loader_workers,
            # Grouped as the COCO presets group (the generated images are of both orientations).
            group_by_aspect=True,
            aspect_group_factor=COCO_R50_GN.data.aspect_group_factor,
        ),
        num_workers=1,
        cpus_per_worker=min(8, os.cpu_count() or 1) if scale.device == "cuda" else 1,
        use_gpu=scale.device == "cuda",
        eval_period=0,
    )
    ensure_dataset(scale.images)
    base = base_trial(study, Arm("scratch", 1.0, "m"), results_uri="", code_version="bench", pretrained={})
    return {**base, "solver": {**base["solver"], "base_iters": iterations, "ims_per_worker": 2}}


def trial(scale: Scale, iterations: int, loader_workers: int = 2) -> dict[str, float]:
    """One scratch trial of the scale's model through Ray Tune + Ray Train, 1 worker."""
    from study.hpo import tuning

    base = trial_base(scale, iterations, loader_workers)
    trial_probe.add_to_worker_path()
    tuning.start_ray(None, num_cpus=os.cpu_count() or 1)
    # One epoch of warm-up (every image's first read, most of the batch shapes cuDNN plans
    # for), at most a third of the trial.
    warmup = min(scale.images.num_train // 2, iterations // 3)
    params = {"lr": 0.02, "weight_decay": 1e-4, "schedule": 1.0, "seed": 0}
    return trial_probe.run_probed_trial(base, params, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=150, help="trial iterations of 2 images (default 150)")
    parser.add_argument("--step-iterations", type=int, default=100, help="timed bare steps per variant")
    parser.add_argument("--cpu-check", action="store_true", help="run the same code at toy size on the CPU")
    parser.add_argument("--loader-workers", type=int, default=2, help="the trial's loader workers (presets: 2)")
    parser.add_argument("--no-knobs", action="store_true", help="skip the step's knobs (step 3)")
    parser.add_argument("--compile", action="store_true", help="step 3 also compiles the backbone (minutes)")
    args = parser.parse_args()
    scale = CPU_CHECK if args.cpu_check else GPU
    if scale.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: run with --cpu-check to exercise the code on a CPU")
    name = torch.cuda.get_device_name() if scale.device == "cuda" else "CPU"
    print(f"{name} | torch {torch.__version__} | {time.strftime('%Y-%m-%d')}", flush=True)
    step_iterations = args.step_iterations if scale.device == "cuda" else 3
    bare = step_variants(scale, step_iterations, True, AS_TODAY)[0]
    result = trial(scale, args.iterations if scale.device == "cuda" else 12, args.loader_workers)
    peak = f"peak {result['peak_gib']:.2f} GiB" if result.get("peak_gib") is not None else "peak n/a on a CPU"
    print(
        f"  trial (Ray Tune + Ray Train, 1 worker, AMP, {args.loader_workers} loader workers): "
        f"loop {result['loop_images_per_s']:.2f} images/s "
        f"= {result['loop_images_per_s'] / bare[1]:.2f} x the bare step; start-up {result['startup_s']:.1f} s; "
        f"evaluation {result['eval_s']:.1f} s ({scale.images.num_search + scale.images.num_test} images); {peak}",
        flush=True,
    )
    if not args.no_knobs:
        step_variants(scale, step_iterations, True, KNOBS + (COMPILED if args.compile else []), against=bare[1])


if __name__ == "__main__":
    main()
