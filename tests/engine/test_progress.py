"""Progress lines on a time cadence (trainables/engine/progress.py), on the loop's toy
trainer with a clock the test moves: each step waits 0.25 s for its batch and computes
for 0.75 s."""

import math

import pytest

from tests.engine.test_loop import _toy_trainer
from trainables.contract.durations import duration
from trainables.engine.branches import branches, trial_iterations
from trainables.engine.progress import ProgressLog, TimedBatches


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _trainer_with_progress(seconds, memory=None):
    clock, lines, sunk = Clock(), [], []
    plan = branches(9, (1.0, 2.0), 2.0)
    trainer, _ = _toy_trainer(plan)
    inner_batches, inner_step = trainer._batches, trainer._step

    def slow_batches(start):
        for batch in inner_batches(start):
            clock.now += 0.25
            yield batch

    def slow_step(batch):
        clock.now += 0.75
        return inner_step(batch)

    timed = TimedBatches(slow_batches, clock=clock)
    trainer._batches, trainer._step = timed, slow_step
    hook = ProgressLog(
        seconds,
        lines.append,
        "[t]",
        images_per_step=4,
        batches=timed,
        memory=memory,
        sinks=(lambda scalars, it, phase: sunk.append((it, phase, scalars)),),
        clock=clock,
    )
    trainer.hooks.append(hook)
    return trainer, lines, sunk


def test_a_line_every_n_seconds_with_speed_data_wait_and_eta():
    trainer, lines, sunk = _trainer_with_progress(3.0)
    trainer.run()
    total = trial_iterations(trainer.plan)  # 12 of trunk, two 6-iteration cooldowns: 24
    assert total == 24 and len(lines) == total // 3  # a step is a second: every third step
    first, second = lines[0], lines[1]
    assert first.startswith("[t] trunk iter 3/18  4.0 img/s (data wait 25%)  lr 0.10000  loss ")
    assert first.endswith("trial 12% of 24 iterations, eta 21s")  # 3 s for 3 iterations, 21 to go
    # The 1x cooldown runs from the fork at 3 to 9, at a tenth of the LR.
    assert second.startswith("[t] 1x cooldown iter 6/9  4.0 img/s") and "lr 0.01000" in second
    assert "max mem" not in first  # no GPU
    assert any(" trunk iter " in line for line in lines) and any(" 2x cooldown iter " in line for line in lines)
    # The same numbers go to the sinks, at the model's iteration.
    it, phase, scalars = sunk[0]
    assert (it, phase) == (3, "trunk") and scalars["speed/images_per_s"] == pytest.approx(4.0)
    assert scalars["speed/data_wait_share"] == pytest.approx(0.25) and scalars["progress/eta_s"] == pytest.approx(21)
    assert math.isfinite(scalars["train/loss"]) and scalars["train/lr"] == pytest.approx(0.1)
    assert [s["progress/cost_iterations"] for _, _, s in sunk] == [3.0 * k for k in range(1, 9)]
    # The 1x branch, then back on the trunk from its fork at 3, then the 2x cooldown.
    assert [(it, phase) for it, phase, _ in sunk] == [
        (3, "trunk"),
        (6, "cooldown_1x"),
        (9, "cooldown_1x"),
        (6, "trunk"),
        (9, "trunk"),
        (12, "trunk"),
        (15, "cooldown_2x"),
        (18, "cooldown_2x"),
    ]


def test_the_cadence_is_time_not_iterations_and_memory_is_shown_where_measured():
    trainer, lines, _ = _trainer_with_progress(7.5, memory=lambda: 5.5)
    trainer.run()
    assert len(lines) == 24 // 8  # 7.5 s: a line after every 8th one-second step
    assert lines[0].startswith("[t] 1x cooldown iter 8/9") and "max mem 5.5 GiB" in lines[0]


def test_durations_read_as_a_person_would():
    assert [duration(s) for s in (12, 245, 11_220, 187_200)] == ["12s", "4m05s", "3h07m", "2d04h"]
