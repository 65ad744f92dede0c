"""The training loop of one trial: a trunk and its branches, with small hooks around it.

Shaped like detectron2's ``TrainerBase``/``HookBase`` (detectron2/engine/train_loop.py): the
:class:`Trainer` walks its timeline (trainables/engine/branches.py): at a fork it saves the trunk
(:class:`ForkStore`), at a branch's end it evaluates, goes back to the trunk and hands the
result to its row writer (trainables/engine/row_writer.py). Everything else — the LR schedule,
fault injection, progress lines, periodic evaluations and checkpoints — is a hook
(trainables/engine/hooks.py) with ``before_step``/``after_step`` that uses the trainer's public
methods (``evaluate``, ``report_trunk``, ``checkpoint``). The trainer is the one owner of
the trial's state, as detectron2's ``state_dict``/``load_state_dict``: what it trains
(:class:`TrainState`), where it is (:class:`Position`), the saved fork, every rank's RNG,
the training images skipped and the wall time so far; a checkpoint is its ``state_dict()``.
The divergence guard runs inside the step; a step that reads its losses back late (to keep the
device busy) settles them through ``settle`` before anything reads or saves the model.
Nothing here imports Ray.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from trainables.engine.branches import Branch
from trainables.engine.losses import Diverged, LossWindow
from trainables.runtime import gather


@dataclass
class Position:
    """Where a trial is on its timeline; travels in every checkpoint."""

    iteration: int = 0  # the model's iteration along its schedule
    branch: int = 0  # plan index of the next schedule to finish
    in_branch: bool = False  # in that schedule's cooldown (else on the trunk, before its fork)
    cost: int = 0  # iterations computed so far, trunk plus branches
    finished: bool = False


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


class SkippedImages:
    """Training images replaced because they could not be read: a warning for each image
    the first time this rank meets it, and the count across ranks for the rows."""

    def __init__(self, log: Callable[[str], None] = print, prefix: str = "") -> None:
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
        return sum(gather(self.count, world))


class WallClock:
    """Wall seconds of a trial across restarts: ``clock()``; a resume sets it to the time saved."""

    def __init__(self) -> None:
        self.started = time.time()

    def __call__(self) -> float:
        return time.time() - self.started

    def set(self, seconds: float) -> None:
        self.started = time.time() - seconds


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


class RowSink(Protocol):
    """Where the trainer's results go (trainables/engine/row_writer.py's RowWriter writes the rows
    and reports them, with the trainer's ``state_dict()`` as checkpoint); each returns what
    was reported."""

    def trunk(self, trainer: Trainer, metrics: dict[str, float]) -> dict[str, Any]: ...

    def final(
        self, trainer: Trainer, ended: Position, window: LossWindow, metrics: dict[str, float]
    ) -> dict[str, Any]: ...

    def checkpoint(self, trainer: Trainer) -> dict[str, Any]: ...

    def diverged(self, trainer: Trainer, losses: list[float], lr: float) -> dict[str, Any]: ...


class Trainer:
    """Runs a trial's plan: trunk to each fork, the branch's cooldown, back to the trunk.

    Args:
        plan: the branches (trainables/engine/branches.py), in order of their forks.
        state: model, optimizer, scaler and loss window.
        step: ``step(batch)``, one optimizer update on ``batch`` at the LR a hook
            set for ``trainer.schedule`` (trainables/engine/hooks.py's LRSchedule); returns the
            reduced losses and the LR used (what the loss window records).
        batches: iteration -> an iterator of batches from that iteration on (the sampler
            position is a function of the iteration, so a restore just asks again).
        evaluate: ``final`` -> metrics of the current model; ``final`` at a schedule's end
            (where the study also scores its test split).
        writer: writes the rows and reports (with a checkpoint) to the runtime.
        rank, world_size: this process's place among the ranks (the checkpoint gathers
            every rank's RNG and skipped images).
        skips: the training images skipped on this rank (the step notes them).
        clock: the trial's wall time, started before its set-up.
        settle: settles what the last step left pending (the step's own checks of the
            losses it has not read back yet, trainables/engine/step.py's ``SGDStep.settle``);
            called before anything reads or saves the model: an evaluation, a checkpoint,
            a fork.
    """

    def __init__(
        self,
        plan: tuple[Branch, ...],
        state: TrainState,
        step: Callable[[Any], tuple[list[float], float]],
        batches: Callable[[int], Iterator[Any]],
        evaluate: Callable[[bool], dict[str, float]],
        writer: RowSink,
        hooks: Sequence[HookBase] = (),
        *,
        rank: int = 0,
        world_size: int = 1,
        skips: SkippedImages | None = None,
        clock: WallClock | None = None,
        settle: Callable[[], None] = lambda: None,
    ) -> None:
        self.plan, self.state, self.writer = plan, state, writer
        self._step, self._batches, self._evaluate, self._settle = step, batches, evaluate, settle
        self.hooks = list(hooks)
        self.rank, self.world_size = rank, world_size
        self.skips = skips if skips is not None else SkippedImages()
        self.clock = clock if clock is not None else WallClock()
        self.position = Position()
        self.forks = ForkStore()
        self.resumed_from: int | None = None  # the iteration of the checkpoint loaded, if any
        self.last: dict[str, Any] = {}

    def state_dict(self) -> dict[str, Any]:
        """The trial's whole state, as a checkpoint holds it: model, optimizer, scaler, loss
        window, every rank's RNG, the position (and its iteration), the trunk saved at the
        current fork (with every rank's RNG there), the wall time so far, the world size
        and the training images skipped on all ranks.

        Every rank must call it at the same point (it gathers); all get the same state,
        rank 0's is the one saved. By reference: the runtime serialises it before training
        goes on.
        """
        # Every rank's RNG, and the training images skipped so far (with the same gather).
        per_rank = gather((rng_state(), self.skips.count), self.world_size)
        fork = self.forks.saved
        fork_rng = gather(fork["rng"], self.world_size) if fork is not None else None
        state = self.state.state_dict()
        state.update(
            rng=[r for r, _ in per_rank],
            position=dataclasses.asdict(self.position),
            iteration=self.position.iteration,
            wall_time_s=self.clock(),
            world_size=self.world_size,
            skipped_images=sum(n for _, n in per_rank),
            fork=None if fork is None else {**fork, "rng": fork_rng},
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Back to a :meth:`state_dict`; each rank takes its own RNG when the world size is
        the one that saved it (else fresh draws: the run goes on, not bit for bit)."""
        rank, same_world = self.rank, state.get("world_size") == self.world_size
        self.state.load_state_dict({**state, "rng": state["rng"][rank] if same_world else None}, rng=same_world)
        fork = state.get("fork")
        if fork is not None:
            fork = {**fork, "rng": fork["rng"][rank] if same_world else rng_state()}
        self.position = Position(**state["position"])
        self.forks.saved = fork
        self.resumed_from = self.position.iteration
        if rank == 0:  # the count saved is every rank's: one rank carries it on
            self.skips.count = state.get("skipped_images") or 0
        self.clock.set(state["wall_time_s"])

    # --- what hooks may call --------------------------------------------------------------
    def evaluate(self, final: bool = False) -> dict[str, float]:
        """Metrics of the model as it is now (``final``: also the test split's)."""
        self._settle()
        for h in self.hooks:
            h.before_evaluate(self)
        metrics = self._evaluate(final)
        for h in self.hooks:
            h.after_evaluate(self)
        return metrics

    def report_trunk(self) -> None:
        """Evaluate the trunk and report it as a row, with a checkpoint."""
        self.last = self.writer.trunk(self, self.evaluate(final=False))

    def checkpoint(self) -> None:
        """Report a checkpoint alone."""
        self._settle()
        self.writer.checkpoint(self)

    @property
    def branch(self) -> Branch:
        return self.plan[self.position.branch]

    @property
    def schedule(self) -> float:
        """The schedule whose LR the next step uses: the branch's, or on the trunk the longest."""
        return self.branch.schedule if self.position.in_branch else self.plan[-1].schedule

    @property
    def where(self) -> str:
        """Where the next step trains, as the log says it: "trunk" or "Nx cooldown"."""
        return f"{self.branch.schedule:g}x cooldown" if self.position.in_branch else "trunk"

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
                        self._settle()
                        self.forks.save(self.state)
                    pos.in_branch = True
                elif pos.in_branch and pos.iteration >= self.branch.end:
                    self._end_branch()
                    data = self._batches(pos.iteration)
                else:
                    for h in self.hooks:
                        h.before_step(self)
                    losses, lr = self._step(next(data))
                    pos.iteration += 1
                    pos.cost += 1
                    self.state.window.add(losses, lr)
                    for h in self.hooks:
                        h.after_step(self)
        except Diverged as d:
            if not d.counted:
                pos.iteration += 1
                pos.cost += 1
            self.last = self.writer.diverged(self, d.losses, d.lr)
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
        self.last = self.writer.final(self, ended, window, metrics)
