"""The per-worker training loop of one trial, free of Ray.

Everything distributed-specific comes in through a :class:`Session` (rank, world size,
device, how to wrap the model and loader, how to report and restore), so the same loop runs
under Ray Train (trainables/ray_entry.py) and in a plain process in tests. Training is
counted in iterations, as in Detectron; evaluation and a checkpoint happen every
``eval_period`` iterations and at the end, and every rank reports the same metrics.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from trainables import coco_eval, results, storage
from trainables.config import TrialConfig
from trainables.data import CocoDetection, ResumableDistributedSampler, coco_results, collate, load_coco, select_subset
from trainables.model import (assert_scratch_ready, build_model, convert_sync_batchnorm, freeze_stages,
                              param_groups)
from trainables.schedule import lr_multiplier, scaled_lr, total_iterations
from trainables.synthetic import ensure_dataset
from trainables.weights import load_backbone_weights


@dataclass(frozen=True)
class Session:
    """What the loop needs from its runtime (Ray Train, or one plain process in tests)."""

    rank: int
    world_size: int
    device: torch.device
    # report(metrics, checkpoint_state): every rank calls it; only rank 0 passes a state.
    report: Callable[[dict[str, Any], dict[str, Any] | None], None]
    # The latest checkpoint's state, or None on a fresh start.
    load_checkpoint: Callable[[], dict[str, Any] | None]
    prepare_model: Callable[[torch.nn.Module], torch.nn.Module] = lambda m: m
    prepare_loader: Callable[[DataLoader], Any] = lambda loader: loader
    log: Callable[[str], None] = print


class InjectedFailure(RuntimeError):
    """Raised once by ``fail_at_iteration`` to exercise Ray Train's restart and resume."""


@dataclass(frozen=True)
class DataPaths:
    train_images: str
    train_annotations: str
    val_images: str
    val_annotations: str


def resolve_data(cfg: TrialConfig) -> DataPaths:
    if cfg.data.source == "synthetic":
        p = ensure_dataset(cfg.data.synthetic)
        return DataPaths(str(p.train_images), str(p.train_annotations), str(p.val_images), str(p.val_annotations))
    d = cfg.data
    return DataPaths(d.train_images, d.train_annotations, d.val_images, d.val_annotations)


def build_datasets(cfg: TrialConfig, paths: DataPaths) -> tuple[CocoDetection, CocoDetection]:
    train_coco = load_coco(paths.train_annotations)
    train = CocoDetection(paths.train_images, train_coco, train=True)
    train.image_ids = select_subset(train.image_ids, cfg.data_fraction, cfg.data.subset_seed)
    val = CocoDetection(paths.val_images, load_coco(paths.val_annotations), train=False)
    if val.category_ids != train.category_ids:
        raise ValueError(f"{paths.val_annotations} and {paths.train_annotations} have different categories")
    if len(train) < cfg.num_workers * cfg.solver.ims_per_worker:
        raise ValueError(f"data_fraction={cfg.data_fraction} leaves {len(train)} training images, fewer than one "
                         f"global batch of {cfg.global_batch}")
    return train, val


def build_trial_model(cfg: TrialConfig, num_classes: int, log: Callable[[str], None]) -> torch.nn.Module:
    d = cfg.data
    model = build_model(cfg.model, num_classes, min_size=d.min_size, max_size=d.max_size, test_min_size=d.test_min_size)
    if cfg.init == "pretrained":
        if not cfg.pretrained_weights:
            raise ValueError("init=pretrained needs pretrained_weights (a path or URL)")
        report = load_backbone_weights(model.backbone.body, cfg.pretrained_weights)
        log(f"[{cfg.trial_id}] backbone: {report.summary()}")
        if cfg.model.norm == "frozenbn":
            freeze_stages(model, cfg.model.frozen_stages)
    else:
        assert_scratch_ready(model)
    return model


def run_trial(cfg: TrialConfig, session: Session) -> dict[str, Any]:
    """Train and evaluate one trial; returns the last reported metrics."""
    rank, world = session.rank, session.world_size
    _seed_everything(cfg.seed * 1000 + rank)
    paths = resolve_data(cfg)
    train_set, val_set = build_datasets(cfg, paths)
    if rank == 0:
        _record_subset(cfg, train_set.image_ids)

    model = build_trial_model(cfg, train_set.num_classes, session.log if rank == 0 else _silent)
    if cfg.model.norm == "syncbn" and world > 1:
        model = convert_sync_batchnorm(model)
    model = session.prepare_model(model)
    net = getattr(model, "module", model)
    # fused=True: one kernel for all parameters instead of a loop of small ops per tensor
    # (the same update, bit for bit, at a third of the cost on a CPU; CUDA has one too).
    optimizer = torch.optim.SGD(param_groups(net, cfg.weight_decay, cfg.solver.weight_decay_norm),
                                lr=scaled_lr(cfg.lr, cfg.global_batch, cfg.solver.reference_batch),
                                momentum=cfg.solver.momentum, fused=True)
    s = cfg.solver
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(
        lr_multiplier, base_iters=s.base_iters, schedule=cfg.schedule, warmup_iters=s.warmup_iters,
        warmup_factor=s.warmup_factor, gamma=s.gamma))
    use_amp = s.amp and session.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_iter, elapsed = 0, 0.0
    state = session.load_checkpoint()
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_iter, elapsed = state["iteration"], state["wall_time_s"]
        if state.get("world_size") == world:
            _set_rng_state(state["rng"][rank])
        if rank == 0:
            session.log(f"[{cfg.trial_id}] resumed from the checkpoint at iteration {start_iter}")

    max_iter = total_iterations(s.base_iters, cfg.schedule)
    train_sampler = ResumableDistributedSampler(train_set, world, rank, shuffle=True, seed=cfg.seed,
                                                hflip_prob=cfg.data.hflip_prob)
    # Loaders get private generators: creating an iterator would otherwise draw from the
    # global RNG, so a resumed run (which creates one more) would diverge from an
    # uninterrupted one.
    train_loader = session.prepare_loader(DataLoader(
        train_set, batch_size=s.ims_per_worker, sampler=train_sampler, drop_last=True, collate_fn=collate,
        num_workers=cfg.data.loader_workers, generator=torch.Generator().manual_seed(cfg.seed)))
    val_sampler = ResumableDistributedSampler(val_set, world, rank, shuffle=False, seed=0)
    val_loader = session.prepare_loader(DataLoader(
        val_set, batch_size=s.ims_per_worker, sampler=val_sampler, collate_fn=collate,
        num_workers=cfg.data.loader_workers, generator=torch.Generator().manual_seed(cfg.seed)))
    iters_per_epoch = len(train_sampler) // s.ims_per_worker
    row_base = {**_row_base(cfg, len(train_set), max_iter), "resumed_from": start_iter if state is not None else None}
    t0 = time.time() - elapsed

    def evaluate_and_report(iteration: int, window: _LossWindow) -> dict[str, Any]:
        """Evaluate, write the row (rank 0), checkpoint and report; every rank calls it."""
        metrics = evaluate_model(net, val_loader, val_set, paths.val_annotations, session, use_amp)
        status = "completed" if iteration >= max_iter else "running"
        row = {**row_base, **_losses(window), **metrics, "iteration": iteration,
               "images_seen": iteration * cfg.global_batch, "lr_now": window.lr,
               "wall_time_s": time.time() - t0, "status": status}
        rng = _gather_rng_states(world)
        ckpt = None
        if rank == 0:
            # The row first, then the checkpoint: a crash in between re-evaluates this
            # iteration on resume and rewrites the same row, so nothing is lost.
            results.write_row(cfg.results_uri, row)
            ckpt = {"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                    "iteration": iteration, "wall_time_s": row["wall_time_s"], "rng": rng, "world_size": world}
            session.log(f"[{cfg.trial_id}] eval @ {iteration}/{max_iter}: bbox_AP {row['bbox_AP']:.3f}  "
                        f"segm_AP {row['segm_AP']:.3f}  loss {row['loss']:.3f}  ({status})")
        session.report(row, ckpt)
        return row

    if start_iter >= max_iter:
        # Finished before a restart (the driver died after the last checkpoint): report
        # the final row again so Tune sees the result; evaluate again if it is missing.
        row = results.last_row(cfg.results_uri, cfg.trial_id)
        if row is not None and row["iteration"] >= max_iter:
            session.report(row, None)
            return row
        return evaluate_and_report(start_iter, _LossWindow())

    window = _LossWindow()
    iteration = start_iter
    epoch, offset = divmod(start_iter, iters_per_epoch)
    log_every = max(1, max_iter // 20)
    last: dict[str, Any] = {}
    while iteration < max_iter:
        train_sampler.set_epoch(epoch)
        train_sampler.set_start(offset * s.ims_per_worker)
        model.train()
        for images, targets in train_loader:
            if cfg.fail_at_iteration is not None and iteration == cfg.fail_at_iteration:
                _maybe_fail(cfg, rank, world, iteration)
            with torch.autocast(session.device.type, enabled=use_amp):
                loss_dict = model(images, targets)
            loss = sum(loss_dict.values())
            # The losses are averaged over the ranks while backward runs: waiting for them
            # before backward would add a second synchronisation point per step, at which
            # the rank with the cheaper image idles.
            pending = _MeanAcrossRanks(torch.stack([loss.detach(), *[loss_dict[k].detach() for k in results.LOSS_KEYS]]),
                                       world)
            lr_now = optimizer.param_groups[0]["lr"]
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            reduced = pending.wait()
            if not torch.isfinite(reduced).all():
                # Every rank sees the same reduced loss, so all of them stop here together,
                # before the optimizer applies the non-finite gradients.
                return _diverged(cfg, session, row_base, iteration + 1, lr_now, reduced, time.time() - t0)
            if s.clip_grad_norm:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(net.parameters(), s.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            iteration += 1
            window.add(reduced.tolist(), lr_now)
            if rank == 0 and iteration % log_every == 0:
                session.log(f"[{cfg.trial_id}] iter {iteration}/{max_iter}  loss {window.mean()[0]:.3f}  "
                            f"lr {lr_now:.5f}  {time.time() - t0:.0f}s")
            if iteration >= max_iter or (cfg.eval_period and iteration % cfg.eval_period == 0):
                last = evaluate_and_report(iteration, window)
                window = _LossWindow()
                model.train()
            if iteration >= max_iter:
                break
        epoch, offset = epoch + 1, 0
    return last


@torch.no_grad()
def evaluate_model(net: torch.nn.Module, loader, dataset: CocoDetection, annotations: str, session: Session,
                   use_amp: bool) -> dict[str, float]:
    """COCO AP over the whole val set: shard, predict, gather, dedupe, evaluate once, share."""
    net.eval()
    mine: list[dict] = []
    for images, infos in loader:
        with torch.autocast(session.device.type, enabled=use_amp):
            outputs = net(images)
        outputs = [{k: v.float() for k, v in o.items()} for o in outputs]
        mine.extend(coco_results(outputs, [i["image_id"] for i in infos], dataset.label_to_category))
    gathered = [mine]
    if session.world_size > 1:
        # To rank 0 only: val2017's predictions need not travel to every rank.
        gathered = [None] * session.world_size if session.rank == 0 else None
        dist.gather_object(mine, gathered, dst=0)
    metrics = [None]
    if session.rank == 0:
        metrics = [coco_eval.evaluate(annotations, coco_eval.dedupe_by_image(gathered))]
        # Bbox-only output (no masks predicted at all) still reports every key.
        metrics[0] = {k: metrics[0].get(k, 0.0) for k in coco_eval.AP_KEYS}
    if session.world_size > 1:
        dist.broadcast_object_list(metrics, src=0)
    return metrics[0]


class _LossWindow:
    """Mean losses since the last evaluation (what a row reports as ``loss``)."""

    def __init__(self) -> None:
        self.sums: list[float] = []
        self.count = 0
        self.lr = 0.0

    def add(self, values: list[float], lr: float) -> None:
        self.sums = [a + b for a, b in zip(self.sums, values)] if self.sums else list(values)
        self.count += 1
        self.lr = lr

    def mean(self) -> list[float]:
        return [v / max(1, self.count) for v in self.sums] if self.sums else [math.nan] * (1 + len(results.LOSS_KEYS))


def _losses(window: _LossWindow) -> dict[str, float]:
    return dict(zip(("loss", *results.LOSS_KEYS), window.mean()))


def _row_base(cfg: TrialConfig, train_images: int, max_iter: int) -> dict[str, Any]:
    return {
        "study": cfg.study, "arm": cfg.arm, "trial_id": cfg.trial_id, "init": cfg.init,
        "data_fraction": cfg.data_fraction, "train_images": train_images, "model": cfg.model_name,
        "norm": cfg.model.norm, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "schedule": cfg.schedule,
        "batch_size": cfg.global_batch, "seed": cfg.seed, "num_workers": cfg.num_workers,
        "max_iterations": max_iter, "code_version": cfg.code_version,
        "pretrain_images_seen": cfg.pretrain_images_seen if cfg.init == "pretrained" else None,
    }


def _diverged(cfg: TrialConfig, session: Session, row_base: dict, iteration: int, lr_now: float,
              reduced: torch.Tensor, elapsed: float) -> dict[str, Any]:
    """A non-finite loss ends the trial cleanly with AP 0.0, so the tuner learns from it."""
    row = {**row_base, **dict(zip(("loss", *results.LOSS_KEYS), reduced.tolist())),
           **dict.fromkeys(coco_eval.AP_KEYS, 0.0), "iteration": iteration,
           "images_seen": iteration * cfg.global_batch, "lr_now": lr_now, "wall_time_s": elapsed, "status": "diverged"}
    if session.rank == 0:
        results.write_row(cfg.results_uri, row)
        session.log(f"[{cfg.trial_id}] diverged at iteration {iteration} (loss {reduced[0].item()}, lr {lr_now:.5f}); "
                    f"recorded AP 0.0")
    # Tune and the searcher get finite numbers only.
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
    session.report(clean, None)
    return clean


class _MeanAcrossRanks:
    """An asynchronous all-reduce of a small tensor; ``wait()`` gives the mean on the CPU."""

    def __init__(self, t: torch.Tensor, world: int) -> None:
        self.t, self.world = t, world
        self.work = dist.all_reduce(t, op=dist.ReduceOp.SUM, async_op=True) if world > 1 else None

    def wait(self) -> torch.Tensor:
        if self.work is not None:
            self.work.wait()
        return (self.t / self.world).cpu()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _gather_rng_states(world: int) -> list[dict[str, Any]]:
    if world == 1:
        return [_rng_state()]
    states: list[Any] = [None] * world
    dist.all_gather_object(states, _rng_state())
    return states


def _record_subset(cfg: TrialConfig, image_ids: list[int]) -> None:
    """Write the chosen training image ids once per (fraction, seed), for reproducibility."""
    path = storage.join(cfg.results_uri, "subsets", f"fraction-{cfg.data_fraction:g}-seed-{cfg.data.subset_seed}.json")
    if not storage.exists(path):
        blob = {"data_fraction": cfg.data_fraction, "subset_seed": cfg.data.subset_seed,
                "train_images": len(image_ids), "image_ids": image_ids}
        storage.write_bytes_atomic(path, json.dumps(blob).encode())


def _maybe_fail(cfg: TrialConfig, rank: int, world: int, iteration: int) -> None:
    marker = storage.join(cfg.results_uri, "faults", f"{cfg.trial_id}-{iteration}")
    if rank == world - 1 and not storage.exists(marker):
        storage.write_bytes_atomic(marker, b"injected\n")
        raise InjectedFailure(f"injected failure on rank {rank} at iteration {iteration} (fail_at_iteration)")


def _silent(_msg: str) -> None:
    pass


__all__ = ["Session", "run_trial", "evaluate_model", "resolve_data", "build_datasets", "build_trial_model",
           "InjectedFailure"]
