"""The measuring parts of benchmarks/gpu_profile.py: a timed bare step with per-phase host timers and
CUDA events, the profiler census and the step's variants (the data path and the engine:
benchmarks/profile_feed.py).

Every function works on a CPU too (no events, no autocast unless a variant asks for bf16), so
the script's CPU mode exercises the same code at toy size.
"""

from __future__ import annotations

import csv
import gc
import gzip
import itertools
import shutil
import statistics
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainables.data.dataset import CocoDetection, load_coco
from trainables.model.mask_rcnn import build_model, param_groups

NUM_CLASSES = 80
LR = 0.02 * 2 / 16  # the paper's 0.02 at 16 images, scaled to 2 (the step's speed does not depend on it)
BF16 = torch.bfloat16

# (name, variant_speed's keywords): S3's variants of the bare step.
VARIANTS = [
    ("bf16 autocast, 2 images", {"dtype": BF16}),
    ("bf16, GroupNorm in bf16, 2 images", {"dtype": BF16, "gn_low": True}),
    ("the trials' precision, 4 images", {"images": 4}),
    ("the trials' precision, 8 images", {"images": 8}),
]


@dataclass
class Probe:
    """What the model saw in its last forward: the padded batch shape and the mask-RoI count."""

    shape: tuple = ()
    n: int = 0
    shapes: set = field(default_factory=set)
    ns: set = field(default_factory=set)


@dataclass
class Rig:
    model: nn.Module
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    probe: Probe
    dtype: torch.dtype | None  # autocast's dtype; None: no autocast (fp32)


class LowPrecisionGroupNorm(nn.GroupNorm):
    """GroupNorm in its input's dtype (bf16 under autocast) instead of autocast's fp32 and the
    casts around it (timm's ``fast_group_norm`` does the same)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


def group_norm_in_input_dtype(model: nn.Module) -> int:
    """Replaces every GroupNorm of ``model`` in place; returns how many."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.GroupNorm:
                low = LowPrecisionGroupNorm(child.num_groups, child.num_channels, child.eps, child.affine)
                low.load_state_dict(child.state_dict())
                setattr(parent, name, low.to(child.weight.device))
                count += 1
    return count


def trainable(scale, device: torch.device, dtype: torch.dtype | None = torch.float16, gn_low: bool = False) -> Rig:
    """The scale's model from scratch on ``device`` with the trial's optimizer (fused SGD) and
    GradScaler; autocast in ``dtype`` on a GPU (fp16: the trials' AMP), fp32 on a CPU unless a
    variant asks for bf16."""
    model = build_model(scale.model, NUM_CLASSES, min_size=(scale.min_size,), max_size=scale.max_size).to(device)
    if gn_low:
        group_norm_in_input_dtype(model)
    model.train()
    opt = torch.optim.SGD(param_groups(model, 1e-4, 0.0), lr=LR, momentum=0.9, fused=True)
    if device.type != "cuda" and dtype is torch.float16:
        dtype = None
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and dtype is torch.float16)
    probe = Probe()

    def see_batch(_module, args):
        probe.shape = tuple(args[0].shape)

    def see_rois(_module, args):
        probe.n = sum(int(p.shape[0]) for p in args[1])

    model.backbone.register_forward_pre_hook(see_batch)
    model.roi_heads.mask_roi_pool.register_forward_pre_hook(see_rois)
    return Rig(model, opt, scaler, probe, dtype)


def dataset_items(paths, count: int) -> list[tuple[torch.Tensor, dict]]:
    """The first ``count`` training items as the loader hands them (uint8 images)."""
    ds = CocoDetection(str(paths.train_images), load_coco(str(paths.train_annotations)), train=True)
    return [ds[i] for i in range(count)]


def to_device(batch, device: torch.device):
    images, targets = batch
    images = [i.to(device, non_blocking=True) for i in images]
    targets = [{k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
    return images, targets


def device_batches(items, images: int, device: torch.device) -> Iterator:
    """Batches of ``images`` items, already on the device, round and round."""
    on_device = [to_device(([i], [t]), device) for i, t in items]
    for k in itertools.count():
        chosen = [on_device[(k * images + j) % len(on_device)] for j in range(images)]
        yield [c[0][0] for c in chosen], [c[1][0] for c in chosen]


def timed_steps(rig: Rig, batches: Iterator, steps: int, device: torch.device) -> list[dict[str, Any]]:
    """``steps`` training steps; per step the host's ms in each phase, the GPU's ms (CUDA
    events) and its idle gap before the forward, and whether its shape or N was new."""
    cuda = device.type == "cuda"
    rows, events = [], []
    last = time.perf_counter()
    for i in range(steps):
        t0 = time.perf_counter()
        images, targets = next(batches)
        t1 = time.perf_counter()
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)] if cuda else []
        if cuda:
            ev[0].record()
        with torch.autocast(device.type, dtype=rig.dtype or torch.float32, enabled=rig.dtype is not None):
            losses = rig.model(images, targets)
        loss = sum(losses.values())
        t2 = time.perf_counter()
        if cuda:
            ev[1].record()
        rig.opt.zero_grad(set_to_none=True)
        rig.scaler.scale(loss).backward()
        t3 = time.perf_counter()
        if cuda:
            ev[2].record()
        rig.scaler.step(rig.opt)
        rig.scaler.update()
        t4 = time.perf_counter()
        if cuda:
            ev[3].record()
        events.append(ev)
        p = rig.probe
        rows.append(
            {
                "step": i,
                "wall_ms": (t4 - last) * 1e3,
                "next_ms": (t1 - t0) * 1e3,
                "fwd_ms": (t2 - t1) * 1e3,
                "bwd_ms": (t3 - t2) * 1e3,
                "opt_ms": (t4 - t3) * 1e3,
                "shape": "x".join(map(str, p.shape)),
                "n": p.n,
                "new_shape": p.shape not in p.shapes,
                "new_n": p.n not in p.ns,
            }
        )
        p.shapes.add(p.shape)
        p.ns.add(p.n)
        last = t4
    if cuda:
        torch.cuda.synchronize()
        for k, (row, ev) in enumerate(zip(rows, events)):
            row["gpu_ms"] = ev[0].elapsed_time(ev[3])
            row["gap_ms"] = events[k - 1][3].elapsed_time(ev[0]) if k else float("nan")
    return rows


def step_summary(steps: list[dict], images: int) -> dict[str, Any]:
    wall = [s["wall_ms"] for s in steps]
    quarter = max(1, len(steps) // 4)
    blocks = [steps[k : k + quarter] for k in range(0, len(steps) - quarter + 1, quarter)][:4]
    new = [s for s in steps if s["new_shape"] or s["new_n"]]
    old = [s for s in steps if not (s["new_shape"] or s["new_n"])] or steps

    def mean(key, rows=old):
        values = [r[key] for r in rows if key in r and r[key] == r[key]]
        return statistics.mean(values) if values else float("nan")

    return {
        "steps": len(steps),
        "images_per_s": len(steps) * images / sum(wall) * 1e3,
        "blocks": [len(b) * images / sum(s["wall_ms"] for s in b) * 1e3 for b in blocks],
        "new_steps": len(new),
        "new_ms": mean("wall_ms", new) if new else float("nan"),
        "steady_ms": mean("wall_ms"),
        "gpu_ms": mean("gpu_ms"),
        "gap_ms": mean("gap_ms"),
        "next_share": sum(s["next_ms"] for s in steps) / sum(wall),
    }


def warm_mask_head(rig: Rig, scale, device: torch.device, max_n: int) -> float:
    """One dummy forward and backward of the mask head at every RoI count 1..``max_n`` (cuDNN
    plans are built per shape, and the count changes nearly every step); seconds taken."""
    start = time.perf_counter()
    heads = rig.model.roi_heads
    channels = rig.model.backbone.out_channels
    for n in range(1, max_n + 1):
        x = torch.randn(n, channels, 14, 14, device=device)
        with torch.autocast(device.type, dtype=rig.dtype or torch.float32, enabled=rig.dtype is not None):
            y = heads.mask_predictor(heads.mask_head(x))
        y.float().sum().backward()
    rig.opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def census(rig: Rig, batches: Iterator, steps: int, device: torch.device, out: Path) -> dict[str, Any]:
    """Per step: aten ops, kernel launches, host syncs, copies; the GPU's busy share; the
    syncs of one step by file:line. Writes profile_bare.txt, trace_bare.json.gz, syncs.txt."""
    from torch.profiler import DeviceType, ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    timed_steps(rig, batches, 1, device)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        timed_steps(rig, batches, steps, device)
    wall_us = (time.perf_counter() - start) * 1e6
    averages = prof.key_averages()

    def count(*names: str) -> float:
        return sum(e.count for e in averages if e.key in names) / steps

    kernel_us = sum(
        getattr(e, "self_device_time_total", 0.0)
        for e in averages
        if getattr(e, "device_type", None) == DeviceType.CUDA
    )
    result = {
        "aten_ops": sum(e.count for e in averages if e.key.startswith("aten::")) / steps,
        "launches": count("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx"),
        "item_syncs": count("aten::_local_scalar_dense"),
        # Waits of the host for the device besides item reads (copies to the host, events).
        "stream_syncs": count("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize"),
        "copies": count("cudaMemcpyAsync", "aten::copy_"),
        "nonzero": count("aten::nonzero"),
        "gpu_busy": kernel_us / wall_us if cuda else float("nan"),
    }
    tables = [averages.table(sort_by="self_cpu_time_total", row_limit=40)]
    if cuda:
        tables.append(averages.table(sort_by="self_cuda_time_total", row_limit=40))
    (out / "profile_bare.txt").write_text("\n\n".join(tables))
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp, "trace.json")
        prof.export_chrome_trace(str(trace))
        with trace.open("rb") as src, gzip.open(out / "trace_bare.json.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    (out / "syncs.txt").write_text(sync_census(rig, batches, device))
    return result


def sync_census(rig: Rig, batches: Iterator, device: torch.device) -> str:
    """The host syncs of one step by file:line (``torch.cuda.set_sync_debug_mode("warn")``)."""
    if device.type != "cuda":
        return "sync census: on a GPU only (the CPU has no device to wait for)\n"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            timed_steps(rig, batches, 1, device)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    tally = Counter(f"{w.filename}:{w.lineno}" for w in caught if "synchroniz" in str(w.message).lower())
    lines = [f"{n:4d}  {where}" for where, n in tally.most_common()]
    return f"{sum(tally.values())} syncs in one step\n" + "\n".join(lines) + "\n"


def variant_speed(
    scale, items, device: torch.device, steps: int, warm: int, dtype=torch.float16, gn_low=False, images=2
):
    """(images/s, peak GiB) of the bare step with a variant's dtype, GroupNorm and images."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    rig = trainable(scale, device, dtype, gn_low)
    rows = timed_steps(rig, device_batches(items, images, device), warm + steps, device)[warm:]
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return step_summary(rows, images)["images_per_s"], peak


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def fmt_blocks(s: dict) -> str:
    return f"{s['images_per_s']:.2f} (" + ", ".join(f"{b:.1f}" for b in s["blocks"]) + ")"


def fmt_phases(s: dict) -> str:
    return f"{s['steady_ms']:.1f}; {s['gpu_ms']:.1f}; {s['gap_ms']:.1f}"


def fmt_census(c: dict) -> str:
    return f"{c['aten_ops']:.0f} / {c['launches']:.0f} / {c['item_syncs'] + c['stream_syncs']:.0f}"


def format_table(env: dict[str, str], rows: list[tuple[str, str, str]]) -> str:
    head = " | ".join(f"{k} {v}" for k, v in env.items())
    return head + "\n" + "\n".join(f"{s:<3} {what:<58} {value}" for s, what, value in rows) + "\n"


def write_steps(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
