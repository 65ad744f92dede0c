"""Frozen, typed configuration of one trial: data, model, solver and evaluation.

A trial travels through Ray as a plain dict (``dataclasses.asdict``) and is rebuilt on every
worker with ``trainables.contract.config_io.from_dict``, so what a worker runs is exactly what the
driver resolved and wrote to ``study.json``. Nothing here imports Ray or torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from trainables.contract.errors import ConfigError, InputError  # noqa: F401  (ConfigError: re-exported)

INITS = ("scratch", "pretrained")
NORMS = ("gn", "syncbn", "frozenbn")
# Detectron's Caffe2 convention (0-255 pixels minus the mean, no division; detectron2's
# PIXEL_MEAN [103.53, 116.28, 123.675] BGR and PIXEL_STD [1, 1, 1]), written for RGB images
# in [0, 1]. Used with Detectron's ImageNet GN weights, whose conv1 is flipped to RGB on load.
CAFFE2_PIXEL_MEAN = (123.675 / 255, 116.28 / 255, 103.53 / 255)
CAFFE2_PIXEL_STD = (1 / 255, 1 / 255, 1 / 255)


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of the generated COCO-format dataset (trainables/data/synthetic.py).

    The dataset is cached under a folder keyed by these values, so changing any of them
    generates a new dataset and never mixes two.
    """

    num_train: int = 600
    # The search split (scores every decision) and the test split (scores nothing but the
    # report): separately generated images, disjoint from the training images.
    num_search: int = 100
    num_test: int = 100
    min_side: int = 112
    max_side: int = 160
    max_objects: int = 6
    # Object radius range: from min_radius px to max_radius_frac of the shorter image side,
    # log-uniform (as many small objects as medium ones).
    min_radius: float = 8.0
    max_radius_frac: float = 0.35
    # Distractor lines and blobs per image (not objects).
    clutter: int = 4
    # A new object may hide at most this fraction of an earlier one.
    max_occlusion: float = 0.5
    # The first ``categories`` shape kinds of trainables/data/synthetic.py's CATEGORIES.
    categories: int = 5
    # Object textures: the first ``textures`` of solid, stripes, checks, per-pixel noise.
    textures: int = 4
    # A keypoint task instead: every object is a kite with 4 named keypoints (trainables/
    # synthetic.py's KITE), the categories above unused.
    keypoints: bool = False
    seed: int = 0
    # The test split's own generator seed (-1: drawn from ``seed`` with the other splits). A
    # preset calibrated on the search split draws its test images afresh once every choice
    # is made, so that no number it reports was looked at while choosing.
    test_seed: int = -1


@dataclass(frozen=True)
class DataConfig:
    """Where the COCO-format data lives and how training images are sampled and resized."""

    # "synthetic": generated into the cache by trainables/data/synthetic.py, all three splits;
    # "coco": the paths below point at an existing COCO-format dataset (real COCO or a fixture).
    source: Literal["synthetic", "coco"] = "synthetic"
    synthetic: SyntheticSpec = field(default_factory=SyntheticSpec)
    train_images: str = ""
    train_annotations: str = ""
    # The search split: what search, early stopping and the choice of the best trial see.
    # Either its own files, or ``search_holdout`` images held out of the training files
    # (seeded by ``subset_seed``, never trained on; the COCO presets hold out 5,000 of
    # train2017, because val2017 is their test split).
    search_images: str = ""
    search_annotations: str = ""
    search_holdout: int = 0
    # The test split: scored at every schedule's final result and reported, never used for
    # a decision. Empty for a COCO-format source: the study has no test split.
    test_images: str = ""
    test_annotations: str = ""
    # Shorter side for training; several values = one sampled per image ("train aug").
    min_size: tuple[int, ...] = (800,)
    max_size: int = 1333
    test_min_size: int = 800
    hflip_prob: float = 0.5
    # Batches of one aspect-ratio group (trainables/data/grouping.py): with factor 0, of one
    # orientation, as Detectron and detectron2 batch; with k, the ratio in 2k + 2 bins, as
    # torchvision's references do (--aspect-ratio-group-factor, 3 by default there). 0 here:
    # a study that grouped before the factor existed resumes with nearly the same batches.
    group_by_aspect: bool = False
    aspect_group_factor: int = 0
    loader_workers: int = 0
    # The task: False = instance segmentation (boxes and masks); True = also keypoints, as
    # COCO person keypoints (the categories name their keypoints): Mask R-CNN gains a
    # keypoint head, training skips images without a labelled keypoint, rows gain keypoint
    # AP. A generated dataset must be generated for it (synthetic.keypoints).
    keypoints: bool = False
    # Seed of the data-fraction subset and of the held-out search split; the same seed picks
    # the same images for every arm.
    subset_seed: int = 0
    # What a data fraction is a fraction of: 0 = the trainable images; COCO presets give
    # train2017's 118,287, as the paper counts, so its subsets have exactly 35k ... 1k images.
    fraction_of_images: int = 0

    @property
    def generated_training_images(self) -> int:
        """The generated data's training images (every one holds objects), less the held-out
        search split: what fraction 1 trains on."""
        return self.synthetic.num_train - self.search_holdout

    def __post_init__(self) -> None:
        _check(self.source in ("synthetic", "coco"), "data.source", self.source, "'synthetic' or 'coco'")
        _check(
            len(self.min_size) >= 1 and all(s > 0 for s in self.min_size),
            "data.min_size",
            self.min_size,
            "positive sizes",
        )
        _check(self.max_size >= max(self.min_size), "data.max_size", self.max_size, ">= every data.min_size")
        _check(0.0 <= self.hflip_prob <= 1.0, "data.hflip_prob", self.hflip_prob, "in [0, 1]")
        _check(self.loader_workers >= 0, "data.loader_workers", self.loader_workers, ">= 0")
        _check(self.aspect_group_factor >= 0, "data.aspect_group_factor", self.aspect_group_factor, ">= 0")
        _check(self.fraction_of_images >= 0, "data.fraction_of_images", self.fraction_of_images, ">= 0")
        _check(self.search_holdout >= 0, "data.search_holdout", self.search_holdout, ">= 0")
        _check(
            self.source != "synthetic" or self.keypoints == self.synthetic.keypoints,
            "data.keypoints",
            self.keypoints,
            f"equal to data.synthetic.keypoints={self.synthetic.keypoints} (generated data is made for one task)",
        )

    @property
    def has_test_split(self) -> bool:
        return self.synthetic.num_test > 0 if self.source == "synthetic" else bool(self.test_annotations)


@dataclass(frozen=True)
class ModelConfig:
    """Mask R-CNN with a ResNet-FPN backbone (trainables/model/mask_rcnn.py)."""

    depth: Literal[18, 50, 101] = 50
    # Channels of the stem; the four stages have width, 2x, 4x, 8x (x4 for bottlenecks).
    width: int = 64
    norm: Literal["gn", "syncbn", "frozenbn"] = "gn"
    gn_groups: int = 32
    fpn_channels: int = 256
    box_head_convs: int = 4
    box_head_fc: int = 1024
    mask_head_convs: int = 4
    # The keypoint head of a keypoint task (Mask R-CNN, He et al. 2017, Sec. 5: eight 3x3
    # 512-d convs, a deconv and 2x bilinear upscaling to 56 x 56 heatmaps); unused otherwise.
    keypoint_head_convs: int = 8
    keypoint_head_dim: int = 512
    # The keypoint head's RoI side (14 there: 56 x 56 heatmaps, 4x).
    keypoint_roi_size: int = 14
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    box_batch_size_per_image: int = 512
    detections_per_img: int = 100
    # Stages frozen for a pretrained frozenbn model (Detectron's FREEZE_AT=2: stem + res2).
    frozen_stages: int = 2
    # Input normalization, RGB, for images in [0, 1]: (x - mean) / std. The default is
    # torchvision's/timm's ImageNet statistics; Caffe2-trained Detectron weights expect
    # 0-255 pixels minus a mean and no division (CAFFE2_PIXEL_* above).
    pixel_mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, ...] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        _check(self.depth in (18, 50, 101), "model.depth", self.depth, "18, 50 or 101")
        _check(self.norm in NORMS, "model.norm", self.norm, f"one of {NORMS}")
        _check(
            self.width > 0 and (self.width % self.gn_groups == 0 or self.norm != "gn"),
            "model.width",
            self.width,
            f"a multiple of model.gn_groups={self.gn_groups}",
        )
        _check(
            self.fpn_channels % self.gn_groups == 0 or self.norm != "gn",
            "model.fpn_channels",
            self.fpn_channels,
            f"a multiple of model.gn_groups={self.gn_groups}",
        )
        _check(
            self.keypoint_head_convs >= 1 and (self.keypoint_head_dim % self.gn_groups == 0 or self.norm != "gn"),
            "model.keypoint_head_convs/keypoint_head_dim",
            (self.keypoint_head_convs, self.keypoint_head_dim),
            f">= 1 conv, of a width that is a multiple of model.gn_groups={self.gn_groups}",
        )
        _check(self.keypoint_roi_size >= 2, "model.keypoint_roi_size", self.keypoint_roi_size, ">= 2")
        _check(len(self.anchor_sizes) == 5, "model.anchor_sizes", self.anchor_sizes, "5 sizes, one per FPN level")
        _check(0 <= self.frozen_stages <= 5, "model.frozen_stages", self.frozen_stages, "in [0, 5]")
        _check(
            len(self.pixel_mean) == 3 and len(self.pixel_std) == 3 and all(v > 0 for v in self.pixel_std),
            "model.pixel_mean/pixel_std",
            (self.pixel_mean, self.pixel_std),
            "3 values each, std > 0",
        )


@dataclass(frozen=True)
class SolverConfig:
    """SGD, the paper's step schedule and the batch/LR scaling rule (trainables/engine/schedule.py)."""

    # Length of the "1x" schedule in iterations of ``schedule_batch`` images (Detectron: 90k
    # at 16 images/iteration). With warmup_iters and the study's eval_period it is counted at
    # that batch; a study run at another global batch scales all three by schedule_batch /
    # batch (study.spec.study_config.at_global_batch), so N x means the same images whatever the
    # batch, as detectron2's REFERENCE_WORLD_SIZE does (detectron2/engine/defaults.py,
    # DefaultTrainer.auto_scale_workers).
    base_iters: int = 90_000
    # 1x stated in epochs instead (> 0): the driver derives base_iters from the training
    # images it counts in the files (fraction 1, after the held-out search split) and the
    # global batch before the study starts (study.spec.study_config.in_epochs; the study's
    # eval_period keeps its share of the preset's base_iters). The paper's
    # 1x, 90k iterations of 16 images, is 12.17 epochs of COCO train2017's 118,287 images.
    epochs_per_1x: float = 0.0
    ims_per_worker: int = 2
    # The searched LR is quoted at this global batch and scaled linearly to the real one
    # (Goyal et al.; Detectron/torchvision: 0.02 at 16 images).
    reference_batch: int = 16
    schedule_batch: int = 16
    momentum: float = 0.9
    # None: norm parameters get the trial's weight decay; detectron2 and mmdetection use 0.
    weight_decay_norm: float | None = 0.0
    warmup_iters: int = 500
    warmup_factor: float = 1.0 / 3.0
    gamma: float = 0.1
    clip_grad_norm: float | None = None
    amp: bool = True  # only takes effect on GPU

    def __post_init__(self) -> None:
        _check(self.base_iters >= 9, "solver.base_iters", self.base_iters, ">= 9 (drops at 2/3 and 2/9 of it)")
        _check(self.epochs_per_1x >= 0, "solver.epochs_per_1x", self.epochs_per_1x, ">= 0 (0: 1x is base_iters)")
        _check(self.ims_per_worker >= 1, "solver.ims_per_worker", self.ims_per_worker, ">= 1")
        _check(self.reference_batch >= 1, "solver.reference_batch", self.reference_batch, ">= 1")
        _check(self.schedule_batch >= 1, "solver.schedule_batch", self.schedule_batch, ">= 1")
        _check(0.0 <= self.momentum < 1.0, "solver.momentum", self.momentum, "in [0, 1)")
        _check(self.warmup_iters >= 0, "solver.warmup_iters", self.warmup_iters, ">= 0")
        _check(0.0 < self.warmup_factor <= 1.0, "solver.warmup_factor", self.warmup_factor, "in (0, 1]")
        _check(0.0 < self.gamma <= 1.0, "solver.gamma", self.gamma, "in (0, 1]")
        _check(
            self.clip_grad_norm is None or self.clip_grad_norm > 0,
            "solver.clip_grad_norm",
            self.clip_grad_norm,
            "None or > 0",
        )


@dataclass(frozen=True)
class PretrainSpec:
    """The embedded "ImageNet": a generated classification task the backbone is trained on.

    Defaults: 8 shape classes at 48 px, 900 iterations of 64 images (57,600 images seen)
    drawn from 8,192 generated training images, SGD lr 0.1 with cosine decay
    (trainables/pretraining/pretrain.py). A trial whose pretrained init has no given weights pretrains
    its backbone from this spec on first use, and every later trial loads the cached one.
    """

    num_classes: int = 8
    image_size: int = 48
    batch_size: int = 64
    iterations: int = 900
    lr: float = 0.1
    seed: int = 0
    # Distinct generated training images (at most iterations x batch_size are ever drawn).
    num_images: int = 8192

    def __post_init__(self) -> None:
        for name in ("num_classes", "image_size", "batch_size", "iterations", "num_images"):
            _check(getattr(self, name) >= 1, f"pretrain.{name}", getattr(self, name), ">= 1")
        _check(self.lr > 0, "pretrain.lr", self.lr, "> 0")

    @property
    def images_seen(self) -> int:
        """Images the backbone sees in pretraining (iterations x batch), for the rows."""
        return self.iterations * self.batch_size


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs; scientific and nuisance values sit at the top level."""

    study: str
    arm: str
    # Scientific values (one arm = one combination of them).
    init: Literal["scratch", "pretrained"]
    data_fraction: float
    model_name: str
    # Nuisance values (searched per arm).
    lr: float
    weight_decay: float
    schedule: float
    seed: int
    # Fixed values.
    model: ModelConfig
    data: DataConfig
    solver: SolverConfig
    # The arm's schedule set: the trial also scores every one of them up to ``schedule`` on
    # a branch off its trunk (trainables/engine/branches.py). Empty: ``schedule`` alone.
    schedules: tuple[float, ...] = ()
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: int = 1
    # Extra Ray resources per worker, e.g. {"worker_node": 1} to spread workers over nodes.
    worker_resources: dict[str, float] = field(default_factory=dict)
    # Ray Train restarts of the worker group (from the latest checkpoint) before the trial fails.
    max_failures: int = 2
    eval_period: int = 0  # 0: evaluate only at the end
    # Seconds between the trial's progress lines (trainables/engine/progress.py).
    progress_seconds: float = 60.0
    # A backbone state_dict path or URL, for init == "pretrained" with real weights ...
    pretrained_weights: str = ""
    # ... or the generated pretraining of the embedded default, which the trial runs on first
    # use (cached, one run per spec whoever needs it: trainables/pretraining/pretrain.py).
    pretrain: PretrainSpec | None = None
    pretrain_images_seen: int | None = None
    # Where Parquet rows and recorded subsets go (local folder or s3:// URI).
    results_uri: str = ""
    trial_id: str = "local"
    code_version: str = "unknown"
    # Test hook: a worker raises once at this iteration (checks FailureConfig + resume).
    fail_at_iteration: int | None = None

    def __post_init__(self) -> None:
        _check(self.init in INITS, "init", self.init, f"one of {INITS}")
        _check(0.0 < self.data_fraction <= 1.0, "data_fraction", self.data_fraction, "in (0, 1]")
        _check(math.isfinite(self.lr) and self.lr > 0, "lr", self.lr, "a positive number")
        _check(math.isfinite(self.weight_decay) and self.weight_decay >= 0, "weight_decay", self.weight_decay, ">= 0")
        _check(
            math.isfinite(self.schedule) and self.schedule > 0, "schedule", self.schedule, "a positive multiple of 1x"
        )
        _check(
            all(math.isfinite(x) and x > 0 for x in self.schedules),
            "schedules",
            self.schedules,
            "positive multiples of 1x",
        )
        _check(self.num_workers >= 1, "num_workers", self.num_workers, ">= 1")
        _check(self.eval_period >= 0, "eval_period", self.eval_period, ">= 0")
        _check(self.progress_seconds > 0, "progress_seconds", self.progress_seconds, "> 0")
        _check(self.cpus_per_worker >= 1, "cpus_per_worker", self.cpus_per_worker, ">= 1")
        _check(self.max_failures >= -1, "max_failures", self.max_failures, ">= -1 (-1: unlimited)")
        _check(
            not (self.init == "scratch" and self.model.norm == "frozenbn"),
            "model.norm",
            self.model.norm,
            "gn or syncbn for init=scratch (frozen BN has no statistics to freeze without pre-training)",
        )
        _check(
            not (self.model.norm == "syncbn" and self.num_workers > 1 and not self.use_gpu),
            "model.norm",
            self.model.norm,
            "gn or frozenbn for several CPU workers (torch's SyncBatchNorm runs on GPUs only)",
        )

    @property
    def global_batch(self) -> int:
        return self.num_workers * self.solver.ims_per_worker


def _check(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is invalid: expected {expected}", field=name)
