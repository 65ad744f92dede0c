"""One trial on one worker, free of Ray: data, model, optimizer, and the pieces of its loop.

Everything distributed-specific comes in through a :class:`Session` (rank, world size,
device, how to wrap the model and loader, how to report and restore), so the same trial
runs under Ray Train (trainables/ray_entry.py) and in a plain process in tests. Training is
counted in iterations, as in Detectron. The loop itself (trunk, branches, hooks) is
trainables/loop.py; here are its step, its evaluation and its rows and checkpoints: an
evaluation row every ``eval_period`` trunk iterations, a final row at every schedule's end,
and every rank reports the same metrics.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import pickle
import random
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from pycocotools.coco import COCO
from torch.utils.data import DataLoader

from analysis.schema import AP_KEYS, CHECKPOINT, COMPLETED, DIVERGED, FINAL, LOSS_KEYS, RUNNING, TEST_AP_KEYS, TRUNK
from trainables import coco_eval, results, storage
from trainables.branches import branches, trial_iterations
from trainables.coco_check import check_images_present, check_same_categories
from trainables.config import TrialConfig
from trainables.data import (
    CocoDetection,
    ResumableDistributedSampler,
    coco_results,
    collate,
    index_coco,
    load_coco,
    select_subset,
)
from trainables.errors import InputError, MissingInputError
from trainables.loop import (
    FaultInjection,
    LossWindow,
    PeriodicEvaluation,
    Position,
    ProgressLog,
    Trainer,
    Training,
    check_finite,
    rng_state,
)
from trainables.model import assert_scratch_ready, build_model, convert_sync_batchnorm, freeze_stages, param_groups
from trainables.schedule import lr_multiplier, scaled_lr
from trainables.shm_allreduce import use_shared_memory
from trainables.splits import (
    SEARCH,
    TEST,
    DataPaths,
    check_disjoint,
    held_out_ids,
    resolve_data,
    splits_record,
    subset_blob,
)
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
class EvalSet:
    """A split that trials are scored on: its images and its ground truth (a path, or the
    COCO of a split held out of the training file)."""

    split: str  # "search" or "test" (trainables/splits.py)
    dataset: CocoDetection
    gt: str | COCO
    field: str  # the config field of its images, for errors


def build_datasets(cfg: TrialConfig, paths: DataPaths) -> tuple[CocoDetection, list[EvalSet]]:
    """The training subset and the evaluation splits (search first, then test if any),
    checked: annotations parse, categories agree, listed images exist, no image is in two
    splits."""
    train_coco = load_coco(paths.train_annotations, "data.train_annotations")
    train = CocoDetection(paths.train_images, train_coco, train=True)
    pool = train.image_ids
    if paths.search_holdout:
        held = held_out_ids(train_coco.getImgIds(), paths.search_holdout, cfg.data.subset_seed)
        pool = sorted(set(pool) - set(held))
        # A copy: the evaluators write into their ground truth's annotations.
        search_gt = index_coco(copy.deepcopy(subset_blob(train_coco.dataset, held)))
        search_source: str | COCO = search_gt
    else:
        search_gt = load_coco(paths.search_annotations, "data.search_annotations")
        search_source = paths.search_annotations
    train.image_ids = select_subset(pool, cfg.data_fraction, cfg.data.subset_seed, of=cfg.data.fraction_of_images)
    evals = [
        EvalSet(
            SEARCH,
            CocoDetection(paths.search_images, search_gt, train=False),
            search_source,
            paths.field(SEARCH, "images"),
        )
    ]
    if paths.has_test:
        test_gt = load_coco(paths.test_annotations, "data.test_annotations")
        evals.append(
            EvalSet(
                TEST, CocoDetection(paths.test_images, test_gt, train=False), paths.test_annotations, "data.test_images"
            )
        )
    # One directory listing each: cheap even for COCO's 118k files, and a missing image is
    # reported here with its id instead of when an epoch reaches it.
    check_images_present(
        paths.train_images, [train_coco.imgs[i] for i in train.image_ids], paths.train_annotations, "data.train_images"
    )
    files = {
        "training": (
            paths.train_images,
            [train_coco.imgs[i]["file_name"] for i in train.image_ids],
            "data.train_images",
        )
    }
    for e in evals:
        ann_field = paths.field(e.split, "annotations")
        check_same_categories(
            train_coco.dataset,
            e.dataset.coco.dataset,
            paths.train_annotations,
            getattr(paths, f"{e.split}_annotations"),
            ann_field,
        )
        images = [e.dataset.coco.imgs[i] for i in e.dataset.image_ids]
        check_images_present(e.dataset.images_dir, images, getattr(paths, f"{e.split}_annotations"), e.field)
        files[e.split] = (e.dataset.images_dir, [img["file_name"] for img in images], ann_field)
    check_disjoint(files)
    if len(train) < cfg.num_workers * cfg.solver.ims_per_worker:
        raise InputError(
            f"data_fraction={cfg.data_fraction} leaves {len(train)} training images, fewer than one "
            f"global batch of {cfg.global_batch}",
            "data_fraction",
        )
    return train, evals


def build_trial_model(cfg: TrialConfig, num_classes: int, log: Callable[[str], None]) -> torch.nn.Module:
    d = cfg.data
    model = build_model(cfg.model, num_classes, min_size=d.min_size, max_size=d.max_size, test_min_size=d.test_min_size)
    if cfg.init == "pretrained":
        if not cfg.pretrained_weights:
            raise InputError("init=pretrained needs pretrained_weights (a path or URL)", "pretrained_weights")
        try:
            report = load_backbone_weights(model.backbone.body, cfg.pretrained_weights)
        except FileNotFoundError as err:
            raise MissingInputError(str(err), "pretrained_weights") from None
        except (ValueError, EOFError, pickle.UnpicklingError) as err:  # wrong tensors, or not a checkpoint
            raise InputError(f"{cfg.pretrained_weights}: {err}", "pretrained_weights") from None
        log(f"[{cfg.trial_id}] backbone: {report.summary()}")
        if cfg.model.norm == "frozenbn":
            freeze_stages(model, cfg.model.frozen_stages)
    else:
        assert_scratch_ready(model)
    return model


def run_trial(cfg: TrialConfig, session: Session) -> dict[str, Any]:
    """Train one trial's trunk and branches, evaluate each schedule; returns the last report.

    Bad input (an :class:`InputError` on any rank: a missing or broken file, a value that
    cannot work) ends the trial on every rank at once, with ``{"input_error": ...}`` as the
    return value instead of an exception, so that no runtime retries it.
    """
    try:
        return _train(cfg, session)
    except AgreedInputError as err:
        return {"input_error": _record_input_error(cfg, session, err.errors)}


def _train(cfg: TrialConfig, session: Session) -> dict[str, Any]:
    rank, world = session.rank, session.world_size
    _seed_everything(cfg.seed * 1000 + rank)

    def setup():  # no collective inside: a rank that fails here must not leave the others waiting
        plan = branches(cfg.solver.base_iters, cfg.schedules, cfg.schedule)
        paths = resolve_data(cfg.data)
        train_set, evals = build_datasets(cfg, paths)
        model = build_trial_model(cfg, train_set.num_classes, session.log if rank == 0 else _silent)
        return plan, paths, train_set, evals, model

    plan, paths, train_set, evals, model = agree(session, setup)
    if rank == 0:
        _record_subset(cfg, train_set.image_ids)
        _record_splits(cfg, paths, evals)
        # The input is good now: a bad-input record from an earlier attempt no longer holds.
        for suffix in (".json", ".log"):
            storage.delete(storage.join(cfg.results_uri, "failures", f"{cfg.trial_id}{suffix}"))
    if cfg.model.norm == "syncbn" and world > 1:
        model = convert_sync_batchnorm(model)
    model = session.prepare_model(model)
    # CPU workers on one machine average gradients through shared memory instead of
    # gloo's loopback TCP: the same values, a step of the toy model in a bare two-process
    # loop 6 ms (8%) shorter (README, "CPU speed").
    use_shared_memory(model, rank, world)
    net = getattr(model, "module", model)
    s = cfg.solver
    # fused=True: one kernel for all parameters instead of a loop of small ops per tensor
    # (the same update, bit for bit, at a third of the cost on a CPU; CUDA has one too).
    optimizer = torch.optim.SGD(
        param_groups(net, cfg.weight_decay, s.weight_decay_norm),
        lr=scaled_lr(cfg.lr, cfg.global_batch, s.reference_batch),
        momentum=s.momentum,
        fused=True,
    )
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    use_amp = s.amp and session.device.type == "cuda"
    training = Training(net, optimizer, torch.amp.GradScaler("cuda", enabled=use_amp), LossWindow(1 + len(LOSS_KEYS)))

    train_sampler = ResumableDistributedSampler(
        train_set, world, rank, shuffle=True, seed=cfg.seed, hflip_prob=cfg.data.hflip_prob
    )
    # The loader's private generator is reseeded for every epoch: creating an iterator
    # draws from it, and a restore creates more iterators than a straight run.
    loader_rng = torch.Generator()
    train_loader = session.prepare_loader(
        DataLoader(
            train_set,
            batch_size=s.ims_per_worker,
            sampler=train_sampler,
            drop_last=True,
            collate_fn=collate,
            num_workers=cfg.data.loader_workers,
            generator=loader_rng,
        )
    )
    eval_loaders = [
        session.prepare_loader(
            DataLoader(
                e.dataset,
                batch_size=s.ims_per_worker,
                sampler=ResumableDistributedSampler(e.dataset, world, rank, shuffle=False, seed=0),
                collate_fn=collate,
                num_workers=cfg.data.loader_workers,
                generator=torch.Generator().manual_seed(cfg.seed),
            )
        )
        for e in evals
    ]
    iters_per_epoch = len(train_sampler) // s.ims_per_worker
    skips = SkippedImages(session.log, f"[{cfg.trial_id}]")

    def batches(start: int):
        epoch, offset = divmod(start, iters_per_epoch)
        while True:
            train_sampler.set_epoch(epoch)
            train_sampler.set_start(offset * s.ims_per_worker)
            loader_rng.manual_seed(cfg.seed * 100_003 + epoch)
            yield from train_loader
            epoch, offset = epoch + 1, 0

    def step(trainer: Trainer, batch) -> tuple[list[float], float]:
        images, targets = batch
        skips.note(targets)
        unreadable = [t.pop("unreadable") for t in targets if "unreadable" in t]
        it = trainer.position.iteration
        multiplier = lr_multiplier(
            it,
            base_iters=s.base_iters,
            schedule=trainer.schedule,
            warmup_iters=s.warmup_iters,
            warmup_factor=s.warmup_factor,
            gamma=s.gamma,
        )
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * multiplier
        lr_now = optimizer.param_groups[0]["lr"]
        model.train()
        with torch.autocast(session.device.type, enabled=use_amp):
            loss_dict = model(images, targets)
        loss = sum(loss_dict.values())
        # The losses are averaged over the ranks while backward runs: waiting for them
        # before backward would add a second synchronisation point per step, at which
        # the rank with the cheaper image idles.
        # The last element flags a batch without a readable image on some rank; it rides on
        # the losses' all-reduce, so every rank learns it at the same point.
        flag = loss.detach().new_tensor(float(bool(unreadable)))
        pending = _MeanAcrossRanks(
            torch.stack([loss.detach(), *[loss_dict[k].detach() for k in LOSS_KEYS], flag]), world
        )
        optimizer.zero_grad(set_to_none=True)
        training.scaler.scale(loss).backward()
        reduced = pending.wait()
        if reduced[-1] > 0:
            mine = describe_input_error(InputError(unreadable[0], "data.train_images"), rank) if unreadable else None
            raise AgreedInputError([e for e in _gather(mine, world) if e is not None])
        reduced = reduced[:-1]
        check_finite(reduced, lr_now)
        if s.clip_grad_norm:
            training.scaler.unscale_(optimizer)
            # foreach: the norms and the scaling as one call each instead of a Python loop
            # over 100+ tensors (the same values; CUDA takes this path by default).
            torch.nn.utils.clip_grad_norm_(net.parameters(), s.clip_grad_norm, foreach=True)
        training.scaler.step(optimizer)
        training.scaler.update()
        return reduced.tolist(), lr_now

    def evaluate(_trainer: Trainer, final: bool) -> dict[str, float]:
        """The search split's AP; at a schedule's final result also the test split's
        (``test_*``), from the same model at the same moment."""
        metrics: dict[str, float] = {}
        for e, loader in zip(evals, eval_loaders):
            if e.split == SEARCH or final:
                scores = evaluate_model(net, loader, e, session, use_amp)
                metrics.update(scores if e.split == SEARCH else {f"test_{k}": v for k, v in scores.items()})
        model.train()
        return metrics

    t0 = time.time()
    reporter = _Reporter(cfg, session, training, plan, len(train_set), lambda: time.time() - t0, skips)
    trainer = Trainer(
        plan,
        training,
        step,
        batches,
        evaluate,
        reporter,
        hooks=[
            FaultInjection(cfg.fail_at_iteration, rank, world, partial(_fired, cfg), InjectedFailure),
            # Before the periodic evaluation, which restarts the loss window it prints.
            ProgressLog(
                trial_iterations(plan) // 20,
                session.log if rank == 0 else _silent,
                f"[{cfg.trial_id}]",
                lambda: time.time() - t0,
            ),
            PeriodicEvaluation(cfg.eval_period),
        ],
    )
    state = session.load_checkpoint()
    if state is not None:
        reporter.resume(trainer, state)
        t0 = time.time() - state["wall_time_s"]
        if trainer.position.finished:
            # Finished before a restart (the driver died after the last checkpoint):
            # report the final row again so Tune sees the result.
            row = results.last_row(cfg.results_uri, cfg.trial_id)
            session.report(for_tune(row), None)
            return row
    return trainer.run()


def for_tune(row: dict[str, Any]) -> dict[str, Any]:
    """A row without its test-split numbers: they go to the Parquet rows only, so nothing Tune,
    Optuna or the early stopper sees (nor Tune's own result files) can depend on them."""
    return {k: v for k, v in row.items() if k not in TEST_AP_KEYS}


class AgreedInputError(Exception):
    """Raised on every rank at once: bad input that one or more ranks found (``errors``)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"])
        self.errors = errors


def describe_input_error(err: BaseException, rank: int, node: str | None = None) -> dict[str, Any]:
    return {
        "type": type(err).__name__,
        "message": str(err),
        "field": getattr(err, "field", None),
        "rank": rank,
        "node": node or socket.gethostname(),
        "traceback": "".join(traceback.format_exception(err)),
    }


# What a trial's set-up (config, files, model, weights; nothing trained yet) can raise that
# a retry would raise again: bad values and missing or malformed files.
SETUP_INPUT_ERRORS = (InputError, ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError)


def agree(session: Session, fn: Callable[[], Any], errors: tuple[type[BaseException], ...] = SETUP_INPUT_ERRORS) -> Any:
    """``fn()`` on every rank; if it raised one of ``errors`` on any rank, every rank raises
    :class:`AgreedInputError` with what each rank found (one gather, also on success)."""
    mine, value = None, None
    try:
        value = fn()
    except errors as err:
        mine = describe_input_error(err, session.rank)
    found = [e for e in _gather(mine, session.world_size) if e is not None]
    if found:
        raise AgreedInputError(found)
    return value


def _record_input_error(cfg: TrialConfig, session: Session, errors: list[dict[str, Any]]) -> dict[str, Any]:
    """One description of the trial's bad input, logged once and written beside the rows.

    The same error from several ranks (every rank reads the same file) is told once, with
    the ranks and nodes that hit it; the full tracebacks go to ``failures/<trial>.log``.
    """
    distinct: dict[tuple[str, str], dict[str, Any]] = {}
    for e in errors:
        d = distinct.setdefault((e["type"], e["message"]), {**e, "ranks": [], "nodes": []})
        d["ranks"].append(e["rank"])
        if e["node"] not in d["nodes"]:
            d["nodes"].append(e["node"])
    first = next(iter(distinct.values()))
    log_path = storage.join(cfg.results_uri, "failures", f"{cfg.trial_id}.log")
    summary = {
        "trial_id": cfg.trial_id,
        "arm": cfg.arm,
        "type": first["type"],
        "message": first["message"],
        "field": first["field"],
        "ranks": first["ranks"],
        "nodes": first["nodes"],
        "log": log_path,
        "distinct_errors": len(distinct),
    }
    if session.rank == 0:
        text = "\n".join(
            f"{d['type']} on rank(s) {', '.join(map(str, d['ranks']))} (node {', '.join(d['nodes'])}):\n"
            f"{d['traceback']}"
            for d in distinct.values()
        )
        storage.write_bytes_atomic(log_path, text.encode())
        storage.write_bytes_atomic(
            storage.join(cfg.results_uri, "failures", f"{cfg.trial_id}.json"), json.dumps(summary, indent=2).encode()
        )
        for d in distinct.values():
            session.log(
                f"[{cfg.trial_id}] bad input on rank(s) {', '.join(map(str, d['ranks']))} (node "
                f"{', '.join(d['nodes'])}), the trial ends without a retry: {d['type']}: {d['message']}"
            )
    return summary


class _Reporter:
    """Rows, checkpoints and reports of one trial (every rank calls it; rank 0 writes).

    A row is written before the checkpoint that follows it: a crash in between repeats the
    evaluation on resume and rewrites the same shard (rows are named by the iterations
    computed so far, unique within a trial), so nothing is lost or doubled.
    """

    def __init__(
        self,
        cfg: TrialConfig,
        session: Session,
        training: Training,
        plan,
        train_images: int,
        elapsed: Callable[[], float],
        skips: SkippedImages,
    ) -> None:
        self.cfg, self.session, self.training, self.plan, self.elapsed = cfg, session, training, plan, elapsed
        self.skips = skips
        self.base = _row_base(cfg, train_images)
        self.resumed_from: int | None = None

    def __call__(self, trainer: Trainer, kind: str, info: dict[str, Any]) -> dict[str, Any]:
        cfg, pos = self.cfg, trainer.position
        if kind == "checkpoint":
            report = {
                "trial_id": cfg.trial_id,
                "arm": cfg.arm,
                "phase": CHECKPOINT,
                "iteration": pos.iteration,
                "schedule": trainer.branch.schedule,
                "trunk_schedule": cfg.schedule,
                "status": RUNNING,
                "cost_iterations": pos.cost,
                **dict.fromkeys(AP_KEYS),
            }
            self.session.report(report, self.checkpoint(trainer))
            return report
        if kind == "diverged":
            row = self.row(
                trainer.branch,
                pos.iteration,
                pos.cost,
                FINAL,
                DIVERGED,
                dict(zip(("loss", *LOSS_KEYS), info["losses"])),
                # A diverged model scores 0 on every split.
                dict.fromkeys(AP_KEYS + (TEST_AP_KEYS if self.cfg.data.has_test_split else ()), 0.0),
                info["lr"],
            )
            self.write(row)
            self.session.log(
                f"[{cfg.trial_id}] diverged at iteration {pos.iteration} of {trainer.branch.schedule:g}x "
                f"(loss {info['losses'][0]}, lr {info['lr']:.5f}); recorded AP 0.0"
            )
            # Tune and the searcher get finite numbers only.
            clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
            self.session.report(for_tune(clean), None)
            return clean
        window = self.training.window
        if kind == "trunk":
            row = self.row(self.plan[-1], pos.iteration, pos.cost, TRUNK, RUNNING, _losses(window), info, window.lr)
        else:  # "final": the position has moved on; info["at"] is where the branch ended
            at, window = info.pop("at"), info.pop("window")
            row = self.row(
                self.plan[at.branch], at.iteration, at.cost, FINAL, COMPLETED, _losses(window), info, window.lr
            )
        self.write(row)
        if self.session.rank == 0:
            what = f"{row['schedule']:g}x final" if kind == "final" else "trunk eval"
            self.session.log(
                f"[{cfg.trial_id}] {what} @ {row['iteration']}: bbox_AP {row['bbox_AP']:.3f}  "
                f"segm_AP {row['segm_AP']:.3f}  loss {row['loss']:.3f} (search split)"
            )
        self.session.report(for_tune(row), self.checkpoint(trainer))
        return row

    def row(
        self, branch, iteration: int, cost: int, phase: str, status: str, losses: dict, metrics: dict, lr_now: float
    ) -> dict[str, Any]:
        batch = self.cfg.global_batch
        return {
            **self.base,
            **losses,
            **{k: metrics[k] for k in AP_KEYS},
            **{k: metrics.get(k) for k in TEST_AP_KEYS},
            "schedule": branch.schedule,
            "max_iterations": branch.end,
            "fork_iteration": branch.fork if phase == FINAL else None,
            "phase": phase,
            "iteration": iteration,
            "images_seen": iteration * batch,
            "cost_iterations": cost,
            "cost_images": cost * batch,
            "lr_now": lr_now,
            "wall_time_s": self.elapsed(),
            "skipped_images": self.skips.total(self.session.world_size),
            "status": status,
            "resumed_from": self.resumed_from,
        }

    def write(self, row: dict[str, Any]) -> None:
        if self.session.rank == 0:
            results.write_row(self.cfg.results_uri, row)

    def checkpoint(self, trainer: Trainer) -> dict[str, Any] | None:
        """The full state on rank 0 (None elsewhere); every rank must call it (RNG gather)."""
        world = self.session.world_size
        # Every rank's RNG, and the training images skipped so far (with the same gather).
        per_rank = _gather((rng_state(), self.skips.count), world)
        rng, skipped = [r for r, _ in per_rank], sum(n for _, n in per_rank)
        saved = trainer.forks.saved
        fork_rng = _gather(saved["rng"], world) if saved is not None else None
        if self.session.rank != 0:
            return None
        # By reference: the runtime serialises it before training goes on.
        state = self.training.state()
        state.update(
            rng=rng,
            position=dataclasses.asdict(trainer.position),
            iteration=trainer.position.iteration,
            wall_time_s=self.elapsed(),
            world_size=world,
            skipped_images=skipped,
            fork=None if saved is None else {**saved, "rng": fork_rng},
        )
        return state

    def resume(self, trainer: Trainer, state: dict[str, Any]) -> None:
        rank, world = self.session.rank, self.session.world_size
        same_world = state.get("world_size") == world
        self.training.restore({**state, "rng": state["rng"][rank] if same_world else None}, rng=same_world)
        trainer.position = Position(**state["position"])
        if state.get("fork") is not None:
            fork = state["fork"]
            trainer.forks.saved = {**fork, "rng": fork["rng"][rank] if same_world else rng_state()}
        self.resumed_from = trainer.position.iteration
        if rank == 0:
            self.skips.count = state.get("skipped_images") or 0
            where = f"{trainer.branch.schedule:g}x cooldown" if trainer.position.in_branch else "trunk"
            self.session.log(
                f"[{self.cfg.trial_id}] resumed from the checkpoint at iteration {trainer.position.iteration} ({where})"
            )


@torch.no_grad()
def evaluate_model(net: torch.nn.Module, loader, split: EvalSet, session: Session, use_amp: bool) -> dict[str, float]:
    """COCO AP over a whole evaluation split: shard, predict, gather, dedupe, evaluate once,
    share.

    An unreadable image cannot be skipped without changing the AP, so it fails the trial,
    on every rank together (after the gather every rank takes part in anyway).
    """
    dataset = split.dataset
    net.eval()
    mine: list[dict] = []
    unreadable: list[str] = []
    for images, infos in loader:
        unreadable.extend(i["error"] for i in infos if "error" in i)
        keep = [k for k, image in enumerate(images) if image is not None]
        if not keep:
            continue
        with torch.autocast(session.device.type, enabled=use_amp):
            outputs = net([images[k] for k in keep])
        outputs = [{k: v.float() for k, v in o.items()} for o in outputs]
        mine.extend(coco_results(outputs, [infos[k]["image_id"] for k in keep], dataset.label_to_category))
    here = (mine, unreadable, socket.gethostname())
    gathered = [here]
    if session.world_size > 1:
        # To rank 0 only: a 5,000-image split's predictions need not travel to every rank.
        gathered = [None] * session.world_size if session.rank == 0 else None
        dist.gather_object(here, gathered, dst=0)
    metrics: list[Any] = [None]
    if session.rank == 0:
        failed = [
            describe_input_error(InputError(_unreadable_message(errors, split.split), split.field), r, node)
            for r, (_, errors, node) in enumerate(gathered)
            if errors
        ]
        if failed:
            metrics = [{"unreadable": failed}]
        else:
            metrics = [coco_eval.evaluate(split.gt, coco_eval.dedupe_by_image([p for p, _, _ in gathered]))]
            # Bbox-only output (no masks predicted at all) still reports every key.
            metrics[0] = {k: metrics[0].get(k, 0.0) for k in AP_KEYS}
    if session.world_size > 1:
        dist.broadcast_object_list(metrics, src=0)
    if "unreadable" in metrics[0]:
        raise AgreedInputError(metrics[0]["unreadable"])
    return metrics[0]


class SkippedImages:
    """Training images replaced because they could not be read: a warning for each image
    the first time this rank meets it, and the count across ranks for the rows."""

    def __init__(self, log: Callable[[str], None], prefix: str) -> None:
        self.log, self.prefix = log, prefix
        self.count = 0
        self.seen: set[str] = set()

    def note(self, targets: list[dict[str, Any]]) -> None:
        for t in targets:
            for message in t.pop("skipped", ()):
                self.count += 1
                if message not in self.seen:
                    self.seen.add(message)
                    self.log(
                        f"{self.prefix} warning: training image skipped (the next readable one is used "
                        f"instead; counted in the rows' skipped_images): {message}"
                    )

    def total(self, world: int) -> int:
        """The count over every rank (a gather: every rank calls it at the same point)."""
        return sum(_gather(self.count, world))


def _unreadable_message(errors: list[str], split: str) -> str:
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{errors[0]}{more}; the evaluation needs every image of the {split} split"


def _losses(window: LossWindow) -> dict[str, float]:
    return dict(zip(("loss", *LOSS_KEYS), window.mean()))


def _row_base(cfg: TrialConfig, train_images: int) -> dict[str, Any]:
    return {
        "study": cfg.study,
        "arm": cfg.arm,
        "trial_id": cfg.trial_id,
        "init": cfg.init,
        "data_fraction": cfg.data_fraction,
        "train_images": train_images,
        "model": cfg.model_name,
        "norm": cfg.model.norm,
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "trunk_schedule": cfg.schedule,
        "batch_size": cfg.global_batch,
        "seed": cfg.seed,
        "num_workers": cfg.num_workers,
        "code_version": cfg.code_version,
        "pretrain_images_seen": cfg.pretrain_images_seen if cfg.init == "pretrained" else None,
    }


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


def _gather(obj: Any, world: int) -> list[Any]:
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _record_subset(cfg: TrialConfig, image_ids: list[int]) -> None:
    """Write the chosen training image ids once per (fraction, seed), for reproducibility."""
    path = storage.join(cfg.results_uri, "subsets", f"fraction-{cfg.data_fraction:g}-seed-{cfg.data.subset_seed}.json")
    if not storage.exists(path):
        blob = {
            "data_fraction": cfg.data_fraction,
            "subset_seed": cfg.data.subset_seed,
            "train_images": len(image_ids),
            "image_ids": image_ids,
        }
        storage.write_bytes_atomic(path, json.dumps(blob).encode())


def _record_splits(cfg: TrialConfig, paths: DataPaths, evals: list[EvalSet]) -> None:
    """Write the search and test splits' image ids once per subset seed, beside the subsets."""
    path = storage.join(cfg.results_uri, "subsets", f"splits-seed-{cfg.data.subset_seed}.json")
    if not storage.exists(path):
        ids = {e.split: list(e.dataset.image_ids) for e in evals}
        blob = splits_record(paths, ids[SEARCH], ids.get(TEST, []))
        storage.write_bytes_atomic(path, json.dumps(blob).encode())


def _fired(cfg: TrialConfig, iteration: int) -> bool:
    """Whether the injected failure at ``iteration`` already happened (marking it if not)."""
    marker = storage.join(cfg.results_uri, "faults", f"{cfg.trial_id}-{iteration}")
    if storage.exists(marker):
        return True
    storage.write_bytes_atomic(marker, b"injected\n")
    return False


def _silent(_msg: str) -> None:
    pass


__all__ = [
    "Session",
    "run_trial",
    "evaluate_model",
    "resolve_data",
    "build_datasets",
    "build_trial_model",
    "InjectedFailure",
]
