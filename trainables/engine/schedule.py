"""The paper's learning-rate schedule as pure functions of the iteration.

He et al. (2019), Sec. 4, following Detectron's 2x strategy: a schedule of N x is N * B
iterations with B = 90k (paper Sec. 4.1, Table 1), and "the LR is always cut x0.1 at the
last 60k and the last 20k iterations, whatever the total". With a 1x length B of any size the
cuts fall at the last (2/3) B and the last (2/9) B iterations, so smaller presets keep the
paper's shape. Linear warm-up (Goyal et al.; Detectron: 500 iterations from 1/3) comes first,
and the LR is quoted at a reference batch (0.02 at 16 images) and scaled linearly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainables.contract.trial_config import SolverConfig


def total_iterations(base_iters: int, schedule: float) -> int:
    """N x = N * B iterations (6x with B = 90k is 540k)."""
    return max(1, round(schedule * base_iters))


def drop_iterations(base_iters: int, schedule: float) -> tuple[int, int]:
    """Iterations at which the LR is multiplied by gamma: the last (2/3) B and (2/9) B.

    With B = 90k: 2x -> (120k, 160k), 3x -> (210k, 250k), 6x -> (480k, 520k). A schedule
    shorter than 1x (the data-fraction study's 60k or 15k iterations) keeps 1x's
    proportions instead, dropping at 1/3 and 7/9 of its length; taken literally, the rule
    would start it already decayed.
    """
    total = total_iterations(base_iters, schedule)
    span = min(base_iters, total)
    return total - round(span * 2 / 3), total - round(span * 2 / 9)


def scaled_lr(lr: float, global_batch: int, reference_batch: int = 16) -> float:
    """Linear scaling rule: ``lr`` is quoted at ``reference_batch`` images per iteration."""
    return lr * global_batch / reference_batch


@dataclass(frozen=True)
class AtBatch:
    """A solver's schedule at a global batch of ``batch`` images (:func:`at_batch`)."""

    peak_lr: float | None  # the LR quoted at the reference batch, scaled (None: none given)
    base_iters: int  # 1x in iterations of ``batch`` images
    warmup_iters: int
    # schedule_batch / batch: what any other count quoted at the schedule batch scales by
    # (a study's eval_period).
    iteration_factor: float


def at_batch(solver: SolverConfig, batch: int, lr: float | None = None) -> AtBatch:
    """The schedule at a global batch of ``batch`` images: the LR (``lr``, quoted at
    ``solver.reference_batch``) times ``batch / reference_batch``, and 1x and the warm-up
    (quoted at ``solver.schedule_batch``) times ``schedule_batch / batch``, rounded, so every
    drop falls at the same image count (detectron2's ``auto_scale_workers``).

    Everything read at a global batch comes from here: study.spec.study_config.at_global_batch counts
    a study's solver (and its eval_period) at its global batch with it, and
    trainables/engine/trial.py takes a trial's peak LR from it.
    """
    factor = solver.schedule_batch / batch
    return AtBatch(
        peak_lr=None if lr is None else scaled_lr(lr, batch, solver.reference_batch),
        base_iters=round(solver.base_iters * factor),
        warmup_iters=round(solver.warmup_iters * factor),
        iteration_factor=factor,
    )


def lr_at(
    iteration: int,
    *,
    peak_lr: float,
    base_iters: int,
    schedule: float,
    warmup_iters: int,
    warmup_factor: float,
    gamma: float = 0.1,
) -> float:
    """The LR used for the update made at ``iteration`` (0-based).

    1) linear warm-up from ``warmup_factor * peak_lr`` to ``peak_lr`` over ``warmup_iters``;
    2) ``peak_lr`` until the first drop; 3) times ``gamma`` per drop passed.
    """
    if iteration < 0:
        raise ValueError(f"iteration must be >= 0, got {iteration}")
    drops = sum(iteration >= d for d in drop_iterations(base_iters, schedule))
    lr = peak_lr * gamma**drops
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        lr *= warmup_factor * (1 - alpha) + alpha
    return lr


def lr_multiplier(
    iteration: int, *, base_iters: int, schedule: float, warmup_iters: int, warmup_factor: float, gamma: float = 0.1
) -> float:
    """:func:`lr_at` divided by the peak LR: the factor the training step applies to each
    parameter group's initial LR (trainables/engine/trial.py)."""
    return lr_at(
        iteration,
        peak_lr=1.0,
        base_iters=base_iters,
        schedule=schedule,
        warmup_iters=warmup_iters,
        warmup_factor=warmup_factor,
        gamma=gamma,
    )
