"""Where a training step's time goes on one GPU: one prepared run that decides what to change.

    python benchmarks/gpu_profile.py --out DIR         # one GPU (H100 or H200), about 4 minutes
    python benchmarks/gpu_profile.py --cpu --out DIR   # the same sections at toy size on a CPU (seconds)

On the GPU it profiles ``coco-r50-gn``'s R50-FPN-GN Mask R-CNN (scratch, AMP, 2 images of 800 x
1066-1333 px per step unless a section says otherwise) on generated COCO-format data, in the
order that decides most first, so a run cut short has what matters:

- **S1 bare step**: the model's own step (forward, backward, GradScaler, fused SGD) on batches
  already on the device; per step host timers and CUDA events at each phase, the GPU's idle gap
  before each forward, and flags for a first-seen padded batch shape and a first-seen count of
  mask RoIs N (cuDNN builds plans per shape); images/s per block, and again after one dummy
  mask-head step at every N (the plans warm).
- **S2 census**: ``torch.profiler`` over a few steps: aten ops, kernel launches, host syncs
  (``_local_scalar_dense``, ``cudaStreamSynchronize``), copies, the share of wall time the GPU
  is busy; and one step under ``torch.cuda.set_sync_debug_mode("warn")`` with the syncs tallied
  by file:line (``syncs.txt``).
- **S3 variants** of the bare step: bf16 autocast, bf16 with GroupNorm run in bf16 (autocast
  runs it in fp32 with casts around each of the 69 layers), and 4 and 8 images per step (the
  GPU-hours of each, per million training images).
- **S4 data path**: the trial's dataset through a DataLoader feeding the bare step (copies
  ``non_blocking``): float32 images and whole masks as before, uint8, persistent workers and
  pinned memory, and mask crops (the trial's settings now), each added in turn; the time the
  step waits in ``next()``; the loader alone.
- **S5 engine**: ``trainables.engine.trial.run_trial`` in this process (one rank, no Ray,
  batches copied to the device as they come), its loop's images/s against S1's.

Writes to ``--out``: ``summary.txt`` (the table, also printed), ``summary.json``,
``steps.csv`` (every timed step of S1 and S4), ``profile_bare.txt``, ``trace_bare.json.gz``,
``syncs.txt``. The results and their date go to benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_trial  # noqa: E402  (the scales and the trial config of the GPU trial benchmark)
import profile_feed as feed  # noqa: E402
import profile_parts as parts  # noqa: E402

from trainables.data.synthetic import ensure_dataset  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Budget:
    """Steps per section: the GPU run's, or a few for the CPU's smoke run."""

    warm: int  # untimed steps before each timed run
    bare: int  # S1 timed steps (4 blocks)
    warmed: int  # S1 after warming every N
    max_n: int  # the largest mask-RoI count warmed (torchvision samples 512 RoIs, 25 % positive)
    census: int  # S2 profiled steps
    variant: int  # S3 timed steps per variant (after 5 warm-up steps)
    fed: int  # S4 steps per loader setting
    engine: int  # S5 iterations


GPU_BUDGET = Budget(warm=5, bare=160, warmed=40, max_n=256, census=6, variant=40, fed=72, engine=150)
CPU_BUDGET = Budget(warm=1, bare=4, warmed=2, max_n=4, census=1, variant=1, fed=3, engine=9)


def environment(device: torch.device) -> dict[str, str]:
    env = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "torch": torch.__version__,
        "cudnn": str(torch.backends.cudnn.version()) if device.type == "cuda" else "-",
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "shm_gib": f"{shutil.disk_usage('/dev/shm').total / 2**30:.1f}" if Path("/dev/shm").exists() else "-",
    }
    import torchvision

    env["torchvision"] = torchvision.__version__
    return env


def run(out: Path, cpu: bool) -> dict:
    scale = gpu_trial.CPU_CHECK if cpu else gpu_trial.GPU
    budget = CPU_BUDGET if cpu else GPU_BUDGET
    device = torch.device(scale.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: run with --cpu to exercise the script on a CPU")
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"S0": environment(device)}
    table: list[tuple[str, str, str]] = []
    steps_rows: list[dict] = []

    def note(section: str, what: str, value: str) -> None:
        table.append((section, what, value))
        print(f"  {section:<3} {what:<58} {value}", flush=True)

    print(" | ".join(f"{k} {v}" for k, v in summary["S0"].items()), flush=True)
    paths = ensure_dataset(scale.images)
    base = gpu_trial.trial_base(scale, budget.engine)
    items = parts.dataset_items(paths, count=8)

    # S1: the bare step, in blocks, then with every mask-RoI count warmed.
    precision = "AMP fp16" if device.type == "cuda" else "fp32"
    torch.manual_seed(0)
    rig = parts.trainable(scale, device)
    batches = parts.device_batches(items, 2, device)
    steps = parts.timed_steps(rig, batches, budget.warm + budget.bare, device)[budget.warm :]
    steps_rows += [{"section": "S1", **s} for s in steps]
    s1 = parts.step_summary(steps, images=2)
    summary["S1"] = s1
    note("S1", f"bare step, 2 images, {precision}: images/s (by quarter)", parts.fmt_blocks(s1))
    note("S1", "  steps with a first-seen shape or N / their mean ms", f"{s1['new_steps']} / {s1['new_ms']:.1f}")
    note("S1", "  other steps: mean ms; GPU busy ms; idle gap before fwd ms", parts.fmt_phases(s1))
    seconds = parts.warm_mask_head(rig, scale, device, budget.max_n)
    warmed = parts.step_summary(parts.timed_steps(rig, batches, budget.warmed, device), images=2)
    summary["S1_warmed"] = {**warmed, "warm_s": seconds}
    note("S1", f"  after warming N = 1..{budget.max_n} ({seconds:.0f} s): images/s", f"{warmed['images_per_s']:.2f}")

    # S2: the census of ops, launches and syncs.
    census = parts.census(rig, batches, budget.census, device, out)
    summary["S2"] = census
    note("S2", "per step: aten ops / kernel launches / item reads (syncs)", parts.fmt_census(census))
    note("S2", "  GPU busy share of wall time", f"{census['gpu_busy']:.0%}" if device.type == "cuda" else "n/a")
    del rig
    parts.free(device)

    # S3: variants of the bare step.
    bare = s1["images_per_s"]
    summary["S3"] = {}
    for name, kw in parts.VARIANTS:
        if kw.get("images", 2) > len(items):
            continue
        rate, peak = parts.variant_speed(scale, items, device, budget.variant, budget.warm, **kw)
        summary["S3"][name] = {"images_per_s": rate, "peak_gib": peak}
        hours = 1e6 / rate / 3600
        note("S3", f"{name}: images/s (x S1), GPU-h per 1M images", f"{rate:.2f} ({rate / bare:.2f}x), {hours:.1f}")
        parts.free(device)

    # S4: the trial's data path feeding the bare step.
    summary["S4"] = {}
    rig = parts.trainable(scale, device)
    workers = 2
    for name, kw in feed.LOADERS:
        loader = feed.loader(paths, workers=workers, **{**kw, "pin": kw["pin"] and device.type == "cuda"})
        fed = parts.timed_steps(rig, feed.fed_batches(loader, device), budget.warm + budget.fed, device)[budget.warm :]
        steps_rows += [{"section": f"S4 {name}", **s} for s in fed]
        s4 = parts.step_summary(fed, images=2)
        summary["S4"][name] = s4
        note(
            "S4",
            f"{name}: images/s (x S1), wait in next()",
            f"{s4['images_per_s']:.2f} ({s4['images_per_s'] / bare:.2f}x), {s4['next_share']:.0%}",
        )
        del loader
    for n in sorted({2, min(8, os.cpu_count() or 1)}):
        rate = feed.loader_alone(paths, workers=n, batches=budget.fed)
        summary["S4"][f"loader alone, {n} workers"] = rate
        note("S4", f"loader alone, {n} workers: images/s", f"{rate:.1f}")
    del rig
    parts.free(device)

    # S5: the engine in this process.
    with tempfile.TemporaryDirectory() as rows:  # the trial's rows are not what this run brings back
        engine = feed.engine_loop(base, device, Path(rows))
    summary["S5"] = engine
    note(
        "S5",
        "engine (run_trial, 1 rank, no Ray): loop images/s (x S1)",
        f"{engine['loop_images_per_s']:.2f} ({engine['loop_images_per_s'] / bare:.2f}x)",
    )

    parts.write_steps(out / "steps.csv", steps_rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    text = parts.format_table(summary["S0"], table)
    (out / "summary.txt").write_text(text)
    print("\n" + text)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu-profile", help="folder for the summary, steps and profile")
    parser.add_argument("--cpu", action="store_true", help="the same sections at toy size on the CPU")
    args = parser.parse_args(argv)
    run(Path(args.out), args.cpu)


if __name__ == "__main__":
    main()
