"""Checks of everything the driver can see, before Ray starts or anything is written.

A bad flag, preset value, path or dataset fails here in seconds with one line that names
it, instead of inside every trial's workers (where Ray Train and Tune would retry it). The
same checks run for ``--dry-run``, ``--trial``, a study and ``--resume``. Data that is not
on this machine while the study runs on a cluster (``/data/coco`` staged on GPU nodes) is
left to the trials, whose errors name the path and the node (trainables/engine/trial.py).
Imports neither torch nor Ray.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from study.spec.resolved import ResolvedStudy
from study.spec.study_config import StudyConfig
from trainables.contract import storage
from trainables.contract.errors import InputError, MissingInputError
from trainables.contract.trial_config import ConfigError
from trainables.data.census import DataCounts, count_training
from trainables.data.coco_check import check_images_present, check_same_categories, read_coco_json
from trainables.data.splits import check_disjoint, check_splits, held_out_ids

ADDRESS_TIMEOUT_S = 3.0


def check_name(name: str) -> None:
    """The study name is one folder under --results."""
    if name in ("", ".", "..") or "/" in name or "\\" in name or name != name.strip():
        raise ConfigError(
            f"--name {name!r} must be one folder name (no '/', not '..', no surrounding spaces)", "--name"
        )


def check_results(results: str) -> None:
    """--results is a folder, or one that can be created (never a file)."""
    if storage.is_uri(results):
        return
    path = Path(results).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--results {results} is a file, not a folder", "--results")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"--results {results}: {parent} is a file, so the folder cannot be created", "--results")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--results {results}: {parent} is not writable", "--results")


def check_address(address: str | None) -> None:
    """A given Ray address answers on its port (``auto``: a Ray started on this machine)."""
    address = address or os.environ.get("RAY_ADDRESS")
    if not address or address == "local":
        return
    flag = "--address" if address != os.environ.get("RAY_ADDRESS") else "$RAY_ADDRESS"
    if address == "auto":
        # Where `ray start` records its cluster's address (Ray's own lookup for "auto").
        marker = _ray_temp_dir() / "ray" / "ray_current_cluster"
        if not marker.is_file():
            raise ConfigError(
                f"{flag} auto: no Ray cluster was started on this machine ({marker} not found); "
                f"start one with `ray start --head` or `ray up`, or leave {flag} out for a local Ray",
                "--address",
            )
        address = marker.read_text().strip()
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise ConfigError(f"{flag} {address!r} is not HOST:PORT (or ray://HOST:PORT, auto)", "--address")
    try:
        with socket.create_connection((host, port), timeout=ADDRESS_TIMEOUT_S):
            pass
    except OSError as err:
        raise ConfigError(f"{flag} {address}: nothing answers at {host}:{port} ({err})", "--address") from None


def _ray_temp_dir() -> Path:
    """Ray's system temp folder: $RAY_TMPDIR, else $TMPDIR on Linux, else /tmp on Linux and
    macOS (Ray's own helper for it is private and needs Ray imported)."""
    if "RAY_TMPDIR" in os.environ:
        return Path(os.environ["RAY_TMPDIR"])
    if sys.platform.startswith("linux") and "TMPDIR" in os.environ:
        return Path(os.environ["TMPDIR"])
    if sys.platform.startswith(("linux", "darwin")):
        return Path("/tmp")
    return Path(tempfile.gettempdir())


def check_study(resolved: ResolvedStudy) -> None:
    """Every arm's trial config builds (all value checks; resolving the study checked that
    its schedules can branch)."""
    placeholder = {m: ("<pretrained weights>", None) for m in resolved.study.axes.model}
    resolved.trial_configs(results_uri="", code_version="", pretrained=placeholder)


def check_inputs(
    study: StudyConfig, missing_ok: str | None = None, log: Callable[[str], None] = print
) -> DataCounts | None:
    """The dataset (COCO source) and pretrained weight files, and that each arm's data
    fraction leaves at least one global batch and other images than every other fraction.
    Returns the training file's counts where it was read here (a COCO source on this
    machine), else None.

    ``missing_ok``: a path missing here is not an error but a note ending with this text
    (for a cluster, whose nodes may hold it; for a dry run, which may be planned anywhere).
    """
    check_splits(study.data)
    counts = None
    if study.data.source == "coco":
        train_images, counts = _check_coco(study, missing_ok, log)
    else:
        train_images = study.data.generated_training_images
        if train_images <= 0:
            raise ConfigError(
                f"data.search_holdout={study.data.search_holdout} would hold out all "
                f"{study.data.synthetic.num_train} generated training images",
                "data.search_holdout",
            )
    if train_images is not None:
        batch = study.num_workers * study.solver.ims_per_worker
        chosen: dict[int, float] = {}
        for fraction in study.axes.data_fraction:
            kept = min(train_images, max(1, round(fraction * (study.data.fraction_of_images or train_images))))
            if kept in chosen:
                # Nested subsets of one size are the same images: two arms, one comparison.
                of = study.data.fraction_of_images
                raise ConfigError(
                    f"data fractions {chosen[kept]:g} and {fraction:g} both select the same {kept} of {train_images} "
                    "training images"
                    + (f" (fractions of data.fraction_of_images={of:,}, capped at the images there are)" if of else "")
                    + "; drop one, or set data.fraction_of_images=0 to take fractions of the images counted",
                    "axes.data_fraction",
                )
            chosen[kept] = fraction
            if kept < batch:
                raise ConfigError(
                    f"data fraction {fraction:g} leaves {kept} of {train_images} training images, "
                    f"fewer than one global batch of {batch} (num_workers x solver.ims_per_worker)",
                    "axes.data_fraction",
                )
    if "pretrained" in study.axes.init:
        for model in study.axes.model:
            source = study.pretrained_weights.get(model)
            if source and not source.startswith(("http://", "https://")) and not storage.is_uri(source):
                if not os.path.isfile(source):
                    _missing(
                        f"pretrained weights for model {model} not found: {source}",
                        f"pretrained_weights.{model}",
                        missing_ok,
                        log,
                    )
    return counts


def _check_coco(
    study: StudyConfig, missing_ok: str | None, log: Callable[[str], None]
) -> tuple[int | None, DataCounts | None]:
    """The three splits' files (trainables/data/splits.py); returns the images left to train on
    and their counts, or (None, None) if the training file is not readable here."""
    d = study.data
    splits = ["train", "search", "test"] if d.has_test_split else ["train", "search"]
    if d.search_holdout:
        splits.remove("search")
    for split in splits:
        for what in ("images", "annotations"):
            if not getattr(d, f"{split}_{what}"):
                how = " or data.search_holdout=N (held out of the training images)" if split == "search" else ""
                raise ConfigError(
                    f"data.source=coco needs data.{split}_{what} (--set data.{split}_{what}=PATH, or in a --config "
                    f"file: docs/your_data.md){how}",
                    f"data.{split}_{what}",
                )
    blobs, folders = {}, {}
    for split in splits:
        ann, field = getattr(d, f"{split}_annotations"), f"data.{split}_annotations"
        if not os.path.exists(ann):
            _missing(f"COCO annotation file {ann} not found", field, missing_ok, log)
            continue
        size = os.path.getsize(ann) / 2**20 if os.path.isfile(ann) else 0
        if size > 50:
            log(f"checking {ann} ({size:.0f} MB)...")
        blobs[split] = read_coco_json(ann, field)
        images = getattr(d, f"{split}_images")
        if not os.path.exists(images):
            _missing(f"image folder {images} not found", f"data.{split}_images", missing_ok, log)
        else:
            check_images_present(images, blobs[split]["images"], ann, f"data.{split}_images")
            folders[split] = images
    if "train" not in blobs:
        return None, None
    for split in splits[1:]:
        if split in blobs:
            ann = getattr(d, f"{split}_annotations")
            check_same_categories(blobs["train"], blobs[split], d.train_annotations, ann, f"data.{split}_annotations")
    # By file, over every listed image: a held-out search split is disjoint by construction.
    check_disjoint(
        {
            "training": (d.train_images, [i["file_name"] for i in blobs["train"]["images"]], "data.train_annotations"),
            **{
                s: (getattr(d, f"{s}_images"), [i["file_name"] for i in blobs[s]["images"]], f"data.{s}_annotations")
                for s in splits[1:]
                if s in blobs
            },
        }
    )
    if d.search_holdout:
        held_out_ids([i["id"] for i in blobs["train"]["images"]], d.search_holdout, d.subset_seed)
    counts = count_training(blobs["train"], d, study.axes.data_fraction)
    if counts.left_out_annotations:
        log(
            f"note: {d.train_annotations}: {counts.left_out_annotations} non-crowd annotation(s) with a box under "
            "1 px wide or high, which training leaves out"
        )
    sizes = {s: len(blobs[s]["images"]) for s in splits[1:] if s in blobs}
    counts = counts.with_splits(d.search_holdout or sizes.get("search"), sizes.get("test"))
    return counts.trainable_images, counts


def _missing(message: str, field: str, missing_ok: str | None, log: Callable[[str], None]) -> None:
    if missing_ok is None:
        raise MissingInputError(f"{message} ({field})", field)
    log(f"note: {message} on this machine ({field}); {missing_ok}")


__all__ = ["check_name", "check_results", "check_address", "check_study", "check_inputs", "InputError"]
