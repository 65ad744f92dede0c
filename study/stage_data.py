"""Copy COCO from S3 (or any pyarrow URI) to a node's local disk, once.

``python -m study.stage_data s3://BUCKET/coco /data/coco`` runs in the GPU nodes' setup
commands (clusters/aws.yaml), not in every trial. It expects COCO's own layout under the
source::

    train2017/*.jpg   val2017/*.jpg
    annotations/instances_train2017.json   annotations/instances_val2017.json

and writes ``DEST/.staged.json`` last, after checking that every image the annotation files
list is on disk. With that marker present (for the same source) it does nothing, so it is
safe to run on every node start; an interrupted copy has no marker and is redone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import pyarrow.fs as pafs

from trainables.contract import storage

MARKER = ".staged.json"
REQUIRED = ("train2017", "val2017", "annotations/instances_train2017.json", "annotations/instances_val2017.json")


def check_source(source: str) -> None:
    fs, root = storage.filesystem(source)
    missing = [p for p in REQUIRED if fs.get_file_info(f"{root}/{p}").type == pafs.FileType.NotFound]
    if missing:
        raise FileNotFoundError(
            f"{source} is not a COCO folder: missing {', '.join(missing)} (expected {', '.join(REQUIRED)})"
        )


def is_staged(source: str, dest: str) -> bool:
    marker = os.path.join(dest, MARKER)
    if not os.path.exists(marker):
        return False
    with open(marker) as f:
        return json.load(f).get("source") == source


def verify(dest: str) -> int:
    """Every image listed by the annotation files exists under DEST; returns the image count."""
    count = 0
    for split in ("train2017", "val2017"):
        with open(os.path.join(dest, "annotations", f"instances_{split}.json")) as f:
            names = [img["file_name"] for img in json.load(f)["images"]]
        missing = [n for n in names if not os.path.exists(os.path.join(dest, split, n))]
        if missing:
            raise FileNotFoundError(f"{len(missing)} images of {split} are missing under {dest}, e.g. {missing[:3]}")
        count += len(names)
    return count


def stage(source: str, dest: str, log=print) -> bool:
    """Copy ``source`` to ``dest`` unless already staged; returns whether it copied."""
    if is_staged(source, dest):
        log(f"{dest}: already staged from {source}")
        return False
    check_source(source)
    start = time.time()
    log(f"staging {source} -> {dest} ...")
    src_fs, src_root = storage.filesystem(source)
    os.makedirs(dest, exist_ok=True)
    pafs.copy_files(
        src_root,
        os.path.abspath(dest),
        source_filesystem=src_fs,
        destination_filesystem=pafs.LocalFileSystem(),
        use_threads=True,
    )
    images = verify(dest)
    storage.write_bytes_atomic(
        os.path.join(dest, MARKER),
        json.dumps(
            {"source": source, "images": images, "seconds": round(time.time() - start, 1), "at": time.time()}
        ).encode(),
    )
    log(f"staged {images} images in {time.time() - start:.0f}s")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study.stage_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="COCO folder or URI, e.g. s3://my-bucket/coco")
    parser.add_argument("dest", help="local folder, e.g. /data/coco")
    args = parser.parse_args(argv)
    try:
        stage(args.source, args.dest)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
