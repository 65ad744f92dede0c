"""Staging many small files (study/stage_data.py) on this machine: files/s and MB/s.

Writes a COCO-format folder of N small files (random bytes of about COCO's JPEG size scaled
down, default 10,000 files of 16 KB, in 100 subfolders, with an annotation file that lists
them) and stages those paths (what ``--config`` resolves to for a study whose data.* paths
name them), as a node's setup command would, into a fresh destination each time; the copy
and the check that every listed image is there are both in the time. Source and destination
are both local by default (pyarrow's LocalFileSystem). ``--s3`` puts the source in a bucket
of moto's in-process S3 server (the ``dev`` extra's) instead: two requests over HTTP per
file (HEAD, GET), to a server far slower per request than S3 and sharing this machine's
cores, so its rate is a floor for the code path, not a forecast for AWS. Medians of 3.

    python benchmarks/stage_data.py [--files 10000] [--kb 16] [--repeats 3] [--s3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow.fs as pafs

from study.stage_data import stage
from trainables.contract import storage


def make_source(root: Path, files: int, kb: int) -> list[tuple[str, str]]:
    rng_bytes = os.urandom(kb * 1024)
    images = []
    for i in range(files):
        name = f"part_{i % 100:03d}/img_{i:06d}.jpg"
        path = root / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng_bytes[: kb * 1024 - (i % 7)])  # not all the same size
        images.append({"id": i + 1, "file_name": name, "width": 64, "height": 48})
    (root / "annotations").mkdir()
    (root / "annotations" / "train.json").write_text(
        json.dumps({"images": images, "annotations": [], "categories": []})
    )
    return [("images", "annotations/train.json")]


def s3_source(local: Path) -> str:
    """``local`` copied into a bucket of a moto S3 server started here (reached through
    AWS_ENDPOINT_URL, as pyarrow and boto read it); returns its URI."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    boto3.client("s3").create_bucket(Bucket="bench")
    fs, root = storage.filesystem("s3://bench/source")
    pafs.copy_files(str(local), root, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    return "s3://bench/source"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--kb", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--s3", action="store_true", help="stage from a moto S3 bucket instead of a local folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source"
        pairs = make_source(source, args.files, args.kb)
        megabytes = sum(p.stat().st_size for p in (source / "images").rglob("*.jpg")) / 2**20
        uri = s3_source(source) if args.s3 else str(source)
        times = []
        for r in range(args.repeats):
            dest = Path(tmp) / f"dest-{r}"
            start = time.perf_counter()
            stage(uri, str(dest), pairs, log=lambda _m: None)
            times.append(time.perf_counter() - start)
            shutil.rmtree(dest)
        seconds = statistics.median(times)
        print(
            f"staged {args.files:,} files ({megabytes:.0f} MB) in {seconds:.2f} s (median of {args.repeats}: "
            f"{', '.join(f'{t:.2f}' for t in times)})"
        )
        print(
            f"rate: {args.files / seconds:,.0f} files/s, {megabytes / seconds:.0f} MB/s on {os.cpu_count()} cores, "
            f"from {'a moto S3 bucket' if args.s3 else 'a local folder'}"
        )


if __name__ == "__main__":
    main()
