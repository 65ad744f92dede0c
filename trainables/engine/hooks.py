"""The trial's loop hooks, like detectron2's engine/hooks.py next to its train_loop.py.

Each works through the trainer's public interface (trainables/engine/loop.py): the LR schedule
set before every step, fault injection, and the periodic evaluations and checkpoints (progress
lines: trainables/engine/progress.py).
"""

from __future__ import annotations

from collections.abc import Callable

from trainables.contract.trial_config import SolverConfig
from trainables.engine.loop import HookBase, Trainer
from trainables.engine.schedule import lr_multiplier


class LRSchedule(HookBase):
    """Sets the optimizer's LR before every step (detectron2's ``LRScheduler`` hook): the
    schedule of trainables/engine/schedule.py for the trainer's branch at its iteration, as a
    factor of each parameter group's ``initial_lr`` (the peak LR at the global batch).

    A branch's cooldown and the trunk differ only in ``trainer.schedule``; a restore (a
    fork's or a checkpoint's) needs nothing here, as the next step sets its LR again.
    """

    def __init__(self, solver: SolverConfig) -> None:
        self.solver = solver

    def before_step(self, trainer: Trainer) -> None:
        s = self.solver
        multiplier = lr_multiplier(
            trainer.position.iteration,
            base_iters=s.base_iters,
            schedule=trainer.schedule,
            warmup_iters=s.warmup_iters,
            warmup_factor=s.warmup_factor,
            gamma=s.gamma,
        )
        for group in trainer.state.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * multiplier


class FaultInjection(HookBase):
    """Raises once, on the last rank, at ``iteration`` (exercises restart and resume).

    ``once`` (marker path -> whether it already fired, setting it if not) makes the failure
    happen once per trial even though a restarted run passes the same iteration again.
    """

    def __init__(
        self, iteration: int | None, rank: int, world: int, once: Callable[[int], bool], error: type[Exception]
    ) -> None:
        self.iteration, self.rank, self.world, self.once, self.error = iteration, rank, world, once, error

    def before_step(self, trainer: Trainer) -> None:
        i = trainer.position.iteration
        if self.iteration is not None and i == self.iteration and self.rank == self.world - 1 and not self.once(i):
            raise self.error(f"injected failure on rank {self.rank} at iteration {i} (fail_at_iteration)")


class PeriodicEvaluation(HookBase):
    """Every ``period`` iterations: on the trunk an evaluation row, in a cooldown a checkpoint.

    A branch reports only its final result, so inside it the period brings a checkpoint
    alone (a preempted cooldown resumes where it was). The loss window restarts at every
    period either way, so a branch's final loss covers the same steps as an independent
    run's.
    """

    def __init__(self, period: int) -> None:
        self.period = period

    def after_step(self, trainer: Trainer) -> None:
        pos = trainer.position
        if not self.period or pos.iteration % self.period:
            return
        if not pos.in_branch:
            trainer.report_trunk()
        elif pos.iteration < trainer.branch.end:
            trainer.checkpoint()
        else:
            return  # the branch's final result comes next
        trainer.state.window.reset()
