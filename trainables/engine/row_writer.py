"""A trial's rows and reports: what it writes beside the study and tells the runtime.

Every rank calls the :class:`RowWriter` at the same points (a report's checkpoint is the
trainer's ``state_dict()``, which gathers every rank's RNG); rank 0 writes. One method per
kind of report: a trunk evaluation, a schedule's final result, a checkpoint alone inside a
cooldown, and a divergence. It builds no state and restores none: the trainer owns it
(trainables/engine/loop.py). A row is written before the checkpoint that follows it: a crash in
between repeats the evaluation on resume and rewrites the same shard (rows are named by
the iterations computed so far, unique within a trial), so nothing is lost or doubled.
"""

from __future__ import annotations

import math
from typing import Any

from trainables.contract import row_store
from trainables.contract.rows import (
    CHECKPOINT,
    COMPLETED,
    DIVERGED,
    FINAL,
    RUNNING,
    TRUNK,
    ap_keys,
    loss_keys,
)
from trainables.contract.trial_config import TrialConfig
from trainables.engine.branches import Branch
from trainables.engine.loop import Position, Trainer
from trainables.engine.losses import LossWindow
from trainables.engine.tensorboard import TrialBoard
from trainables.runtime import Session


def for_tune(row: dict[str, Any]) -> dict[str, Any]:
    """A row without its test-split numbers: they go to the Parquet rows only, so nothing Tune,
    Optuna or the early stopper sees (nor Tune's own result files) can depend on them."""
    kept = {k: v for k, v in row.items() if not k.startswith("test_")}
    # The step Tune's tracker callbacks (MLflow, W&B, Aim) plot against: the model's iteration.
    return {**kept, "timesteps_total": row.get("iteration")} if "iteration" in row else kept


class RowWriter:
    """Rows and reports of one trial; the Trainer's ``writer``."""

    def __init__(
        self, cfg: TrialConfig, session: Session, train_images: int, left_out: int = 0, board: TrialBoard | None = None
    ) -> None:
        self.cfg, self.session, self.board = cfg, session, board
        self.base = {**_row_base(cfg, train_images), "left_out_annotations": left_out}
        # The losses and APs this task's rows fill (a keypoint task's: also keypoints).
        self.loss_names = ("loss", *loss_keys(cfg.data.keypoints))
        self.ap_names = ap_keys(cfg.data.keypoints)

    # --- the four kinds of report ---------------------------------------------------------
    def trunk(self, trainer: Trainer, metrics: dict[str, float]) -> dict[str, Any]:
        """A trunk evaluation (at the peak LR): a row, then a checkpoint with the report."""
        pos, window = trainer.position, trainer.state.window
        row = self._row(trainer, trainer.plan[-1], pos, TRUNK, RUNNING, self._losses(window), metrics, window.lr)
        return self._publish(trainer, row, "trunk eval")

    def final(self, trainer: Trainer, ended: Position, window: LossWindow, metrics: dict[str, float]) -> dict[str, Any]:
        """A schedule's final result: ``ended`` is where its branch ended (the trainer has
        moved back to the trunk since), ``window`` the losses of its last steps."""
        branch = trainer.plan[ended.branch]
        row = self._row(trainer, branch, ended, FINAL, COMPLETED, self._losses(window), metrics, window.lr)
        return self._publish(trainer, row, f"{branch.schedule:g}x final")

    def checkpoint(self, trainer: Trainer) -> dict[str, Any]:
        """A checkpoint alone (inside a cooldown, which reports only its final row)."""
        cfg, pos = self.cfg, trainer.position
        report = {
            "trial_id": cfg.trial_id,
            "arm": cfg.arm,
            "phase": CHECKPOINT,
            "iteration": pos.iteration,
            "schedule": trainer.branch.schedule,
            "trunk_schedule": cfg.schedule,
            "status": RUNNING,
            "cost_iterations": pos.cost,
            "timesteps_total": pos.iteration,  # as for_tune's rows
            **dict.fromkeys(self.ap_names),
        }
        self.session.report(report, self._checkpoint(trainer))
        return report

    def diverged(self, trainer: Trainer, losses: list[float], lr: float) -> dict[str, Any]:
        """A non-finite loss: a final row with AP 0.0 on every split, and no checkpoint."""
        cfg, pos = self.cfg, trainer.position
        splits = self.ap_names + (tuple(f"test_{k}" for k in self.ap_names) if cfg.data.has_test_split else ())
        row = self._row(
            trainer,
            trainer.branch,
            pos,
            FINAL,
            DIVERGED,
            dict(zip(self.loss_names, losses)),
            dict.fromkeys(splits, 0.0),
            lr,
        )
        self._write(row)
        self.session.log(
            f"[{cfg.trial_id}] diverged at iteration {pos.iteration} of {trainer.branch.schedule:g}x "
            f"(loss {losses[0]}, lr {lr:.5f}); recorded AP 0.0"
        )
        # Tune and the searcher get finite numbers only.
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        self.session.report(for_tune(clean), None)
        return clean

    # --- checkpoints ----------------------------------------------------------------------
    def _checkpoint(self, trainer: Trainer) -> dict[str, Any] | None:
        """The trainer's state for rank 0's report (None elsewhere); every rank must call
        it, as ``state_dict()`` gathers."""
        state = trainer.state_dict()
        return state if self.session.rank == 0 else None

    # --- rows -----------------------------------------------------------------------------
    def _losses(self, window: LossWindow) -> dict[str, float]:
        return dict(zip(self.loss_names, window.mean()))

    def _publish(self, trainer: Trainer, row: dict[str, Any], what: str) -> dict[str, Any]:
        self._write(row)
        if self.session.rank == 0:
            points = f"keypoints_AP {row['keypoints_AP']:.3f}  " if self.cfg.data.keypoints else ""
            self.session.log(
                f"[{self.cfg.trial_id}] {what} @ {row['iteration']}: bbox_AP {row['bbox_AP']:.3f}  "
                f"segm_AP {row['segm_AP']:.3f}  {points}loss {row['loss']:.3f} (search split)"
            )
        self.session.report(for_tune(row), self._checkpoint(trainer))
        return row

    def _row(
        self,
        trainer: Trainer,
        branch: Branch,
        at: Position,
        phase: str,
        status: str,
        losses: dict[str, float],
        metrics: dict[str, float],
        lr_now: float,
    ) -> dict[str, Any]:
        batch = self.cfg.global_batch
        return {
            **self.base,
            **losses,
            **{k: metrics[k] for k in self.ap_names},
            **{f"test_{k}": metrics.get(f"test_{k}") for k in self.ap_names},
            "schedule": branch.schedule,
            "max_iterations": branch.end,
            "fork_iteration": branch.fork if phase == FINAL else None,
            "phase": phase,
            "iteration": at.iteration,
            "images_seen": at.iteration * batch,
            "cost_iterations": at.cost,
            "cost_images": at.cost * batch,
            "lr_now": lr_now,
            "wall_time_s": trainer.clock(),
            "skipped_images": trainer.skips.total(self.session.world_size),
            "status": status,
            "resumed_from": trainer.resumed_from,
        }

    def _write(self, row: dict[str, Any]) -> None:
        if self.session.rank == 0:
            row_store.write_row(self.cfg.results_uri, row)
            if self.board is not None:
                self.board.row(for_tune(row))


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
