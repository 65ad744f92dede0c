"""Hand-built result rows with known answers, for the tests of analysis/ (tables, report,
figures)."""

import pandas as pd

from trainables.contract import row_store
from trainables.engine.branches import branches


def rows_of(
    trial,
    arm_init,
    lr,
    wd,
    trunk,
    finals,
    trunk_aps=(),
    status="completed",
    seed=0,
    fraction=1.0,
    model="tiny",
    pretrain=None,
    period=100,
    base=200,
    test=None,
):
    """Rows of one trial with trunk schedule ``trunk``, written in the order a run computes them.

    ``finals``: schedule -> final AP, for the schedules it finished (a trial stopped early
    lists fewer than its plan); ``trunk_aps``: trunk evaluations every ``period`` trunk
    iterations; the last final gets ``status``. A final's test-split AP: ``test[schedule]``,
    or its search AP minus 0.02 (test APs are on final rows only).
    """
    test = test or {}
    out, cost, it, aps = [], 0, 0, list(trunk_aps)

    def row(**kw):
        return {
            "study": "t",
            "arm": f"{arm_init}-{model}-f{fraction:g}",
            "trial_id": trial,
            "init": arm_init,
            "data_fraction": fraction,
            "train_images": int(600 * fraction),
            "model": model,
            "norm": "gn",
            "lr": lr,
            "weight_decay": wd,
            "trunk_schedule": trunk,
            "batch_size": 4,
            "seed": seed,
            "num_workers": 2,
            "lr_now": lr,
            "code_version": "t",
            "pretrain_images_seen": pretrain,
            "cost_iterations": cost,
            "cost_images": 4 * cost,
            "wall_time_s": 36.0 * (len(out) + 1),
            "images_seen": 4 * kw["iteration"],
            **kw,
        }

    for b in branches(base, tuple(finals), trunk):
        if b.schedule not in finals:
            break
        for t in range(it + 1, b.fork + 1):
            cost += 1
            if t % period == 0 and aps:
                ap = aps.pop(0)
                out.append(
                    row(
                        phase="trunk",
                        schedule=trunk,
                        iteration=t,
                        max_iterations=int(base * trunk),
                        loss=1.0,
                        bbox_AP=ap,
                        segm_AP=ap * 0.9,
                        status="running",
                    )
                )
        it = b.fork
        cost += b.end - b.fork
        ap = finals[b.schedule]
        last = b.schedule == max(finals)
        out.append(
            row(
                phase="final",
                schedule=b.schedule,
                iteration=b.end,
                max_iterations=b.end,
                fork_iteration=b.fork,
                loss=0.5,
                bbox_AP=ap,
                segm_AP=ap * 0.9,
                test_bbox_AP=test.get(b.schedule, ap - 0.02),
                test_segm_AP=test.get(b.schedule, ap - 0.02) * 0.9,
                status=status if last else "completed",
            )
        )
    return out


def frame(rows):
    df = pd.DataFrame(rows)
    for col in row_store.COLUMNS:
        if col not in df:
            df[col] = None
    return df[list(row_store.COLUMNS)]


def study_frame() -> pd.DataFrame:
    """Seven trials of two arms, with known best results per schedule."""
    rows = []
    rows += rows_of("s1", "scratch", 0.1, 1e-4, 1.0, {1.0: 0.3})
    rows += rows_of("s2", "scratch", 0.3, 1e-4, 2.0, {1.0: 0.25, 2.0: 0.55}, [0.1, 0.2])  # the recipe; best at 2x
    rows += rows_of("s3", "scratch", 0.9, 1e-3, 2.0, {1.0: 0.0}, status="diverged")
    rows += rows_of("s4", "scratch", 0.2, 1e-4, 2.0, {1.0: 0.1})  # stopped at the 1x rung
    rows += rows_of("p1", "pretrained", 0.5, 1e-4, 1.0, {1.0: 0.5}, pretrain=57600)  # pretrained best at 1x
    rows += rows_of("p2", "pretrained", 0.3, 1e-4, 2.0, {1.0: 0.45, 2.0: 0.52}, [0.3, 0.4], pretrain=57600)
    rows += rows_of("p3", "pretrained", 0.3, 1e-4, 2.0, {1.0: 0.44, 2.0: 0.48}, [0.3, 0.4], pretrain=57600, seed=1)
    return frame(rows)


RECIPES = {"scratch-tiny-f1": (0.3, 1e-4), "pretrained-tiny-f1": (0.3, 1e-4)}
