"""The arithmetic of the trial benchmark's summaries (benchmarks/trial_probe.py and
trial_speed.py), on given timestamps and timings."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from trial_probe import summarise  # noqa: E402
from trial_speed import round_summary  # noqa: E402


def test_loop_leaves_out_warmup_and_evaluations():
    # Steps every 0.5 s from t=10, but the interval after step 12 holds a 3-s evaluation.
    steps = [10 + 0.5 * i for i in range(13)] + [10 + 0.5 * 12 + 3.5 + 0.5 * i for i in range(8)]
    evals = [(16.2, 19.2)]
    out = summarise(steps, evals, trial_start=4.0, batch=2, warmup=5)
    # 7 warm intervals before the evaluation and 7 after it, each 0.5 s for 2 images.
    assert out["loop_images_per_s"] == pytest.approx(4.0)
    assert out["startup_s"] == pytest.approx(6.0)
    assert out["eval_s"] == pytest.approx(3.0)
    assert out["steps"] == len(steps)


def test_too_few_steps_is_an_error():
    with pytest.raises(ValueError, match="no interval"):
        summarise([1.0, 2.0, 3.0], [], trial_start=0.0, batch=2)


def test_a_round_reports_the_first_trials_start_up_apart_from_the_later_ones():
    trials = [
        {"loop_images_per_s": 20.0, "startup_s": 9.0, "eval_s": 2.0, "engine": "/t/engine.py"},
        {"loop_images_per_s": 22.0, "startup_s": 7.0, "eval_s": 3.0, "engine": "/t/engine.py"},
        {"loop_images_per_s": 24.0, "startup_s": 8.0, "eval_s": 4.0, "engine": "/t/engine.py"},
        {"loop_images_per_s": 26.0, "startup_s": 7.2, "eval_s": 3.0, "engine": "/t/engine.py"},
    ]
    out = round_summary(trials)
    assert out["loop_images_per_s"] == pytest.approx(23.0)
    assert out["startup_first_s"] == 9.0
    assert out["startup_later_s"] == pytest.approx(7.2)  # the median of 7.0, 8.0, 7.2
    assert out["eval_s"] == pytest.approx(3.0)
    one = round_summary(trials[:1])
    assert one["startup_first_s"] == 9.0 and one["startup_later_s"] != one["startup_later_s"]  # NaN
