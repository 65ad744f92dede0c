"""The training loop of one trial: a trunk and its branches, with small hooks around it.

Shaped like detectron2's ``TrainerBase``/``HookBase`` (detectron2/engine/train_loop.py): the
:class:`Trainer` owns only *where* the trial is (:class:`Position`) and the boundaries of
its timeline (trainables/branches.py): at a fork it saves the trunk (:class:`ForkStore`),
at a branch's end it evaluates, goes back to the trunk and reports. Everything else —
the LR schedule, fault injection, progress lines, periodic evaluations and checkpoints —
is a hook (trainables/hooks.py) with ``before_step``/``after_step`` that uses the
trainer's public methods (``evaluate``, ``report_trunk``, ``checkpoint``). The trainer owns its timeline's state
(``state_dict``/``load_state_dict``: position and saved fork); what it trains is a
:class:`TrainState`. The divergence guard runs inside the step, after backward and before
the optimizer touches the weights. Nothing here imports Ray.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

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
class TrainState:
    """The mutable training state a fork saves and a restore brings back.

    ``model`` is the bare model, not its DDP wrapper (detectron2 and torchvision's
    references save ``model_without_ddp``): its state dict has no ``module.`` prefix.
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    window: LossWindow

    def state_dict(self) -> dict[str, Any]:
        """The state as it is now, by reference (for a checkpoint written at once)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "window": self.window.state(),
            "rng": rng_state(),
        }

    def snapshot(self) -> dict[str, Any]:
        """A deep copy (the model and the optimizer's momentum change in place), for a fork."""
        state = self.state_dict()
        return {
            **state,
            "model": {k: v.detach().clone() for k, v in state["model"].items()},
            "optimizer": copy.deepcopy(state["optimizer"]),
            "scaler": copy.deepcopy(state["scaler"]),
        }

    def load_state_dict(self, snap: dict[str, Any], rng: bool = True) -> None:
        self.model.load_state_dict(snap["model"])
        self.optimizer.load_state_dict(snap["optimizer"])
        self.scaler.load_state_dict(snap["scaler"])
        self.window.load(snap["window"])
        if rng:
            set_rng_state(snap["rng"])


class ForkStore:
    """The trunk as it was at the current branch's fork (None on the trunk or the last branch)."""

    def __init__(self) -> None:
        self.saved: dict[str, Any] | None = None

    def save(self, state: TrainState) -> None:
        self.saved = state.snapshot()

    def restore(self, state: TrainState) -> None:
        if self.saved is None:
            raise RuntimeError("no saved trunk to restore")
        state.load_state_dict(self.saved)
        self.saved = None


class HookBase:
    """detectron2's hook interface, reduced to what a trial needs."""

    def before_train(self, trainer: Trainer) -> None:
        pass

    def before_step(self, trainer: Trainer) -> None:
        pass

    def after_step(self, trainer: Trainer) -> None:
        pass

    def before_evaluate(self, trainer: Trainer) -> None:
        pass

    def after_evaluate(self, trainer: Trainer) -> None:
        pass


class Reporter(Protocol):
    """Where the trainer's results go (trainables/reporter.py writes rows and checkpoints);
    each returns what was reported."""

    def trunk(self, trainer: Trainer, metrics: dict[str, float]) -> dict[str, Any]: ...

    def final(
        self, trainer: Trainer, ended: Position, window: LossWindow, metrics: dict[str, float]
    ) -> dict[str, Any]: ...

    def checkpoint(self, trainer: Trainer) -> dict[str, Any]: ...

    def diverged(self, trainer: Trainer, losses: list[float], lr: float) -> dict[str, Any]: ...


class Trainer:
    """Runs a trial's plan: trunk to each fork, the branch's cooldown, back to the trunk.

    Args:
        plan: the branches (trainables/branches.py), in order of their forks.
        state: model, optimizer, scaler and loss window.
        step: ``step(trainer, batch)``, one optimizer update on ``batch`` at the LR a hook
            set for ``trainer.schedule`` (trainables/hooks.py's LRSchedule); returns the
            reduced losses and the LR used (what the loss window records).
        batches: iteration -> an iterator of batches from that iteration on (the sampler
            position is a function of the iteration, so a restore just asks again).
        evaluate: ``final`` -> metrics of the current model; ``final`` at a schedule's end
            (where the study also scores its test split).
        reporter: writes the rows and reports (with a checkpoint) to the runtime.
    """

    def __init__(
        self,
        plan: tuple[Branch, ...],
        state: TrainState,
        step: Callable[[Trainer, Any], tuple[list[float], float]],
        batches: Callable[[int], Iterator[Any]],
        evaluate: Callable[[bool], dict[str, float]],
        reporter: Reporter,
        hooks: Sequence[HookBase] = (),
    ) -> None:
        self.plan, self.state, self.reporter = plan, state, reporter
        self._step, self._batches, self._evaluate = step, batches, evaluate
        self.hooks = list(hooks)
        self.position = Position()
        self.forks = ForkStore()
        self.last: dict[str, Any] = {}

    def state_dict(self) -> dict[str, Any]:
        """Where the trial is and the trunk saved at the current fork (by reference)."""
        return {"position": dataclasses.asdict(self.position), "fork": self.forks.saved}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = Position(**state["position"])
        self.forks.saved = state.get("fork")

    # --- what hooks may call --------------------------------------------------------------
    def evaluate(self, final: bool = False) -> dict[str, float]:
        """Metrics of the model as it is now (``final``: also the test split's)."""
        for h in self.hooks:
            h.before_evaluate(self)
        metrics = self._evaluate(final)
        for h in self.hooks:
            h.after_evaluate(self)
        return metrics

    def report_trunk(self) -> None:
        """Evaluate the trunk and report it as a row, with a checkpoint."""
        self.last = self.reporter.trunk(self, self.evaluate(final=False))

    def checkpoint(self) -> None:
        """Report a checkpoint alone."""
        self.reporter.checkpoint(self)

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
                        self.forks.save(self.state)
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
                    self.state.window.add(losses, lr)
                    for h in self.hooks:
                        h.after_step(self)
        except Diverged as d:
            pos.iteration += 1
            pos.cost += 1
            self.last = self.reporter.diverged(self, d.losses, d.lr)
        return self.last

    def _end_branch(self) -> None:
        """Evaluate the cooled-down model, go back to the trunk, then write and report."""
        metrics = self.evaluate(final=True)
        window = LossWindow(self.state.window.width)
        window.load(self.state.window.state())
        pos = self.position
        ended = dataclasses.replace(pos)
        if self.is_last():
            pos.finished = True
        else:
            self.forks.restore(self.state)
            pos.iteration, pos.branch, pos.in_branch = self.branch.fork, pos.branch + 1, False
        self.last = self.reporter.final(self, ended, window, metrics)
