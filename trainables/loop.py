"""The training loop of one trial: a trunk and its branches, with small hooks around it.

Shaped like detectron2's ``TrainerBase``/``HookBase`` (detectron2/engine/train_loop.py): the
:class:`Trainer` owns only *where* the trial is (:class:`Position`) and the boundaries of
its timeline (trainables/branches.py): at a fork it saves the trunk (:class:`ForkStore`),
at a branch's end it evaluates, goes back to the trunk and reports. Everything else —
fault injection, progress lines, periodic evaluations and checkpoints — is a hook with
``before_step``/``after_step``. The divergence guard runs inside the step, after backward
and before the optimizer touches the weights. Nothing here imports Ray.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trainables.branches import Branch


@dataclass
class Position:
    """Where a trial is on its timeline; travels in every checkpoint."""

    iteration: int = 0  # the model's iteration along its schedule
    branch: int = 0  # plan index of the next schedule to finish
    in_branch: bool = False  # in that schedule's cooldown (else on the trunk, before its fork)
    cost: int = 0  # iterations computed so far, trunk plus branches
    finished: bool = False


class LossWindow:
    """Mean losses since the last evaluation point (what a row reports as ``loss``)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.sums: list[float] = []
        self.count = 0
        self.lr = 0.0

    def add(self, values: list[float], lr: float) -> None:
        self.sums = [a + b for a, b in zip(self.sums, values)] if self.sums else list(values)
        self.count += 1
        self.lr = lr

    def mean(self) -> list[float]:
        return [v / max(1, self.count) for v in self.sums] if self.sums else [math.nan] * self.width

    def state(self) -> dict[str, Any]:
        return {"sums": list(self.sums), "count": self.count, "lr": self.lr}

    def load(self, state: dict[str, Any]) -> None:
        self.sums, self.count, self.lr = list(state["sums"]), state["count"], state["lr"]

    def reset(self) -> None:
        self.sums, self.count = [], 0


class Diverged(Exception):
    """A non-finite loss: the step stops before the optimizer applies its gradients."""

    def __init__(self, losses: list[float], lr: float) -> None:
        super().__init__(f"non-finite loss {losses[0]} at lr {lr}")
        self.losses, self.lr = losses, lr


def check_finite(reduced: torch.Tensor, lr: float) -> None:
    """The divergence guard: every rank sees the same reduced loss, so all raise together."""
    if not torch.isfinite(reduced).all():
        raise Diverged(reduced.tolist(), lr)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


@dataclass
class Training:
    """The mutable training state a fork saves and a restore brings back."""

    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    window: LossWindow

    def state(self) -> dict[str, Any]:
        """The state as it is now, by reference (for a checkpoint written at once)."""
        return {
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "window": self.window.state(),
            "rng": rng_state(),
        }

    def snapshot(self) -> dict[str, Any]:
        """A deep copy (the model and the optimizer's momentum change in place), for a fork."""
        state = self.state()
        return {
            **state,
            "model": {k: v.detach().clone() for k, v in state["model"].items()},
            "optimizer": copy.deepcopy(state["optimizer"]),
            "scaler": copy.deepcopy(state["scaler"]),
        }

    def restore(self, snap: dict[str, Any], rng: bool = True) -> None:
        self.net.load_state_dict(snap["model"])
        self.optimizer.load_state_dict(snap["optimizer"])
        self.scaler.load_state_dict(snap["scaler"])
        self.window.load(snap["window"])
        if rng:
            set_rng_state(snap["rng"])


class ForkStore:
    """The trunk as it was at the current branch's fork (None on the trunk or the last branch)."""

    def __init__(self) -> None:
        self.saved: dict[str, Any] | None = None

    def save(self, training: Training) -> None:
        self.saved = training.snapshot()

    def restore(self, training: Training) -> None:
        if self.saved is None:
            raise RuntimeError("no saved trunk to restore")
        training.restore(self.saved)
        self.saved = None


class HookBase:
    """detectron2's hook interface, reduced to what a trial needs."""

    def before_train(self, trainer: Trainer) -> None:
        pass

    def before_step(self, trainer: Trainer) -> None:
        pass

    def after_step(self, trainer: Trainer) -> None:
        pass


class Trainer:
    """Runs a trial's plan: trunk to each fork, the branch's cooldown, back to the trunk.

    Args:
        plan: the branches (trainables/branches.py), in order of their forks.
        training: model, optimizer, scaler and loss window.
        step: one optimizer update at ``trainer.position.iteration`` with the LR of
            ``trainer.schedule``; returns the reduced losses and the LR used.
        batches: iteration -> an iterator of batches from that iteration on (the sampler
            position is a function of the iteration, so a restore just asks again).
        evaluate: ``(trainer, final)`` -> metrics of the current model; ``final`` at a
            schedule's end (where the study also scores its test split).
        report: ``(trainer, kind, metrics)`` with kind "trunk", "checkpoint", "final" or
            "diverged"; writes the row and reports (with a checkpoint) to the runtime.
    """

    def __init__(
        self,
        plan: tuple[Branch, ...],
        training: Training,
        step: Callable[[Trainer, Any], tuple[list[float], float]],
        batches: Callable[[int], Iterator[Any]],
        evaluate: Callable[[Trainer, bool], dict[str, float]],
        report: Callable[[Trainer, str, dict[str, Any]], dict[str, Any]],
        hooks: list[HookBase] = (),
    ) -> None:
        self.plan, self.training = plan, training
        self._step, self._batches, self._evaluate, self._report = step, batches, evaluate, report
        self.hooks = list(hooks)
        self.position = Position()
        self.forks = ForkStore()
        self.last: dict[str, Any] = {}

    @property
    def branch(self) -> Branch:
        return self.plan[self.position.branch]

    @property
    def schedule(self) -> float:
        """The schedule whose LR the next step uses: the branch's, or on the trunk the longest."""
        return self.branch.schedule if self.position.in_branch else self.plan[-1].schedule

    def is_last(self) -> bool:
        return self.position.branch == len(self.plan) - 1

    def run(self) -> dict[str, Any]:
        for h in self.hooks:
            h.before_train(self)
        data = self._batches(self.position.iteration)
        pos = self.position
        try:
            while not pos.finished:
                if not pos.in_branch and pos.iteration >= self.branch.fork:
                    if not self.is_last():  # the last branch is the trunk's own cooldown
                        self.forks.save(self.training)
                    pos.in_branch = True
                elif pos.in_branch and pos.iteration >= self.branch.end:
                    self._end_branch()
                    data = self._batches(pos.iteration)
                else:
                    for h in self.hooks:
                        h.before_step(self)
                    losses, lr = self._step(self, next(data))
                    pos.iteration += 1
                    pos.cost += 1
                    self.training.window.add(losses, lr)
                    for h in self.hooks:
                        h.after_step(self)
        except Diverged as d:
            pos.iteration += 1
            pos.cost += 1
            self.last = self._report(self, "diverged", {"losses": d.losses, "lr": d.lr})
        return self.last

    def _end_branch(self) -> None:
        """Evaluate the cooled-down model, go back to the trunk, then write and report."""
        metrics = self._evaluate(self, True)
        window = LossWindow(self.training.window.width)
        window.load(self.training.window.state())
        pos = self.position
        done = dataclasses.replace(pos)
        if self.is_last():
            pos.finished = True
        else:
            self.forks.restore(self.training)
            pos.iteration, pos.branch, pos.in_branch = self.branch.fork, pos.branch + 1, False
        self.last = self._report(self, "final", {**metrics, "window": window, "at": done})


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
            trainer.last = trainer._report(trainer, "trunk", trainer._evaluate(trainer, False))
        elif pos.iteration < trainer.branch.end:
            trainer._report(trainer, "checkpoint", {})
        else:
            return  # the branch's final result comes next
        trainer.training.window.reset()


class ProgressLog(HookBase):
    """A line every ``every`` computed iterations: phase, iteration, loss, LR, elapsed."""

    def __init__(self, every: int, log: Callable[[str], None], prefix: str, clock: Callable[[], float]) -> None:
        self.every, self.log, self.prefix, self.clock = max(1, every), log, prefix, clock

    def after_step(self, trainer: Trainer) -> None:
        pos = trainer.position
        if pos.cost % self.every == 0:
            where = f"{trainer.branch.schedule:g}x cooldown" if pos.in_branch else "trunk"
            end = trainer.branch.end if pos.in_branch else trainer.plan[-1].end
            self.log(
                f"{self.prefix} {where} iter {pos.iteration}/{end}"
                f"  loss {trainer.training.window.mean()[0]:.3f}  lr {trainer.training.window.lr:.5f}  "
                f"{self.clock():.0f}s"
            )
