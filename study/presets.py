"""Named study presets, each a small delta on one base.

``smoke`` and ``toy`` run on a laptop CPU with the generated data and the embedded
pretraining; the COCO presets follow the paper's protocol (He et al. 2019, Secs. 3-5). Derived
numbers are computed, never typed twice.
"""

from __future__ import annotations

import dataclasses

from study.coco_presets import (
    COCO_R50_GN,
    COCO_R50_GN_KEYPOINTS,
    COCO_R50_GN_SUBSETS,
    COCO_R50_GN_TIMM,
    COCO_R50_SYNCBN,
    COCO_R101_GN,
)
from study.config import Axes, EarlyStopping, Margin, SearchSpace, StudyConfig, relative_margin
from trainables.config import DataConfig, PretrainSpec, SolverConfig, SyntheticSpec

# The model configurations (plain dataclasses; no torch).
from trainables.zoo import TINY_GN, TINY_GN_KEYPOINTS

LOCAL_MODELS = {"tiny": TINY_GN}

# --- Local presets ----------------------------------------------------------------------
# Where the toy's constants come from: the task, the model's cost, the 1x length, the
# schedule set, the batch, the number of training images and the recipe were each chosen
# from bbox AP on the generated search split, and from the study's time on 2 cores. None was
# chosen on the test split, which is scored only for the report. The aim (the paper's regime,
# Table 1): pretrained flat at the longest schedules, and ahead at the shortest. At batch 2
# the tiny model's AP grows with the optimizer steps it takes, about the same per step
# whatever the task's details or the LR in the searched range; with 600 training images
# pretrained still climbs after 2,400 steps, with 200 it levels off by 2,100
# (docs/toy_calibration.md): the budget is spent on steps (cheap images, a cheap model, two
# trials at once), and the plateau comes from the size of the training set, as the paper's
# own plateau is that of COCO's 118k images.
TOY_DATA = DataConfig(
    source="synthetic",
    # 5 shape categories in random solid colours, 1-6 objects of 32-100 px that do not
    # occlude each other, over noisy gradients, crowd regions included; 96-128 px images.
    # Textures, distractors and occlusion (SyntheticSpec's defaults) only slow the learning
    # down; larger images cost more per step for no faster learning per step.
    # 200 training images; 100 search-split images score the search, early stopping and
    # the best trial; 100 test-split images score only the report.
    synthetic=SyntheticSpec(
        num_train=200,
        num_search=100,
        num_test=100,
        min_side=96,
        max_side=128,
        max_objects=6,
        min_radius=16,
        max_radius_frac=0.4,
        clutter=0,
        max_occlusion=0.0,
        textures=1,
        seed=0,
    ),
    min_size=(96,),
    max_size=144,
    test_min_size=96,
    hflip_prob=0.5,
    # Random batches: the toy was calibrated so (docs/toy_calibration.md); its 96-128 px
    # images pad little. `--set data.group_by_aspect=true` groups them as the COCO presets do.
    group_by_aspect=False,
)
# Both inits search the same schedules. 1x is where pretrained's head start shows; 7x and
# 8x are where pretrained levels off (the paper's 4x-6x). A schedule between them would
# cost each long trial a cooldown and two evaluations, and the default its 10 minutes.
TOY_SEARCH = SearchSpace(lr=(0.08, 1.0), weight_decay=(1e-5, 1e-3), schedule=(1.0, 7.0, 8.0))

TOY = StudyConfig(
    name="toy",
    description="the embedded default: generated COCO-format data, tiny Mask R-CNN, CPU, 8.5-12.5 minutes on 2 cores",
    axes=Axes(init=("scratch", "pretrained"), data_fraction=(1.0,), model=("tiny",)),
    models=LOCAL_MODELS,
    data=TOY_DATA,
    # 1x = 300 iterations of 2 images = 600 images, three passes over the training set; the LR
    # drops at the last 200 and 67 iterations of each schedule (the paper's last 60k and
    # 20k of 90k, scaled), after 60 iterations of warm-up. The recipe's trial scores all
    # three schedules in 2,800 iterations (a trunk to 2,200, three cooldowns of 200)
    # instead of 4,800 for three runs. One worker training 2 images per step, two trials at once,
    # does more steps per second on 2 cores than one trial of 2 DDP workers x 1 image.
    # Clipping guards the high-LR corner of the search.
    solver=SolverConfig(
        base_iters=300,
        ims_per_worker=2,
        reference_batch=16,
        # The toy's 1x is 300 iterations of its own batch of 2 images (1 worker x 2).
        schedule_batch=2,
        warmup_iters=60,
        warmup_factor=1 / 3,
        clip_grad_norm=10.0,
    ),
    # LR is quoted at 16 images (x2/16 at the real batch of 2); 0.3 works well for both inits
    # on this data (0.15 gives the same, 0.6 less), so the range spans ~4x either side of it.
    search=TOY_SEARCH,
    # Two trials per arm (the recipe, then Optuna's pick), each on 1 worker of one core, two
    # trials at once.
    num_samples=2,
    num_workers=1,
    cpus_per_worker=1,
    # Trunk evaluations every 3x: the training curves' points at the peak LR.
    eval_period=900,
    # 1,500 iterations of 64 images (96,000 images seen) drawn from 16,384 generated ones:
    # held-out accuracy about 0.96. A weaker backbone leaves the pretrained arm climbing at
    # 8x (docs/toy_calibration.md). The first pretrained trial pretrains it on its own CPU
    # (about 2 minutes on one core) while the scratch recipe trains beside it.
    pretrain=PretrainSpec(iterations=1500, num_images=16384),
    # The recipe runs the whole set: Table 1's design, every schedule for both inits.
    default_trial={"lr": 0.3, "weight_decay": 1e-4, "schedule": 8.0},
    # A trial stops only beyond two draws of seed noise: the prior seed std of a schedule's
    # final AP is 0.02, the largest measured over three seeds of the recipe (pretrained at 1x,
    # 0.022; 0.002-0.016 elsewhere; docs/replicates.md).
    early_stopping=EarlyStopping(enabled=True, reduction_factor=2, seed_std=0.02),
    margin=Margin(
        0.02,
        "about 2.7% of the AP pretrained levelled off at on the search split while the toy was calibrated "
        "(0.734 at 8x, docs/toy_calibration.md); the paper's half point is 1.2% of 41 AP",
    ),
)
# The toy's margin as a share of its reference AP, for the toy's other settings.
TOY_SHARE = 0.02 / 0.734

SMOKE = dataclasses.replace(
    TOY,
    name="smoke",
    description="seconds-scale check of the whole stack: tiny data, a few iterations, 2 trials per arm",
    data=dataclasses.replace(
        TOY_DATA,
        synthetic=SyntheticSpec(
            num_train=24, num_search=8, num_test=8, min_side=96, max_side=112, max_objects=4, seed=0
        ),
        min_size=(96,),
        max_size=128,
        test_min_size=96,
    ),
    # 1x = 9 iterations of 4 images (2 DDP workers x 2): drops at iterations 3 and 7 (the
    # last 6 and 2). Two workers, so that the smoke runs exercise DDP.
    solver=dataclasses.replace(TOY.solver, base_iters=9, warmup_iters=2, ims_per_worker=2, schedule_batch=4),
    search=SearchSpace(lr=(0.01, 0.05), weight_decay=(1e-5, 1e-3), schedule=(1.0, 2.0)),
    num_samples=2,
    num_workers=2,
    eval_period=6,
    pretrain=PretrainSpec(iterations=10, batch_size=16, lr=0.05),
    default_trial={"lr": 0.02, "weight_decay": 1e-4, "schedule": 2.0},
    early_stopping=EarlyStopping(enabled=True, reduction_factor=2, seed_std=0.001),
    margin=Margin(0.001, "smoke-size APs are noise: the margin only has to be positive"),
)

TOY_SCALING = dataclasses.replace(
    TOY,
    name="toy-scaling",
    description="toy plus a data-fraction axis (all images and 30%), paper Sec. 5.2 in miniature",
    # 30% of 200 images = 60 (the paper's 118k -> 35k subset, scaled).
    axes=Axes(init=("scratch", "pretrained"), data_fraction=(1.0, 0.3), model=("tiny",)),
    num_samples=2,
    # The 60-image arm's AP is lower: the same share of its own reference, the pretrained
    # recipe at 8x on the search split (docs/toy_calibration.md).
    margin_overrides=(
        (
            "data_fraction=0.3",
            relative_margin(
                TOY_SHARE,
                0.626,
                "the toy's share (0.02 of 0.734) of the pretrained recipe's search-split AP at 8x on 60 images",
            ),
        ),
    ),
)

TOY_REPLICATES = dataclasses.replace(
    TOY,
    name="toy-replicates",
    description="the toy's recipe under 3 seeds per init: seed noise, the gap's intervals and a non-inferiority "
    "verdict per schedule",
    # The recipe alone (the paper's Table 1 design: one recipe at every schedule), trained
    # under seeds 0-2; each seed changes the model init, the data order and the generated
    # pretraining (the same 200 training images). Three seeds took 16.5 minutes on 2 cores
    # (docs/replicates.md); Welch's interval is wide at this count (t = 2.78 at 4 degrees of
    # freedom), so "inconclusive" is a likely reading wherever the gap is small: raise it
    # with --replicates on --resume.
    num_samples=1,
    replicates=3,
)

# The paper's third claim, "multiple tasks and metrics" (Sec. 5.1: COCO person keypoints,
# 65.6 keypoint AP from scratch against 65.5 pretrained at 2x): the toy's data redrawn as
# kites with 4 named keypoints (trainables/synthetic.py's KITE), the same image sizes, 600
# training images (the keypoint task was calibrated with them), the toy's generated
# pretraining (the backbone is the same, so its cache is shared), the model with a keypoint
# head, keypoint AP (OKS, the sigmas the dataset states) the objective. The paper needed only
# 2x and 3x for keypoints; here 2x, 3x and 4x (1x = 300 iterations, as the toy's; at 1x
# neither init's keypoint AP is above 0.01 on the search split), the recipe alone per init
# (Table 1's design), to stay within the default's budget: keypoint AP is still rising at
# 4x (docs/keypoints.md), not calibrated to a plateau.
TOY_KEYPOINT_DATA = dataclasses.replace(
    TOY_DATA, keypoints=True, synthetic=dataclasses.replace(TOY_DATA.synthetic, keypoints=True, num_train=600)
)
TOY_KEYPOINTS = dataclasses.replace(
    TOY,
    name="toy-keypoints",
    description="the toy on a generated keypoint task (kites, 4 keypoints): keypoint AP, scratch vs pretrained",
    models={"tiny": TINY_GN_KEYPOINTS},
    data=TOY_KEYPOINT_DATA,
    search=dataclasses.replace(TOY_SEARCH, schedule=(2.0, 3.0, 4.0)),
    default_trial={**TOY.default_trial, "schedule": 4.0},
    num_samples=1,
    # Trunk evaluations every 1x: the training curves' points.
    eval_period=300,
    objective="keypoints_AP",
    # Keypoint AP is far lower than box AP here: the toy's share of pretrained's search-split
    # keypoint AP at 4x, the preset's longest schedule (docs/keypoints.md).
    margin=relative_margin(
        TOY_SHARE, 0.141, "the toy's share (0.02 of 0.734) of pretrained's search-split keypoint AP at 4x"
    ),
)
SMOKE_KEYPOINTS = dataclasses.replace(
    SMOKE,
    name="smoke-keypoints",
    description="smoke on the generated keypoint task: the keypoint path through the whole stack in seconds",
    models={"tiny": TINY_GN_KEYPOINTS},
    data=dataclasses.replace(
        SMOKE.data, keypoints=True, synthetic=dataclasses.replace(SMOKE.data.synthetic, keypoints=True)
    ),
    objective="keypoints_AP",
)

PRESETS: dict[str, StudyConfig] = {
    p.name: p
    for p in (
        SMOKE,
        TOY,
        TOY_SCALING,
        TOY_REPLICATES,
        TOY_KEYPOINTS,
        SMOKE_KEYPOINTS,
        COCO_R50_GN,
        COCO_R50_GN_TIMM,
        COCO_R101_GN,
        COCO_R50_SYNCBN,
        COCO_R50_GN_SUBSETS,
        COCO_R50_GN_KEYPOINTS,
    )
}


def get_preset(name: str) -> StudyConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; choose from: {', '.join(PRESETS)}") from None
