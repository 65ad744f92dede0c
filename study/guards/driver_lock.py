"""One driver per study folder: a lock the driver holds for as long as it runs.

Two drivers on one folder (a ``--resume`` started while the study still runs, a ``--trial``
into the same folder) would train the same trials side by side and delete each other's
checkpoints. The driver takes an exclusive ``filelock`` lock (``flock`` on the folder's
``.driver.lock``) before it writes anything; the kernel releases it when the process ends,
however it ends, so a lock is never left held by a dead driver. Beside it, ``.driver.json``
says who holds it (host, pid, start time): a second driver is refused with that line, and a
driver that finds the note of one that is gone takes over and says so.

For ``s3://`` results the lock lives in the local cache, keyed by the URI: it refuses a
second driver on this machine only. A study on shared storage is driven from one head node
(``docs/cluster.md``); nothing here can see a driver on another machine.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
from pathlib import Path

import filelock

from trainables.contract import storage

LOCK_FILE = ".driver.lock"
NOTE_FILE = ".driver.json"


class StudyLocked(RuntimeError):
    """Another driver holds the study folder."""


def lock_folder(uri: str) -> Path:
    """Where a study's lock and its note live: the study folder, or the cache for URIs."""
    if storage.is_uri(uri):
        return storage.cache_dir() / "locks" / uri.split("://", 1)[1].replace("/", "_")
    return Path(uri)


class DriverLock:
    """The study folder's lock; ``acquire`` refuses at once when another driver holds it."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        folder = lock_folder(uri)
        self.note_path = folder / NOTE_FILE
        self._lock = filelock.FileLock(str(folder / LOCK_FILE))
        self.taken_over: dict | None = None

    def folder_exists(self) -> bool:
        return self.note_path.parent.is_dir()

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def acquire(self) -> None:
        self.note_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            raise StudyLocked(f"{self.uri} is in use by another driver: {_describe(self._read_note())}") from None
        # Held now: a note left behind belongs to a driver that is gone.
        previous = self._read_note()
        if previous is not None and previous.get("pid") != os.getpid():
            self.taken_over = previous
        note = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        tmp = self.note_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(note))
        os.replace(tmp, self.note_path)

    def release(self) -> None:
        if not self._lock.is_locked:
            return
        try:
            self.note_path.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only or vanished folder: the kernel still drops the lock
        self._lock.release()

    def _read_note(self) -> dict | None:
        try:
            return json.loads(self.note_path.read_text())
        except (OSError, ValueError):
            return None

    def __enter__(self) -> DriverLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _describe(note: dict | None) -> str:
    if note is None:
        return "its note is unreadable (see the process list for study/run.py)"
    return f"host {note.get('host')}, pid {note.get('pid')}, since {note.get('started')}"


def takeover_line(lock: DriverLock) -> str | None:
    """The note to print when the lock was left by a driver that is gone."""
    if lock.taken_over is None:
        return None
    return f"note: took over {lock.uri} from a driver that is gone ({_describe(lock.taken_over)})"
