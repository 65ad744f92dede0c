"""The data path and the engine for benchmarks/gpu_profile.py (S4, S5): the trial's dataset through a
DataLoader under each loader setting, feeding the bare step of benchmarks/profile_parts.py,
and ``run_trial`` in this process."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
import trial_probe  # noqa: E402  (benchmarks/, beside this file)
from profile_parts import to_device  # noqa: E402

from trainables.data.dataset import CocoDetection, collate, load_coco  # noqa: E402

# (name, loader's keywords): S4's loader settings.
LOADERS = [
    ("before: float32, whole masks, 2 workers", {"float32": True, "crops": False, "persistent": False, "pin": False}),
    ("uint8, whole masks", {"float32": False, "crops": False, "persistent": False, "pin": False}),
    ("uint8, whole masks, persistent, pinned", {"float32": False, "crops": False, "persistent": True, "pin": True}),
    ("uint8, mask crops, persistent, pinned (now)", {"float32": False, "crops": True, "persistent": True, "pin": True}),
]


class Float32Images(Dataset):
    """The dataset as it was before the uint8 hand-off: float images in [0, 1] from the workers."""

    def __init__(self, ds: CocoDetection) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):
        image, target = self.ds[i]
        return image.float().div_(255), target


def whole_masks(batch):
    """The collate before the mask hand-off: targets as the dataset gives them."""
    images, targets = zip(*batch)
    return list(images), list(targets)


def loader(paths, workers: int, float32: bool, crops: bool, persistent: bool, pin: bool) -> DataLoader:
    ds = CocoDetection(str(paths.train_images), load_coco(str(paths.train_annotations)), train=True)
    return DataLoader(
        Float32Images(ds) if float32 else ds,
        batch_size=2,
        shuffle=True,
        drop_last=True,
        collate_fn=collate if crops else whole_masks,
        num_workers=workers,
        persistent_workers=persistent and workers > 0,
        pin_memory=pin,
        generator=torch.Generator().manual_seed(0),
    )


def fed_batches(data: DataLoader, device: torch.device) -> Iterator:
    """The loader's batches epoch after epoch, copied to the device as they come."""
    while True:
        for batch in data:
            yield to_device(batch, device)


def loader_alone(paths, workers: int, batches: int) -> float:
    """Images/s of the loader with nothing to train (uint8, after its first batch)."""
    data = fed_batches(loader(paths, workers, False, True, True, False), torch.device("cpu"))
    next(data)
    start = time.perf_counter()
    for _ in range(batches):
        next(data)
    return batches * 2 / (time.perf_counter() - start)


class DeviceLoader:
    """A loader whose batches are copied to ``device`` as they come (Ray Train's
    ``prepare_data_loader`` does this for a trial, on a side stream)."""

    def __init__(self, data: DataLoader, device: torch.device) -> None:
        self.data, self.device = data, device

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self):
        for batch in self.data:
            yield to_device(batch, self.device)


def engine_loop(base: dict, device: torch.device, folder: Path) -> dict[str, float]:
    """The trial's engine in this process (one rank, no Ray): its loop's images/s as
    benchmarks/trial_probe.py times a Ray trial (optimizer-step intervals, warm-up left out)."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from trainables.contract.config_io import from_dict
    from trainables.contract.trial_config import TrialConfig
    from trainables.engine.trial import run_trial
    from trainables.runtime import Session

    cfg = from_dict(TrialConfig, {**base, "schedule": 1.0, "seed": 0, "results_uri": str(folder), "trial_id": "p"})
    stamps: list[float] = []
    evals: list[tuple[float, float]] = []

    session = Session(
        rank=0,
        world_size=1,
        device=device,
        report=lambda _metrics, _state: None,
        load_checkpoint=lambda: None,
        prepare_model=lambda m: m.to(device),
        prepare_loader=lambda data: DeviceLoader(data, device) if device.type == "cuda" else data,
        log=lambda _msg: None,
        hooks=(trial_probe.evaluation_timer(evals),),
    )
    handle = register_optimizer_step_post_hook(lambda *_: stamps.append(time.time()))
    try:
        run_trial(cfg, session)
    finally:
        handle.remove()
    warmup = min(10, len(stamps) // 3)  # first-seen shapes and the loader's start
    return trial_probe.summarise(stamps, evals, stamps[0], cfg.global_batch, warmup=warmup)
