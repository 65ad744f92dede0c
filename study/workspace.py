"""A study's folder ``DIR/NAME``: creation rules, the resolved config, shared inputs.

Everything here runs in the driver process before Ray starts trials: it refuses to reuse a
folder unless asked to resume, writes ``study.json`` (the resolved configuration), and
prepares what all trials share (the generated dataset; a generated pretrained backbone is
made by the first trial that loads it, trainables/pretraining/pretrain.py).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.spec.resolved import ResolvedStudy, record
from study.spec.study_config import StudyConfig

if TYPE_CHECKING:
    from trainables.data.census import DataCounts
from trainables.contract import storage
from trainables.contract.rows import STUDY_FILE
from trainables.contract.study_record import write_record


class StudyExists(RuntimeError):
    pass


def study_uri(results: str, name: str) -> str:
    return storage.join(results if storage.is_uri(results) else str(Path(results).resolve()), name)


def check_folder(uri: str, resume: bool) -> None:
    """A new study needs a fresh folder; ``--resume`` needs an existing one."""
    has_study = storage.exists(storage.join(uri, STUDY_FILE))
    if has_study and not resume:
        raise StudyExists(
            f"{uri} already holds a study; pass --resume to continue it, or choose another "
            f"--name/--results (nothing was changed)"
        )
    if resume and not has_study:
        raise StudyExists(f"--resume: {uri} holds no study ({STUDY_FILE} not found)")


def code_version() -> str:
    """``git describe`` of the project checkout (with -dirty), else the package version."""
    repo = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        try:
            return metadata.version("rethink-pretraining")
        except metadata.PackageNotFoundError:
            return "unknown"


def prepare_inputs(study: StudyConfig, log: Callable[[str], None] = print) -> dict[str, tuple[str, int | None]]:
    """Generate the dataset once, in the driver; return the given pretrained weights per model.

    Returns ``{model name: (weights path or URL, pretraining images seen or None)}`` for the
    models of arms with ``init=pretrained`` that have weights of their own. A model without
    any is pretrained from ``study.pretrain`` by its first pretrained trial, on that trial's
    CPU while scratch trials train beside it (study/spec/resolved.py hands the trial the spec).
    """
    # Imported here: generating data needs pycocotools and PIL, which --help and --dry-run
    # (this module's other users) should not pay for.
    from trainables.data.synthetic import ensure_dataset

    if study.data.source == "synthetic":
        paths = ensure_dataset(study.data.synthetic)
        log(f"data: generated COCO-format dataset at {paths.root}")
    if "pretrained" not in study.axes.init:
        return {}
    return {
        model: (study.pretrained_weights[model], study.pretrained_images.get(model))
        for model in study.axes.model
        if model in study.pretrained_weights
    }


def generated_counts(study: StudyConfig) -> DataCounts | None:
    """The generated dataset's counts, once it exists (prepare_inputs made it); None for
    other data (preflight counts COCO files)."""
    if study.data.source != "synthetic":
        return None
    from trainables.data.census import count_training
    from trainables.data.coco_check import read_coco_json
    from trainables.data.synthetic import ensure_dataset

    d = study.data
    blob = read_coco_json(str(ensure_dataset(d.synthetic).train_annotations))
    search = d.search_holdout or d.synthetic.num_search
    return count_training(blob, d, study.axes.data_fraction).with_splits(search, d.synthetic.num_test or None)


def seed_backbones(study: StudyConfig, arms: dict[str, dict[str, Any]], seeds: list[int]) -> dict[str, dict[int, Any]]:
    """For the replicate phase: each pretrained arm's generated pretraining per seed.

    A seed replicate varies all of an init's randomness. With the generated pretraining
    that includes the pretraining itself: trial seed ``s`` loads the backbone pretrained
    with ``pretrain.seed + (s - study.seed)`` (the search's seed keeps the study's own), one
    cached backbone per seed, pretrained by the first trial of that seed that loads it.
    Returns ``{arm: {seed: pretrain spec as a dict}}``. Real ImageNet weights are one fixed
    checkpoint, the same for every seed: ``{}``, and the arms' own ``pretrained_weights``
    stand.
    """
    if study.pretrain is None or "pretrained" not in study.axes.init:
        return {}
    return {
        name: {
            seed: dataclasses.asdict(dataclasses.replace(study.pretrain, seed=study.pretrain.seed + seed - study.seed))
            for seed in seeds
        }
        for name, arm in arms.items()
        if arm["init"] == "pretrained" and arm.get("pretrain") is not None and not arm.get("pretrained_weights")
    }


def write_study_file(
    uri: str, resolved: ResolvedStudy, arms: dict[str, dict[str, Any]], started: dict[str, Any]
) -> None:
    """study.json for a study about to start: the resolved study, each arm's trial config, and
    ``started`` (how it was started: mode, trial, num_samples, replicates, overrides)."""
    study = resolved.study
    versions = {p: _version(p) for p in ("ray", "torch", "torchvision", "optuna", "pycocotools")}
    code = next((a.get("code_version") for a in arms.values()), None)
    write_record(
        uri,
        record(
            resolved,
            arms,
            pretraining_classes=_pretraining_classes(study),
            python=sys.version.split()[0],
            packages=versions,
            code_version=code,
            **started,
        ),
    )


def _pretraining_classes(study: StudyConfig) -> list[str]:
    if study.pretrain is None or "pretrained" not in study.axes.init:
        return []
    from trainables.pretraining.pretrain_data import class_names

    return list(class_names(study.pretrain.num_classes))


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
