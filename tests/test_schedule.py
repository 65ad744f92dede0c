"""The paper's LR schedule rule, checked against its published iteration numbers."""

import pytest

from trainables.schedule import drop_iterations, lr_at, scaled_lr, total_iterations

B = 90_000


@pytest.mark.parametrize(
    "n, total, drops",
    [
        (1, 90_000, (30_000, 70_000)),  # the rule applied to 1x (the paper studies 2x and longer)
        (2, 180_000, (120_000, 160_000)),  # paper: 2x drops at 120k / 160k
        (3, 270_000, (210_000, 250_000)),  # Detectron GN 3x: STEPS [0, 210000, 250000]
        (6, 540_000, (480_000, 520_000)),  # paper: 6x drops at 480k / 520k
        (9, 810_000, (750_000, 790_000)),
    ],
)
def test_paper_schedules(n, total, drops):
    assert total_iterations(B, n) == total
    assert drop_iterations(B, n) == drops
    assert total - drops[0] == 60_000 and total - drops[1] == 20_000


def test_small_base_keeps_the_shape():
    # 1x = 9 iterations: the last 6 and the last 2.
    assert drop_iterations(9, 1) == (3, 7)
    assert drop_iterations(300, 2) == (400, 533)


def test_warmup_then_steps():
    kw = dict(peak_lr=0.02, base_iters=B, schedule=2, warmup_iters=500, warmup_factor=1 / 3)
    assert lr_at(0, **kw) == pytest.approx(0.02 / 3)
    assert lr_at(250, **kw) == pytest.approx(0.02 * (1 / 3 * 0.5 + 0.5))
    assert lr_at(500, **kw) == pytest.approx(0.02)
    assert lr_at(119_999, **kw) == pytest.approx(0.02)
    assert lr_at(120_000, **kw) == pytest.approx(0.002)
    assert lr_at(159_999, **kw) == pytest.approx(0.002)
    assert lr_at(160_000, **kw) == pytest.approx(0.0002)
    with pytest.raises(ValueError):
        lr_at(-1, **kw)


def test_linear_scaling_rule():
    assert scaled_lr(0.02, 16) == pytest.approx(0.02)
    assert scaled_lr(0.02, 4) == pytest.approx(0.005)
    assert scaled_lr(0.02, 64, reference_batch=16) == pytest.approx(0.08)  # detectron2's 9x recipe


def test_short_schedules_keep_the_1x_proportions():
    # The data-fraction study's 60k (2/3x) and 15k (1/6x) runs: drops at 1/3 and 7/9.
    assert drop_iterations(B, 2 / 3) == (20_000, 46_667)
    assert drop_iterations(B, 1 / 6) == (5_000, 11_667)
    kw = dict(peak_lr=0.02, base_iters=B, schedule=1 / 6, warmup_iters=500, warmup_factor=1 / 3)
    assert lr_at(4_999, **kw) == pytest.approx(0.02)  # not already decayed at the start
