"""One trial on one worker, free of Ray: set-up, the optimizer step, and the loop's run.

Everything distributed-specific comes in through a :class:`~trainables.runtime.Session`
(rank, world size, device, how to wrap the model and loader, how to report and restore,
extra hooks), so the same trial runs under Ray Train (trainables/engine/ray_entry.py) and in a
plain process in tests. ``run_trial`` reads like torchvision's detection ``main()``: data,
model, optimizer, loaders, then the loop (trainables/engine/loop.py) with its hooks
(trainables/engine/hooks.py, the LR schedule among them), its step
(trainables/engine/step.py's :class:`SGDStep`) and its row writer
(trainables/engine/row_writer.py: an evaluation row every ``eval_period`` trunk
iterations, a final row at every schedule's end). Evaluation is trainables/evaluation/evaluate.py.
Training is counted in iterations, as in Detectron.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import torch
from torch.utils.data import DataLoader

from trainables.contract import row_store
from trainables.contract.errors import InputError, MissingInputError
from trainables.contract.rows import loss_keys
from trainables.contract.trial_config import TrialConfig
from trainables.data.dataset import CocoDetection, EvalSet, ResumableDistributedSampler, build_datasets, collate
from trainables.data.splits import SEARCH, resolve_data
from trainables.engine.branches import Branch, branches
from trainables.engine.hooks import FaultInjection, LRSchedule, PeriodicEvaluation
from trainables.engine.loop import SkippedImages, Trainer, TrainState, WallClock
from trainables.engine.losses import LossWindow
from trainables.engine.progress import ProgressLog, TimedBatches
from trainables.engine.row_writer import RowWriter, for_tune
from trainables.engine.schedule import at_batch
from trainables.engine.step import SGDStep
from trainables.engine.tensorboard import TrialBoard
from trainables.engine.trial_records import (
    clear_input_error,
    fault_fired,
    record_data,
    record_input_error,
    record_pretraining,
)
from trainables.evaluation.evaluate import evaluate_model
from trainables.model.mask_rcnn import (
    assert_scratch_ready,
    build_model,
    convert_sync_batchnorm,
    freeze_stages,
    param_groups,
)
from trainables.model.weights import load_backbone_weights
from trainables.pretraining.pretrain import ensure_pretrained
from trainables.runtime import (
    AgreedInputError,
    Session,
    agree_on_input,
    seed_everything,
)


class InjectedFailure(RuntimeError):
    """Raised once by ``fail_at_iteration`` to exercise Ray Train's restart and resume."""


def run_trial(cfg: TrialConfig, session: Session) -> dict[str, Any]:
    """Train one trial's trunk and branches, evaluate each schedule; returns the last report.

    Bad input (an :class:`InputError` on any rank: a missing or broken file, a value that
    cannot work) ends the trial on every rank at once, with ``{"input_error": ...}`` as the
    return value instead of an exception, so that no runtime retries it.
    """
    cfg = with_generated_backbone(cfg, session)
    try:
        return _train(cfg, session)
    except AgreedInputError as err:
        return {"input_error": record_input_error(cfg, session, err.errors)}


def with_generated_backbone(cfg: TrialConfig, session: Session) -> TrialConfig:
    """``cfg`` with the path of its generated backbone, for a pretrained trial of the
    embedded default (``cfg.pretrain``): the first trial that needs it pretrains it here, on
    its own CPU, and caches it; later ones load it. Before the trial's clock starts, so the
    rows' wall times count detection training only."""
    if cfg.init != "pretrained" or cfg.pretrained_weights or cfg.pretrain is None:
        return cfg
    pretrained = ensure_pretrained(cfg.model, cfg.pretrain, log=lambda m: session.log(f"[{cfg.trial_id}] {m}"))
    session.rank0_log(
        f"[{cfg.trial_id}] generated backbone (pretraining seed {cfg.pretrain.seed}, held-out accuracy "
        f"{pretrained.accuracy:.3f}): {pretrained.path}"
    )
    if session.rank == 0:
        record_pretraining(cfg, pretrained.meta)
    return dataclasses.replace(cfg, pretrained_weights=str(pretrained.path))


def _train(cfg: TrialConfig, session: Session) -> dict[str, Any]:
    rank, world, s = session.rank, session.world_size, cfg.solver
    seed_everything(cfg.seed * 1000 + rank)
    clock = WallClock()  # the trial's wall time counts its set-up too

    # Data and model, checked on every rank before anything trains.
    plan, paths, train_set, evals, model_without_ddp = agree_on_input(session, partial(_set_up, cfg, session))
    if rank == 0:
        record_data(
            cfg, paths, train_set.image_ids, {e.split: list(e.dataset.image_ids) for e in evals}, train_set.instances()
        )
        clear_input_error(cfg)
    if cfg.model.norm == "syncbn" and world > 1:
        model_without_ddp = convert_sync_batchnorm(model_without_ddp)
    model = session.prepare_model(model_without_ddp)
    model_without_ddp = getattr(model, "module", model)

    use_amp = s.amp and session.device.type == "cuda"
    state = _train_state(cfg, model_without_ddp, use_amp)

    # Loaders: a resumable training stream and one loader per evaluation split.
    batches = TimedBatches(TrainingBatches(cfg, session, train_set))
    eval_loaders = [_eval_loader(cfg, session, e.dataset) for e in evals]

    def evaluate(final: bool) -> dict[str, float]:
        """The search split's AP; at a schedule's final result also the test split's
        (``test_*``), from the same model at the same moment."""
        metrics: dict[str, float] = {}
        for e, loader in zip(evals, eval_loaders):
            if e.split == SEARCH or final:
                scores = evaluate_model(model_without_ddp, loader, e, session, use_amp)
                metrics.update(scores if e.split == SEARCH else {f"test_{k}": v for k, v in scores.items()})
        model.train()
        return metrics

    # The loop: step, row writer and hooks; rank 0 writes TensorBoard's curves.
    board = TrialBoard(cfg.results_uri, cfg.arm, cfg.trial_id) if rank == 0 and cfg.results_uri else None
    skips = SkippedImages(session.log, f"[{cfg.trial_id}]")
    hooks = [
        LRSchedule(s),
        FaultInjection(cfg.fail_at_iteration, rank, world, partial(fault_fired, cfg), InjectedFailure),
        # Before the periodic evaluation, which restarts the loss window it prints.
        ProgressLog(
            cfg.progress_seconds,
            session.rank0_log,
            f"[{cfg.trial_id}]",
            world * s.ims_per_worker,
            batches=batches,
            memory=_peak_memory(session.device),
            sinks=(board.scalars,) if board is not None else (),
        ),
        PeriodicEvaluation(cfg.eval_period),
        *session.hooks,
    ]
    step = SGDStep(cfg, session, model, state, skips, use_amp)
    # The loop hands its step the trainer too (a step may read where it is); this one trains
    # on the batch alone, at the LR that LRSchedule set.
    trainer = Trainer(
        plan,
        state,
        step,
        batches,
        evaluate,
        RowWriter(cfg, session, len(train_set), train_set.left_out_annotations(), board),
        hooks=hooks,
        rank=rank,
        world_size=world,
        skips=skips,
        clock=clock,
        settle=step.settle,
    )

    try:
        checkpoint = session.load_checkpoint()
        if checkpoint is not None:
            trainer.load_state_dict(checkpoint)
            session.rank0_log(
                f"[{cfg.trial_id}] resumed from the checkpoint at iteration {trainer.position.iteration} "
                f"({trainer.where})"
            )
            if trainer.position.finished:
                # Finished before a restart (the driver died after the last checkpoint):
                # report the final row again so Tune sees the result.
                row = row_store.last_row(cfg.results_uri, cfg.trial_id)
                session.report(for_tune(row), None)
                return row
        return trainer.run()
    finally:
        if board is not None:
            board.close()


def _train_state(cfg: TrialConfig, model_without_ddp: torch.nn.Module, use_amp: bool) -> TrainState:
    """The model with its optimizer, gradient scaler and loss window."""
    s = cfg.solver
    # Optimizer: SGD with momentum, LR scaled linearly from the reference batch (Goyal et al.).
    # Only the LR: a trial's solver already counts its iterations at its global batch
    # (study.spec.study_config.at_global_batch). fused=True: one kernel for all parameters instead of
    # a loop of small ops per tensor (the same update, bit for bit).
    optimizer = torch.optim.SGD(
        param_groups(model_without_ddp, cfg.weight_decay, s.weight_decay_norm),
        lr=at_batch(s, cfg.global_batch, cfg.lr).peak_lr,
        momentum=s.momentum,
        fused=True,
    )
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    return TrainState(
        model_without_ddp,
        optimizer,
        torch.amp.GradScaler("cuda", enabled=use_amp),
        LossWindow(1 + len(loss_keys(cfg.data.keypoints))),
    )


def _set_up(cfg: TrialConfig, session: Session) -> tuple[tuple[Branch, ...], Any, CocoDetection, list[EvalSet], Any]:
    """The plan, the data and the model; no collective inside (see agree_on_input)."""
    plan = branches(cfg.solver.base_iters, cfg.schedules, cfg.schedule)
    paths = resolve_data(cfg.data)
    train_set, evals = build_datasets(cfg, paths)
    model = build_trial_model(cfg, train_set.num_classes, session.rank0_log, len(train_set.keypoint_names))
    return plan, paths, train_set, evals, model


def build_trial_model(
    cfg: TrialConfig, num_classes: int, log: Callable[[str], None], num_keypoints: int = 0
) -> torch.nn.Module:
    """The detector of the trial's config: scratch-ready, or with its pretrained backbone;
    with a keypoint head for ``num_keypoints`` > 0 (a keypoint task)."""
    d = cfg.data
    model = build_model(
        cfg.model,
        num_classes,
        min_size=d.min_size,
        max_size=d.max_size,
        test_min_size=d.test_min_size,
        num_keypoints=num_keypoints,
    )
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


def _peak_memory(device: torch.device) -> Callable[[], float] | None:
    """The peak GPU memory this process allocated, in GiB (a counter read: no sync)."""
    if device.type != "cuda":
        return None
    return lambda: torch.cuda.max_memory_allocated(device) / 2**30


class TrainingBatches:
    """The training stream from any iteration on (``batches(start)``, the Trainer's
    ``batches``): the sampler's epoch and offset follow from the iteration, so a restore or
    a branch's return to the trunk just asks again."""

    def __init__(self, cfg: TrialConfig, session: Session, train_set: CocoDetection) -> None:
        self.cfg, self.per_worker = cfg, cfg.solver.ims_per_worker
        self.sampler = ResumableDistributedSampler(
            train_set,
            session.world_size,
            session.rank,
            shuffle=True,
            seed=cfg.seed,
            hflip_prob=cfg.data.hflip_prob,
            groups=train_set.aspect_groups(cfg.data.aspect_group_factor) if cfg.data.group_by_aspect else None,
            batch_size=self.per_worker,
        )
        # The loader's private generator is reseeded for every epoch: creating an iterator
        # draws from it, and a restore creates more iterators than a straight run.
        self.generator = torch.Generator()
        self.loader = session.prepare_loader(
            DataLoader(
                train_set,
                batch_size=self.per_worker,
                sampler=self.sampler,
                drop_last=True,
                collate_fn=collate,
                generator=self.generator,
                **loader_processes(cfg, session),
            )
        )
        self.iterations_per_epoch = len(self.sampler) // self.per_worker

    def __call__(self, start: int) -> Iterator[Any]:
        epoch, offset = divmod(start, self.iterations_per_epoch)
        while True:
            self.sampler.set_epoch(epoch)
            self.sampler.set_start(offset * self.per_worker)
            self.generator.manual_seed(self.cfg.seed * 100_003 + epoch)
            yield from self.loader
            epoch, offset = epoch + 1, 0


def _eval_loader(cfg: TrialConfig, session: Session, dataset: CocoDetection):
    return session.prepare_loader(
        DataLoader(
            dataset,
            batch_size=cfg.solver.ims_per_worker,
            sampler=ResumableDistributedSampler(dataset, session.world_size, session.rank, shuffle=False, seed=0),
            collate_fn=collate,
            generator=torch.Generator().manual_seed(cfg.seed),
            **loader_processes(cfg, session),
        )
    )


def loader_processes(cfg: TrialConfig, session: Session) -> dict[str, Any]:
    """How a loader's workers run: ``persistent_workers`` keeps them from one stream to the
    next (an epoch, a branch's return to the trunk, an evaluation) instead of forking them
    again; a stream restarts from the sampler's position all the same, as the items depend
    on their index and flip alone. On a GPU the batches land in pinned memory, so the copy
    to the device (Ray Train's ``prepare_data_loader(auto_transfer=True)`` on its own
    stream) does not wait for the step."""
    workers = cfg.data.loader_workers
    return {
        "num_workers": workers,
        "persistent_workers": workers > 0,
        "pin_memory": session.device.type == "cuda",
    }


__all__ = ["Session", "run_trial", "build_trial_model", "InjectedFailure", "SGDStep", "TrainingBatches"]
