"""The paper's LR schedule rule, checked against its published iteration numbers."""

import pytest

from trainables.engine.schedule import drop_iterations, lr_at, scaled_lr, total_iterations

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


def test_schedules_count_images_whatever_the_global_batch():
    """N x is N x 90k iterations at 16 images: 8 x 2 and 16 x 2 workers see the same images
    per schedule, LR drop, warm-up and evaluation (detectron2's REFERENCE_WORLD_SIZE rule)."""
    import dataclasses

    from study.spec.presets import COCO_R50_GN, TOY
    from study.spec.study_config import at_global_batch
    from trainables.engine.branches import branches
    from trainables.engine.schedule import drop_iterations

    def in_images(workers):
        study = at_global_batch(dataclasses.replace(COCO_R50_GN, num_workers=workers))
        s, batch = study.solver, workers * study.solver.ims_per_worker
        plan = branches(s.base_iters, COCO_R50_GN.search.schedule, 6.0)
        return {
            "ends": [b.end * batch for b in plan],
            "forks": [b.fork * batch for b in plan],
            "drops": [d * batch for sched in (2.0, 6.0) for d in drop_iterations(s.base_iters, sched)],
            "warmup": s.warmup_iters * batch,
            "eval": study.eval_period * batch,
            "iterations": s.base_iters,
        }

    eight, sixteen = in_images(8), in_images(16)
    assert eight["iterations"] == 90_000 and sixteen["iterations"] == 45_000
    assert {k: v for k, v in eight.items() if k != "iterations"} == {
        k: v for k, v in sixteen.items() if k != "iterations"
    }
    assert eight["ends"][-1] == 540_000 * 16 and eight["drops"][-2:] == [480_000 * 16, 520_000 * 16]
    # A preset run at the batch it quotes is unchanged; resolving twice changes nothing.
    assert at_global_batch(TOY) is TOY
    once = at_global_batch(dataclasses.replace(TOY, num_workers=2))
    assert once.solver.base_iters == 150 and once.eval_period == TOY.eval_period // 2 and at_global_batch(once) is once
