"""Copy a study's data from S3 (or any pyarrow URI) to a node's local disk, once.

``python -m study.stage_data s3://BUCKET/coco /data/coco`` runs in the GPU nodes' setup
commands (clusters/aws.yaml), not in every trial. Without ``--config`` it expects COCO's
own layout under the source::

    train2017/*.jpg   val2017/*.jpg
    annotations/instances_train2017.json   annotations/instances_val2017.json

With ``--config FILE`` (or ``--preset NAME``) it copies what the study's ``data.*`` paths
name instead, any layout: each path under DEST comes from the same place under SOURCE
(``data.train_images: /data/mine/images`` with DEST ``/data/mine`` is copied from
``SOURCE/images``). It writes ``DEST/.staged.json`` last, after checking that every image
the annotation files list is on disk. With that marker present (for the same source and
paths) it does nothing, so it is safe to run on every node start; an interrupted copy has
no marker and is redone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import pyarrow.fs as pafs

from trainables.contract import storage
from trainables.contract.errors import InputError

MARKER = ".staged.json"
COCO_IMAGES = ("train2017", "val2017")
COCO_ANNOTATIONS = ("annotations/instances_train2017.json", "annotations/instances_val2017.json")
DATA_FIELDS = ("train", "search", "test")


def coco_layout() -> list[tuple[str, str]]:
    """COCO's own folders as (images, annotations) pairs relative to the root."""
    return list(zip(COCO_IMAGES, COCO_ANNOTATIONS))


def study_layout(data, dest: str) -> list[tuple[str, str]]:
    """A study's (images, annotations) pairs relative to ``dest``, from its ``data.*`` paths;
    a path outside ``dest`` is an InputError naming its field."""
    root = os.path.abspath(dest)
    pairs = []
    for split in DATA_FIELDS:
        images, annotations = getattr(data, f"{split}_images"), getattr(data, f"{split}_annotations")
        if not annotations:
            continue
        relative = []
        for field, path in ((f"data.{split}_images", images), (f"data.{split}_annotations", annotations)):
            full = os.path.abspath(path)
            if os.path.commonpath([full, root]) != root:
                raise InputError(f"{field}={path} is not under {dest}: nothing to stage it from", field)
            relative.append(os.path.relpath(full, root))
        pairs.append((relative[0], relative[1]))
    if not pairs:
        raise InputError("the study names no data files (data.source=coco with data.train_* paths)", "data")
    return pairs


def _paths(pairs: list[tuple[str, str]]) -> list[str]:
    """Every file or folder to copy, once: splits often share an image folder, and a path
    inside another is copied with it."""
    paths = {p for pair in pairs for p in pair}
    return sorted(p for p in paths if not any(p.startswith(q.rstrip("/") + "/") or q == "." for q in paths - {p}))


def check_source(source: str, pairs: list[tuple[str, str]]) -> None:
    fs, root = storage.filesystem(source)
    missing = [p for p in _paths(pairs) if fs.get_file_info(f"{root}/{p}").type == pafs.FileType.NotFound]
    if missing:
        raise FileNotFoundError(f"{source}: missing {', '.join(missing)} (expected {', '.join(_paths(pairs))})")


def is_staged(source: str, dest: str, pairs: list[tuple[str, str]]) -> bool:
    marker = os.path.join(dest, MARKER)
    if not os.path.exists(marker):
        return False
    with open(marker) as f:
        staged = json.load(f)
    return staged.get("source") == source and staged.get("paths", _paths(coco_layout())) == _paths(pairs)


def verify(dest: str, pairs: list[tuple[str, str]]) -> int:
    """Every image listed by the annotation files exists under DEST; returns the image count."""
    count = 0
    for images, listing in pairs:
        with open(os.path.join(dest, listing)) as f:
            names = [img["file_name"] for img in json.load(f)["images"]]
        missing = [n for n in names if not os.path.exists(os.path.join(dest, images, n))]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} images listed in {listing} are missing under {os.path.join(dest, images)}, "
                f"e.g. {missing[:3]}"
            )
        count += len(names)
    return count


def stage(source: str, dest: str, pairs: list[tuple[str, str]] | None = None, log=print) -> bool:
    """Copy ``source`` to ``dest`` unless already staged; returns whether it copied.
    ``pairs``: the (images, annotations) paths to copy, relative to both; COCO's by default."""
    pairs = pairs or coco_layout()
    if is_staged(source, dest, pairs):
        log(f"{dest}: already staged from {source}")
        return False
    check_source(source, pairs)
    start = time.time()
    log(f"staging {source} -> {dest} ({', '.join(_paths(pairs))}) ...")
    src_fs, src_root = storage.filesystem(source)
    for path in _paths(pairs):
        target = os.path.join(os.path.abspath(dest), path)
        is_dir = src_fs.get_file_info(f"{src_root}/{path}").type == pafs.FileType.Directory
        os.makedirs(target if is_dir else os.path.dirname(target), exist_ok=True)
        pafs.copy_files(
            f"{src_root}/{path}",
            target,
            source_filesystem=src_fs,
            destination_filesystem=pafs.LocalFileSystem(),
            use_threads=True,
        )
    images = verify(dest, pairs)
    seconds = time.time() - start
    storage.write_bytes_atomic(
        os.path.join(dest, MARKER),
        json.dumps(
            {
                "source": source,
                "paths": _paths(pairs),
                "images": images,
                "seconds": round(seconds, 1),
                "at": time.time(),
            }
        ).encode(),
    )
    log(f"staged {images} images in {seconds:.0f}s")
    return True


def _study_data(args: argparse.Namespace):
    """The data settings of the study --config/--preset/--set name (None: COCO's layout)."""
    if not (args.config or args.preset):
        return None
    from study.config_file import apply_config, read_config
    from study.overrides import apply_overrides
    from study.spec.presets import get_preset

    config = read_config(args.config) if args.config else None
    study = get_preset(args.preset or (config.preset if config and config.preset else "toy"))
    if config is not None:
        study = apply_config(study, config)
    return apply_overrides(study, args.set).data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study.stage_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="the data's folder or URI, e.g. s3://my-bucket/coco")
    parser.add_argument("dest", help="local folder, e.g. /data/coco (the study's data.* paths lie under it)")
    parser.add_argument("--config", help="stage what this study config file's data.* paths name")
    parser.add_argument("--preset", help="stage what this preset's data.* paths name")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as study/run.py's --set")
    args = parser.parse_args(argv)
    try:
        data = _study_data(args)
        pairs = study_layout(data, args.dest) if data is not None else None
        stage(args.source, args.dest, pairs)
    except (FileNotFoundError, InputError, KeyError) as err:
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
