"""A trial's losses between evaluations (:class:`LossWindow`) and the divergence guard
(:func:`check_finite`, raising :class:`Diverged`), used by the loop (trainables/engine/loop.py)
and the step (trainables/engine/step.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch


class LossWindow:
    """Mean losses since the last evaluation point (what a row reports as ``loss``).

    The sums stay where the losses are (float64 on the step's device), so adding a step's
    losses never waits for the device; ``mean()`` and ``state()`` read them back. Float64
    sums of the float32 losses are the same numbers Python floats would give.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self.sums: torch.Tensor | None = None
        self.count = 0
        self.lr = 0.0

    def add(self, values: torch.Tensor | Sequence[float], lr: float) -> None:
        v = torch.as_tensor(values).detach().to(torch.float64)
        self.sums = v.clone() if self.sums is None else self.sums.to(v.device) + v
        self.count += 1
        self.lr = lr

    def mean(self) -> list[float]:
        if self.sums is None:
            return [math.nan] * self.width
        return [s / max(1, self.count) for s in self.sums.tolist()]

    def state(self) -> dict[str, Any]:
        return {"sums": [] if self.sums is None else self.sums.tolist(), "count": self.count, "lr": self.lr}

    def load(self, state: dict[str, Any]) -> None:
        sums = state["sums"]
        self.sums = torch.tensor(sums, dtype=torch.float64) if len(sums) else None
        self.count, self.lr = state["count"], state["lr"]

    def reset(self) -> None:
        self.sums, self.count = None, 0


class Diverged(Exception):
    """A non-finite loss. ``counted``: found after its step was counted (the guard reads a
    step's losses during the next step, trainables/engine/step.py's SGDStep), so the trial
    ends at the iteration already reached; otherwise the step that raised counts too."""

    def __init__(self, losses: list[float], lr: float, counted: bool = False) -> None:
        super().__init__(f"non-finite loss {losses[0]} at lr {lr}")
        self.losses, self.lr, self.counted = losses, lr, counted


def check_finite(reduced: torch.Tensor, lr: float, counted: bool = False) -> None:
    """The divergence guard: every rank sees the same reduced loss, so all raise together."""
    if not torch.isfinite(reduced).all():
        raise Diverged(reduced.tolist(), lr, counted)
