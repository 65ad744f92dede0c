"""A study: scientific axes, nuisance search ranges and fixed settings, as frozen dataclasses.

In the terms of Google's Deep Learning Tuning Playbook ("scientific, nuisance and fixed
hyperparameters"): the *scientific* values are the
comparison the study is about (init = scratch | pretrained, data fraction, model), and each
combination of them is an *arm*; the *nuisance* values (learning rate, weight decay,
schedule length) are searched separately for every arm so the comparison is fair; all
other values are *fixed*, live in one place here and are copied into every result row.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from study.spec.margins import Margin, relative_margin
from trainables.contract.rows import ARM_KEYS, RECIPE_KEYS
from trainables.contract.trial_config import (
    INITS,
    ConfigError,
    DataConfig,
    ModelConfig,
    PretrainSpec,
    SolverConfig,
    _check,
)

# Solver fields counted in iterations at the schedule batch (at_global_batch scales them).
BATCH_SCALED = frozenset({"base_iters", "warmup_iters", "schedule_batch"})


@dataclass(frozen=True)
class SearchSpace:
    """Nuisance ranges for one arm. LR is quoted at the solver's reference batch (16 images)."""

    lr: tuple[float, float] = (0.005, 0.05)  # log-uniform
    weight_decay: tuple[float, float] = (3e-5, 3e-4)  # log-uniform
    schedule: tuple[float, ...] = (1.0,)  # categorical: the N of "N x"

    def __post_init__(self) -> None:
        for name in ("lr", "weight_decay"):
            lo, hi = getattr(self, name)
            _check(0 < lo <= hi, f"search.{name}", getattr(self, name), "a (low, high) range with 0 < low <= high")
        _check(
            len(self.schedule) >= 1 and all(s > 0 for s in self.schedule),
            "search.schedule",
            self.schedule,
            "one or more positive schedule multipliers",
        )


@dataclass(frozen=True)
class Axes:
    """The scientific axes; their product gives the arms."""

    init: tuple[str, ...] = INITS
    data_fraction: tuple[float, ...] = (1.0,)
    model: tuple[str, ...] = ("r50",)

    def __post_init__(self) -> None:
        _check(bool(self.init) and set(self.init) <= set(INITS), "axes.init", self.init, f"a subset of {INITS}")
        _check(
            bool(self.data_fraction) and all(0 < f <= 1 for f in self.data_fraction),
            "axes.data_fraction",
            self.data_fraction,
            "fractions in (0, 1]",
        )
        _check(bool(self.model), "axes.model", self.model, "at least one model name")


# z_0.95 x sqrt(2): a gap this many seed stds wide is one that two draws of an equally good
# trial reach by chance at most 5 % of the time (early stopping's guard, study/hpo/scheduler.py).
NOISE_GAPS = 1.6448536269514722 * math.sqrt(2)


@dataclass(frozen=True)
class EarlyStopping:
    """Rungs at the schedules of each arm's set (study/hpo/scheduler.py): at each schedule's
    final result the bottom 1 - 1/reduction_factor of the arm's trials stop, but only a
    trial below the rung's cutoff by more than two draws of seed noise differ by chance
    (z_0.95 x sqrt(2) x the rung's seed std): two trials equally good are both kept, but for
    one time in twenty. The rung's seed std is measured where the study has seeds of one
    configuration at that schedule (replicates), else ``seed_std``, a prior the preset
    states. The recipe trial is never stopped."""

    enabled: bool = True
    reduction_factor: int = 3
    # The prior seed standard deviation of a schedule's final AP (AP units), with its reason
    # in the preset.
    seed_std: float = 0.002

    def __post_init__(self) -> None:
        _check(self.reduction_factor >= 2, "early_stopping.reduction_factor", self.reduction_factor, ">= 2")
        _check(0 < self.seed_std < 1, "early_stopping.seed_std", self.seed_std, "in (0, 1) AP")


@dataclass(frozen=True)
class StudyConfig:
    """A preset: everything a study needs except where its results go."""

    name: str
    description: str
    axes: Axes
    models: dict[str, ModelConfig]
    data: DataConfig
    solver: SolverConfig
    search: SearchSpace
    # Per-arm range overrides, keyed "init=scratch", "data_fraction=0.1" or "model=r101";
    # later entries win.
    search_overrides: tuple[tuple[str, SearchSpace], ...] = ()
    num_samples: int = 8  # trials per arm
    num_workers: int = 2
    cpus_per_worker: int = 1
    use_gpu: bool = False
    eval_period: int = 0
    # A progress line from each trial about this often (images/s, data wait, LR, loss, ETA):
    # a minute at COCO scale, seconds for the toys. detectron2 prints every 20 iterations.
    progress_seconds: float = 60.0
    seed: int = 0
    # Seeds each arm's recipe and best (lr, weight decay) are scored under after the search
    # (seed, seed + 1, ...; study/hpo/replicate_phase.py): 1 = the search's seed alone, no replicates.
    replicates: int = 1
    # Whether the replicate phase reruns each arm's best of the search too (on fresh seeds),
    # or the recipe alone (the primary reading; a preset on a tight budget).
    replicate_best: bool = True
    # Embedded pretraining (the toy "ImageNet"), or per-model weight URLs/paths for real ones.
    pretrain: PretrainSpec | None = None
    pretrained_weights: dict[str, str] = field(default_factory=dict)
    # Images each model's weights saw in their ImageNet training (epochs x 1,281,167), as
    # their source states it; recorded in study.json and every pretrained row, and drawn in
    # the AP-vs-images figure (a model without an entry is drawn as "unknown").
    pretrained_images: dict[str, int] = field(default_factory=dict)
    # The paper's recipe: each arm's first trial, and the values a --trial run uses for
    # keys it does not set.
    default_trial: dict[str, Any] = field(default_factory=lambda: {"lr": 0.02, "weight_decay": 1e-4, "schedule": 1.0})
    # Per-arm changes to default_trial, keyed like search_overrides (e.g. a longer schedule
    # for scratch, which the paper trains for longer); later entries win.
    default_overrides: tuple[tuple[str, dict[str, Any]], ...] = ()
    # Per-arm changes to the fixed solver and data settings, keyed like search_overrides,
    # e.g. ("data_fraction=0.3", {"solver.gamma": 0.02, "data.min_size": [512, 800]}): a
    # recipe that differs by more than lr, weight decay and schedule (the paper's 35k
    # subset, Sec. 5.2 footnote). Lengths counted in iterations (solver.base_iters,
    # warmup_iters, schedule_batch) stay study-wide: they scale with the global batch.
    trial_overrides: tuple[tuple[str, dict[str, Any]], ...] = ()
    objective: str = "bbox_AP"
    # The non-inferiority margin of every (model, data fraction), and per-comparison
    # overrides keyed "data_fraction=0.1" or "model=r101" (later entries win): arms whose
    # AP levels differ widely need margins of their own.
    margin: Margin = field(
        default_factory=lambda: Margin(
            0.005, "half an AP point: the paper calls gaps of 0.1-0.5 points caught up (Table 1)"
        )
    )
    margin_overrides: tuple[tuple[str, Margin], ...] = ()
    early_stopping: EarlyStopping = field(default_factory=EarlyStopping)
    max_failures: int = 2
    # Trials at once; 0 derives it from the cluster's CPUs/GPUs when the study starts.
    max_concurrent_trials: int = 0
    # An autoscaling cluster starts without GPU nodes: the GPUs it may grow to, so that as
    # many trials are started as will fit (each pending one makes the autoscaler add nodes).
    cluster_gpus: int = 0
    # Where the Optuna studies live. "" = optuna.db (SQLite) in the study folder, on the
    # driver's disk (for s3:// results, a copy is published beside them after the search).
    # Otherwise an Optuna storage that outlives the head node: an RDB URL (postgresql://,
    # mysql+pymysql://, sqlite:///PATH) or "journal:PATH", a journal file on a shared
    # filesystem (EFS, NFS). There each arm's study is named FOLDER:ARM (FOLDER: the study
    # folder's name), so several studies may share one database.
    optuna_storage: str = ""
    # Seconds per iteration per GPU type, for --dry-run cost estimates (cited in presets).
    seconds_per_iteration: dict[str, float] = field(default_factory=dict)
    # GPU-seconds per evaluated image (forward and post-processing, one image per GPU) per
    # GPU type, for the evaluations' share of the cost; and the test split's image count
    # where the plan cannot count it (COCO's val2017), 0 = none or generated.
    eval_seconds_per_image: dict[str, float] = field(default_factory=dict)
    # The CPU side, during which the trial's GPUs wait: each rank's RLE encoding of its
    # images, and rank 0's COCOeval of the split (all GPUs wait), seconds per image.
    encode_seconds_per_image: float = 0.0
    cocoeval_seconds_per_image: float = 0.0
    test_split_images: int = 0

    def __post_init__(self) -> None:
        unknown = [m for m in self.axes.model if m not in self.models]
        _check(not unknown, "axes.model", self.axes.model, f"names from models ({', '.join(self.models)})")
        _check(self.num_samples >= 1, "num_samples", self.num_samples, ">= 1")
        _check(self.num_workers >= 1, "num_workers", self.num_workers, ">= 1")
        _check(self.replicates >= 1, "replicates", self.replicates, ">= 1 (1: no replicates)")
        for gpu, value in self.eval_seconds_per_image.items():
            _check(value > 0, f"eval_seconds_per_image.{gpu}", value, "> 0")
        _check(self.test_split_images >= 0, "test_split_images", self.test_split_images, ">= 0")
        _check(
            self.optuna_storage == "" or "://" in self.optuna_storage or self.optuna_storage.startswith("journal:"),
            "optuna_storage",
            self.optuna_storage,
            '"" (optuna.db in the study folder), an RDB URL (postgresql://...) or journal:PATH',
        )
        for name in ("encode_seconds_per_image", "cocoeval_seconds_per_image"):
            _check(getattr(self, name) >= 0, name, getattr(self, name), ">= 0")
        for name, overrides in (
            ("default_overrides", self.default_overrides),
            ("trial_overrides", self.trial_overrides),
        ):
            for selector, _ in overrides:
                _check(
                    selector.partition("=")[0] in ARM_KEYS,
                    name,
                    selector,
                    f"a selector KEY=VALUE with KEY in {ARM_KEYS}",
                )
        for _, point in self.default_overrides:
            _check(set(point) <= set(RECIPE_KEYS), "default_overrides", point, f"keys from {RECIPE_KEYS}")
        for _, changes in self.trial_overrides:
            for key in changes:
                part, _, name = key.partition(".")
                known = {f.name for f in dataclasses.fields(SolverConfig if part == "solver" else DataConfig)}
                _check(
                    part in ("solver", "data") and name in known and name not in BATCH_SCALED,
                    "trial_overrides",
                    key,
                    f"solver.FIELD or data.FIELD, not one of {sorted(BATCH_SCALED)} (study-wide)",
                )
        objectives = ("bbox_AP", "segm_AP", "keypoints_AP") if self.data.keypoints else ("bbox_AP", "segm_AP")
        _check(self.objective in objectives, "objective", self.objective, " or ".join(objectives))
        for selector, _ in self.margin_overrides:
            _check(
                selector.partition("=")[0] in ("model", "data_fraction"),
                "margin_overrides",
                selector,
                "a selector model=NAME or data_fraction=F (both inits share a comparison's margin)",
            )
        _check(
            self.pretrain is not None
            or "pretrained" not in self.axes.init
            or all(m in self.pretrained_weights for m in self.axes.model),
            "pretrained_weights",
            self.pretrained_weights,
            "a weights path/URL for every model (or a pretrain spec)",
        )


def at_global_batch(study: StudyConfig) -> StudyConfig:
    """The study with its schedule counted at the global batch it runs at.

    A preset quotes 1x (``solver.base_iters``), the warm-up and ``eval_period`` in
    iterations of ``solver.schedule_batch`` images; at a global batch of ``b`` images each
    scales by ``schedule_batch / b`` (8 GPUs x 2 images: unchanged; 16 x 2: halved), so
    every schedule, LR drop and evaluation falls at the same image count, as the LR scales
    by ``reference_batch / b`` (both rules: trainables/engine/schedule.py's ``at_batch``).
    Idempotent: the result quotes them at ``b``.
    """
    from trainables.engine.schedule import at_batch

    s = study.solver
    batch = study.num_workers * s.ims_per_worker
    if s.schedule_batch == batch:
        return study
    scaled = at_batch(s, batch)
    try:
        solver = dataclasses.replace(
            s,
            base_iters=scaled.base_iters,
            warmup_iters=scaled.warmup_iters,
            schedule_batch=batch,
        )
    except ConfigError as err:
        raise ConfigError(
            f"{err} after scaling solver.base_iters={s.base_iters} (quoted at {s.schedule_batch} images) to the "
            f"global batch of {batch}",
            err.field,
        ) from None
    return dataclasses.replace(study, solver=solver, eval_period=round(study.eval_period * scaled.iteration_factor))


def in_epochs(study: StudyConfig, trainable_images: int | None) -> StudyConfig:
    """The study with 1x derived from ``solver.epochs_per_1x`` where it is stated: that many
    epochs of the ``trainable_images`` counted in the training files (fraction 1), in
    iterations of the global batch (the study is at_global_batch's), and ``eval_period`` at
    the same share of 1x as the preset's. ``None``: the files
    could not be counted here. Unchanged where 1x is stated in iterations."""
    s = study.solver
    if not s.epochs_per_1x:
        return study
    if not trainable_images:
        raise ConfigError(
            f"solver.epochs_per_1x={s.epochs_per_1x:g} states 1x in epochs of the training images, but they could "
            "not be counted on this machine (data.train_annotations is not here); put the annotation file where "
            "the driver runs, or state 1x in iterations (solver.epochs_per_1x=0, solver.base_iters=N)",
            "solver.epochs_per_1x",
        )
    base = max(9, round(s.epochs_per_1x * trainable_images / s.schedule_batch))
    # The trunk's evaluations keep their share of 1x (the COCO presets': every third of it).
    period = max(1, round(study.eval_period * base / s.base_iters)) if study.eval_period else 0
    return dataclasses.replace(study, solver=dataclasses.replace(s, base_iters=base), eval_period=period)


def startup_trials(num_samples: int) -> int:
    """Finished trials an arm's TPE sampler waits for before it models the space (random
    samples until then): about half of a small budget, at most 10."""
    return min(10, max(2, num_samples // 2))


@dataclass(frozen=True)
class Arm:
    init: str
    data_fraction: float
    model: str

    @property
    def name(self) -> str:
        return f"{self.init}-{self.model}-f{self.data_fraction:.3g}"


def arms(study: StudyConfig) -> list[Arm]:
    a = study.axes
    return [Arm(i, f, m) for m, f, i in itertools.product(a.model, a.data_fraction, a.init)]


def selector_matches(selector: str, arm: dict[str, Any]) -> bool:
    """Whether ``"init=scratch"``, ``"model=r50"`` or ``"data_fraction=0.1"`` fits an arm's values."""
    key, _, value = selector.partition("=")
    actual = arm.get(key)
    if actual is None:
        return False
    if str(actual) == value:
        return True
    try:
        return math.isclose(float(actual), float(value))
    except (TypeError, ValueError):
        return False


__all__ = [
    "SearchSpace",
    "Axes",
    "EarlyStopping",
    "Margin",
    "relative_margin",
    "StudyConfig",
    "Arm",
    "arms",
    "ConfigError",
]
