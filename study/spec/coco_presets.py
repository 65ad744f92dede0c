"""The COCO presets: the paper's protocol (He et al. 2019, Secs. 3-5) on COCO 2017, on a GPU
cluster. Each is a small delta on ``coco-r50-gn``; study/spec/presets.py registers them.
"""

from __future__ import annotations

import dataclasses

from analysis.paper import DATA_FRACTION_BBOX_AP
from study.spec import step_times
from study.spec.step_times import KEYPOINT_TEST_COST
from study.spec.study_config import Axes, EarlyStopping, Margin, SearchSpace, StudyConfig, relative_margin
from trainables.contract.trial_config import DataConfig, SolverConfig
from trainables.model.zoo import R50_GN, R50_GN_CAFFE2, R50_SYNCBN, R101_GN_CAFFE2

# --- COCO presets (the paper's protocol, Sec. 4.1) --------------------------------------
COCO_ROOT = "/data/coco"  # where the cluster's staging step puts COCO on every GPU node
COCO_DATA = DataConfig(
    source="coco",
    train_images=f"{COCO_ROOT}/train2017",
    train_annotations=f"{COCO_ROOT}/annotations/instances_train2017.json",
    # The search split: 5,000 images held out of train2017 (seeded, ids recorded), so that no
    # decision sees val2017; training has the 113,287 left. A deviation from the paper, which
    # reports the val2017 AP of its chosen models: here val2017 is the test split alone.
    search_holdout=5_000,
    test_images=f"{COCO_ROOT}/val2017",
    test_annotations=f"{COCO_ROOT}/annotations/instances_val2017.json",
    # Shorter side 800 [P], max 1333 (Detectron's MAX_SIZE [C]), horizontal flip only [P].
    min_size=(800,),
    max_size=1333,
    test_min_size=800,
    hflip_prob=0.5,
    # Batches of one aspect-ratio group, as Detectron and detectron2 batch (detectron2
    # config/defaults.py: DATALOADER.ASPECT_RATIO_GROUPING = True), in torchvision's finer
    # bins (references/detection/train.py, --aspect-ratio-group-factor; 3 by default there),
    # which pad a 2-image batch of COCO-sized images less than orientation alone; factor 4
    # from benchmarks/data_pipeline.py (the padding figures are in benchmarks/README.md).
    group_by_aspect=True,
    aspect_group_factor=4,
    # benchmarks/data_pipeline.py: one loader process reads 110 COCO-sized images/s on a
    # 2-core VM's core (decode, flip, ~7 masks each; the model resizes on the GPU), against
    # the 25 images/s a GPU trains; 2 per GPU leave room for slower cores and jitter.
    loader_workers=2,
    # Data fractions count train2017's 118,287 images, as the paper's subsets do.
    fraction_of_images=118_287,
)
# The non-inferiority margin, 0.5 AP points: the largest gap at which the paper still calls
# scratch caught up (Table 1: R101 4x, 41.8 against 42.3; R50 6x is +0.2), 1.2% of R50
# pretrained's 41.1 at 6x.
COCO_MARGIN = Margin(
    0.005, "half an AP point: the largest gap the paper still calls caught up (Table 1, R101 4x: 41.8 vs 42.3)"
)
# For settings whose AP level differs from Table 1's: the same share of a reference AP.
RELATIVE_MARGIN = 0.005 / 0.411
B = 90_000  # "1x" = 90k iterations at 16 images (Detectron) [P]
# ImageNet weights, with the images their training saw (ILSVRC-2012 train: 1,281,167).
IMAGENET_TRAIN = 1_281_167
DETECTRON = "https://dl.fbaipublicfiles.com/detectron/ImageNetPretrained"
# Detectron's GN ResNets, the paper's own pretrained models (detectron2
# detectron2/checkpoint/catalog.py, ImageNetPretrained/MSRA/R-50-GN, R-101-GN); 100 epochs,
# the paper's figure for ImageNet pre-training (Sec. 4.1: "1.28M images x 100 epochs").
R50_GN_PKL = (f"{DETECTRON}/47261647/R-50-GN.pkl", 100 * IMAGENET_TRAIN)
R101_GN_PKL = (f"{DETECTRON}/47592356/R-101-GN.pkl", 100 * IMAGENET_TRAIN)
# The alternative for R50: timm's resnet50_gn.a1h_in1k (ImageNet normalization; its model
# card: the "ResNet strikes back" A1 recipe, 600 epochs), a much longer modern recipe.
TIMM_R50_GN = ("https://huggingface.co/timm/resnet50_gn.a1h_in1k/resolve/main/pytorch_model.bin", 600 * IMAGENET_TRAIN)
# torchvision's IMAGENET1K_V1 ResNet-50 (BN), trained 90 epochs (torchvision's references).
TORCHVISION_R50 = ("https://download.pytorch.org/models/resnet50-0676ba61.pth", 90 * IMAGENET_TRAIN)
COCO_R50_GN = StudyConfig(
    name="coco-r50-gn",
    description="paper Table 1: Mask R-CNN R50-FPN GN on COCO, scratch vs. ImageNet, 2x-6x, 8 GPUs x 2 images",
    axes=Axes(init=("scratch", "pretrained"), data_fraction=(1.0,), model=("r50",)),
    models={"r50": R50_GN_CAFFE2},
    data=COCO_DATA,
    # 8 GPUs x 2 images = 16 [P]; LR 0.02 at 16 with linear warm-up (Detectron: 500 iterations
    # from 1/3) [P][C]; momentum 0.9, weight decay 1e-4 [P]; no decay on GN (Detectron's
    # WEIGHT_DECAY_GN 0) [C]; LR x0.1 at the last 60k and 20k iterations [P]. AMP on GPU.
    solver=SolverConfig(
        base_iters=B,
        ims_per_worker=2,
        reference_batch=16,
        momentum=0.9,
        weight_decay_norm=0.0,
        warmup_iters=500,
        warmup_factor=1 / 3,
        gamma=0.1,
        clip_grad_norm=None,
        amp=True,
    ),
    # Centred on the paper's values, each spanning 10x: lr 0.02 / sqrt(10) .. 0.02 * sqrt(10),
    # wd 1e-4 likewise; the schedules of Table 1 (2x = 180k ... 6x = 540k iterations).
    search=SearchSpace(
        lr=(0.02 / 10**0.5, 0.02 * 10**0.5),
        weight_decay=(1e-4 / 10**0.5, 1e-4 * 10**0.5),
        schedule=(2.0, 3.0, 4.0, 5.0, 6.0),
    ),
    num_samples=6,
    num_workers=8,
    cpus_per_worker=8,
    use_gpu=True,
    # Evaluate (and checkpoint, ~0.5 GB with momentum) every 1/3 of 1x: 30k iterations.
    eval_period=30_000,
    pretrained_weights={"r50": R50_GN_PKL[0]},
    pretrained_images={"r50": R50_GN_PKL[1]},
    # The recipe's trial scores all of 2x-6x: a trunk of 480k iterations and five 60k
    # cooldowns, 780k iterations instead of 1.8M for five separate runs.
    default_trial={"lr": 0.02, "weight_decay": 1e-4, "schedule": 6.0},
    # A trial stops only beyond two draws of seed noise; the prior seed std of a schedule's
    # final bbox AP is 0.2 AP points: reruns of one COCO detection config differ by 0.2-0.3
    # points (open-mmlab/mmdetection#3624; facebookresearch/moco#39).
    early_stopping=EarlyStopping(enabled=True, reduction_factor=2, seed_std=0.002),
    margin=COCO_MARGIN,
    max_failures=-1,  # spot GPUs: retry from the last checkpoint as often as it takes
    # clusters/aws.yaml allows 4 8-GPU nodes = 32 GPUs: 4 trials of 8 workers at once (the
    # autoscaler adds a node for each pending trial's placement group).
    cluster_gpus=32,
    # Seconds per iteration of the whole 8-GPU step (16 images), for --dry-run's GPU-hours;
    # each figure's source (measured, cited or derived) is in study/spec/step_times.py.
    seconds_per_iteration=step_times.seconds(step_times.R50_GN),
    # GPU-seconds per evaluated image, forward and post-processing at one image per GPU:
    # V100: detectron2 MODEL_ZOO scratch_mask_rcnn_R_50_FPN_3x_gn, 0.061 s/im; P100: Detectron
    # GN README, R-50-FPN GN scratch 3x, 0.140 + 0.019 s/im; H200: the V100 figure scaled by
    # the two step times (not measured).
    eval_seconds_per_image={"V100": 0.061, "P100": 0.159, "H200": round(0.061 * 0.086 / 0.338, 4)},
    # The CPU side per image of 100 detections at COCO sizes, benchmarks/data_pipeline.py on a
    # 2-core x86-64 VM (2026-12-03): RLE encoding 0.084 s, COCOeval (bbox and segm) 0.015 s.
    encode_seconds_per_image=0.084,
    cocoeval_seconds_per_image=0.015,
    test_split_images=5_000,  # val2017
)
COCO_R101_GN = dataclasses.replace(
    COCO_R50_GN,
    name="coco-r101-gn",
    description="paper Table 1: Mask R-CNN R101-FPN GN on COCO, scratch vs. ImageNet, 2x-6x",
    axes=Axes(init=("scratch", "pretrained"), data_fraction=(1.0,), model=("r101",)),
    models={"r101": R101_GN_CAFFE2},
    pretrained_weights={"r101": R101_GN_PKL[0]},
    pretrained_images={"r101": R101_GN_PKL[1]},
    seconds_per_iteration=step_times.seconds(step_times.R101_GN),
    # P100: Detectron GN README, R-101-FPN GN scratch 3x, 0.177 + 0.019 s/im; V100: the R50
    # figure x 0.196/0.159, as for the step.
    eval_seconds_per_image={"V100": round(0.061 * 0.196 / 0.159, 3), "P100": 0.196},
)
COCO_R50_SYNCBN = dataclasses.replace(
    COCO_R50_GN,
    name="coco-r50-syncbn",
    description="paper Fig. 4: Mask R-CNN R50-FPN with SyncBN on COCO, scratch vs. ImageNet",
    axes=Axes(init=("scratch", "pretrained"), data_fraction=(1.0,), model=("r50-syncbn",)),
    models={"r50-syncbn": R50_SYNCBN},
    # torchvision's IMAGENET1K_V1 ResNet-50 (BN), fine-tuned with SyncBN, nothing frozen.
    pretrained_weights={"r50-syncbn": TORCHVISION_R50[0]},
    pretrained_images={"r50-syncbn": TORCHVISION_R50[1]},
    # V100: detectron2 MODEL_ZOO mask_rcnn_R_50_FPN_3x_syncbn, 0.345 s/iter, 0.053 s/im.
    seconds_per_iteration=step_times.seconds(step_times.R50_SYNCBN),
    eval_seconds_per_image={"V100": 0.053},
)
COCO_R50_GN_TIMM = dataclasses.replace(
    COCO_R50_GN,
    name="coco-r50-gn-timm",
    description="coco-r50-gn with timm's resnet50_gn (600-epoch recipe) instead of Detectron's R-50-GN.pkl",
    # A model of its own name: its pretrained arm is not the paper's (Detectron's 100-epoch
    # R-50-GN.pkl), so the report puts none of the paper's numbers beside it.
    axes=Axes(init=("scratch", "pretrained"), data_fraction=(1.0,), model=("r50-timm",)),
    models={"r50-timm": R50_GN},  # timm's weights expect ImageNet's mean/std on 0-1 RGB
    pretrained_weights={"r50-timm": TIMM_R50_GN[0]},
    pretrained_images={"r50-timm": TIMM_R50_GN[1]},
)
TRAIN2017_IMAGES = 118_287  # COCO train2017 [P]
COCO_R50_GN_SUBSETS = dataclasses.replace(
    COCO_R50_GN,
    name="coco-r50-gn-subsets",
    description="paper Sec. 5.2: R50-FPN GN on 35k/10k/3.5k/1k-image subsets of train2017, scratch vs. ImageNet",
    # With data.fraction_of_images = 118,287 these give exactly 35,000 / 10,000 / 3,500 /
    # 1,000 trainable images, nested (one seeded permutation); data.subset_seed picks the
    # same images for both inits, and every subset's ids are recorded in subsets/.
    axes=Axes(
        init=("scratch", "pretrained"),
        model=("r50",),
        data_fraction=tuple(n / TRAIN2017_IMAGES for n in (35_000, 10_000, 3_500, 1_000)),
    ),
    # The paper found shorter schedules best on less data: 10k images peaked at 60k
    # iterations pretrained and 220k scratch; 35k at 6x (pretrained). In units of 1x = 90k:
    search=SearchSpace(
        lr=(0.02 / 10**0.5, 0.04 * 10**0.5), weight_decay=(1e-4 / 10**0.5, 1e-4 * 10**0.5), schedule=(2.0, 4.0, 6.0)
    ),
    search_overrides=tuple(
        (
            f"data_fraction={n / TRAIN2017_IMAGES}",
            SearchSpace(
                lr=(0.02 / 10**0.5, 0.02 * 10**0.5), weight_decay=(1e-4 / 10**0.5, 1e-4 * 10**0.5), schedule=schedules
            ),
        )
        for n, schedules in (
            (10_000, (2 / 3, 4 / 3, 2.0, 2.5)),
            (3_500, (1 / 3, 2 / 3, 4 / 3)),
            (1_000, (1 / 6, 1 / 3, 2 / 3)),
        )
    ),
    # Each subset's first trial uses the paper's lr and weight decay and runs its whole set;
    # the 35k subset's is the paper's own for it (Sec. 5.2 footnote): start LR 0.04.
    default_trial={**COCO_R50_GN.default_trial, "schedule": 6.0},
    default_overrides=(
        (f"data_fraction={35_000 / TRAIN2017_IMAGES}", {"lr": 0.04}),
        (f"data_fraction={10_000 / TRAIN2017_IMAGES}", {"schedule": 2.5}),
        (f"data_fraction={3_500 / TRAIN2017_IMAGES}", {"schedule": 4 / 3}),
        (f"data_fraction={1_000 / TRAIN2017_IMAGES}", {"schedule": 2 / 3}),
    ),
    # The rest of the 35k recipe (Sec. 5.2 footnote), for both inits: train-time scale
    # augmentation over [512, 800] (shorter side drawn per image, in detectron2's steps of
    # 32) and an LR decay factor of 0.02 instead of 0.1 at each drop.
    trial_overrides=(
        (
            f"data_fraction={35_000 / TRAIN2017_IMAGES}",
            {"solver.gamma": 0.02, "data.min_size": list(range(512, 801, 32))},
        ),
    ),
    num_samples=4,
    # Each subset's margin is the same share of the paper's pretrained AP on it (Sec. 5.2:
    # 36.3 / 26.0 / 16.0 / 9.9): half a point is 1.4% of the 35k subset's AP but 5% of the
    # 1k subset's.
    margin_overrides=tuple(
        (
            f"data_fraction={n / TRAIN2017_IMAGES}",
            relative_margin(
                RELATIVE_MARGIN,
                pretrained / 100,
                f"the share of half a point at 41.1 AP, of the paper's pretrained AP on the {n:,}-image subset "
                f"(Sec. 5.2: {pretrained})",
            ),
        )
        for n, (pretrained, _) in sorted(DATA_FRACTION_BBOX_AP.items(), reverse=True)
    ),
)

# Sec. 5.1: Mask R-CNN R50-FPN GN trained for COCO person keypoints, scratch against
# Detectron's R-50-GN.pkl: 65.6 against 65.5 keypoint AP at 2x, and "only 2x and 3x"
# needed. The model is coco-r50-gn's with the keypoint head of Mask R-CNN (He et al. 2017,
# Sec. 5: eight 3x3 512-d convs, GN here as in every other head, the paper's GN setting;
# torchvision's KeypointRCNNHeads) beside its mask head, trained on the 17 keypoints of
# person_keypoints_*.json (images without a labelled person are skipped in training, as
# detectron2's MIN_KEYPOINTS_PER_IMAGE = 1 does); keypoint AP (OKS, COCO's sigmas) decides.
COCO_KEYPOINT_DATA = dataclasses.replace(
    COCO_DATA,
    train_annotations=f"{COCO_ROOT}/annotations/person_keypoints_train2017.json",
    test_annotations=f"{COCO_ROOT}/annotations/person_keypoints_val2017.json",
    keypoints=True,
    # A data fraction counts the images that train (those with a labelled person), not
    # train2017's 118,287 as the box presets' do.
    fraction_of_images=0,
)
# The keypoint figures are coco-r50-gn's scaled by torchvision's Keypoint / Mask R-CNN time
# ratios (study/spec/step_times.py; not measured).
COCO_R50_GN_KEYPOINTS = dataclasses.replace(
    COCO_R50_GN,
    name="coco-r50-gn-keypoints",
    description="paper Sec. 5.1: Mask R-CNN R50-FPN GN on COCO person keypoints, scratch vs. ImageNet, 2x and 3x",
    data=COCO_KEYPOINT_DATA,
    search=dataclasses.replace(COCO_R50_GN.search, schedule=(2.0, 3.0)),
    # The recipe's trial scores 2x and 3x: a trunk of 210k iterations and two 60k cooldowns.
    default_trial={**COCO_R50_GN.default_trial, "schedule": 3.0},
    num_samples=4,
    objective="keypoints_AP",
    # The same share of the paper's pretrained keypoint AP at 2x (Sec. 5.1: 65.5).
    margin=relative_margin(
        RELATIVE_MARGIN, 0.655, "the share of half a point at 41.1 AP, of the paper's pretrained keypoint AP (65.5)"
    ),
    seconds_per_iteration=step_times.seconds(step_times.R50_GN_KEYPOINTS),
    eval_seconds_per_image={
        gpu: round(s * KEYPOINT_TEST_COST, 4) for gpu, s in COCO_R50_GN.eval_seconds_per_image.items()
    },
)

# --- Your own COCO-format dataset (docs/your_data.md) ---------------------------------------
# coco-r50-gn's model, recipe and search on a dataset of the user's, named in a --config file.
# Every count comes from the files: the training images (fractions are fractions of those),
# instances, categories, the splits' sizes, and 1x, stated in epochs as the paper's is on COCO
# (90k iterations of 16 images = 12.17 epochs of train2017's 118,287 images, Sec. 4.1): the
# driver derives the iterations from the images it counts and the batch (in_epochs).
OWN_DATA = dataclasses.replace(
    COCO_R50_GN,
    name="own-data",
    description="your COCO-format dataset (data.* in a --config file): R50-FPN GN, scratch vs. ImageNet, "
    "1x = 12.17 epochs of the images counted, 1x-32x",
    data=dataclasses.replace(
        COCO_DATA,
        train_images="",
        train_annotations="",
        search_holdout=0,
        test_images="",
        test_annotations="",
        fraction_of_images=0,
    ),
    solver=dataclasses.replace(COCO_R50_GN.solver, epochs_per_1x=round(B * 16 / TRAIN2017_IMAGES, 2)),
    # In epochs of the data, smaller sets needed longer schedules in the paper (Sec. 5.2: the
    # 10k-image subset peaked at 60k iterations pretrained, 96 epochs = 8x here, and 220k from
    # scratch, 352 epochs = 29x); doubling from 1x to 32x spans 12 to 390 epochs.
    search=dataclasses.replace(COCO_R50_GN.search, schedule=(1.0, 2.0, 4.0, 8.0, 16.0, 32.0)),
    default_trial={**COCO_R50_GN.default_trial, "schedule": 32.0},
    # The margin must be fixed before the run: half a COCO AP point, until the team sets its
    # own (margin.ap and margin.reason in the config file; docs/your_data.md).
    test_split_images=0,
)
