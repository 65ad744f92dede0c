"""Files on a local disk or on shared storage (s3://, gs://), written atomically.

Results must survive a killed driver and be readable while a study runs, so every file is
written under a hidden name (pyarrow's dataset discovery skips names starting with "." or
"_") and then renamed into place; object stores make a single PUT atomic on their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

CACHE_ENV = "RETHINK_CACHE"


def cache_dir() -> Path:
    """Where generated datasets and pretrained backbones are cached.

    ``$RETHINK_CACHE`` if set, else ``$XDG_CACHE_HOME/rethink-pretraining`` (``~/.cache/...``).
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rethink-pretraining"


def spec_key(spec: dict[str, Any], version: int) -> str:
    """A short, stable hash of a spec dict, used to name cache folders."""
    blob = json.dumps({"spec": spec, "version": version}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it, for a local path or a URI."""
    if is_uri(path):
        return pafs.FileSystem.from_uri(path)
    local = path[len("file://") :] if path.startswith("file://") else path
    return pafs.LocalFileSystem(), os.path.abspath(local)


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts]) if is_uri(base) else os.path.join(base, *parts)


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write ``data`` so that readers see either nothing or the whole file."""
    fs, inner = filesystem(path)
    parent = inner.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    if isinstance(fs, pafs.LocalFileSystem):
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, inner)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    else:
        with fs.open_output_stream(inner) as f:
            f.write(data)


def read_bytes(path: str) -> bytes:
    fs, inner = filesystem(path)
    with fs.open_input_stream(inner) as f:
        return f.read()


def exists(path: str) -> bool:
    fs, inner = filesystem(path)
    return fs.get_file_info(inner).type != pafs.FileType.NotFound


def delete(path: str) -> None:
    """Remove a file if it is there."""
    fs, inner = filesystem(path)
    if fs.get_file_info(inner).type == pafs.FileType.File:
        fs.delete_file(inner)


def list_files(folder: str, suffix: str = "") -> list[str]:
    """Files directly in ``folder`` (not hidden ones), as paths/URIs; [] if it does not exist."""
    fs, inner = filesystem(folder)
    if fs.get_file_info(inner).type != pafs.FileType.Directory:
        return []
    infos = fs.get_file_info(pafs.FileSelector(inner, recursive=False))
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File)
    return [join(folder, n) for n in names if n.endswith(suffix) and not n.startswith((".", "_"))]
