"""A trial's timeline: one peak-LR trunk and a cooled-down branch for each schedule.

Under the paper's step rule (trainables/engine/schedule.py) every N x schedule follows the same LR
path until its first drop; only the cooldown after it differs. So a trial that searches
schedule S trains one trunk toward S, and at the first drop (the *fork*) of every schedule
s <= S of its arm's set it branches off: it runs s's cooldown to s * B, evaluates, and goes
back to the trunk at the fork. The last branch (s = S) is the trunk's own cooldown. Each
branch's result equals an independent run of that schedule (the warmup-stable-decay view
of step schedules). Pure Python, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainables.engine.schedule import drop_iterations, total_iterations


@dataclass(frozen=True)
class Branch:
    """One schedule of a trial: its cooldown runs from ``fork`` (the first LR drop) to ``end``."""

    schedule: float
    fork: int
    end: int


def branches(base_iters: int, schedules: tuple[float, ...], trunk_schedule: float) -> tuple[Branch, ...]:
    """The branches of a trial with trunk ``trunk_schedule``, in order of their forks.

    Every schedule of the set up to the trunk's, and the trunk's own (also when the set
    lacks it, as in a ``--trial`` run of any length).
    """
    chosen = sorted({float(s) for s in schedules if s < trunk_schedule} | {float(trunk_schedule)})
    plan = tuple(Branch(s, drop_iterations(base_iters, s)[0], total_iterations(base_iters, s)) for s in chosen)
    for a, b in zip(plan, plan[1:]):
        if b.fork <= a.fork:  # only schedules rounding to the same iterations can collide
            raise ValueError(
                f"schedules {a.schedule:g}x and {b.schedule:g}x fork at the same iteration "
                f"{a.fork} with 1x = {base_iters}; drop one of them"
            )
    return plan


def trial_iterations(plan: tuple[Branch, ...]) -> int:
    """Iterations a trial computes: the trunk to the last fork plus every cooldown."""
    return plan[-1].fork + sum(b.end - b.fork for b in plan)


def independent_iterations(plan: tuple[Branch, ...]) -> int:
    """What the same schedules would cost as separate runs."""
    return sum(b.end for b in plan)
