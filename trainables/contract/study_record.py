"""study.json, the study's record beside its rows: the one module that writes and reads it.

The driver writes it before the first trial (the resolved study: the preset, each arm's fixed
trial config, searched ranges and margin, how the study was started); ``--resume`` and the
report read it back through :func:`read_record`. It is plain JSON so that pandas users and
other tools can read it too; :class:`StudyRecord` names its keys once. Storage-aware
(local paths and ``s3://``), no Ray, torch or pandas.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from trainables.contract import storage
from trainables.contract.errors import ConfigError
from trainables.contract.rows import STUDY_FILE


@dataclass(frozen=True)
class StudyRecord:
    """What study.json holds (every key optional on reading: a record an older version
    wrote, or a hand-made one, reads with the rest empty)."""

    # The study's settings at its global batch, as ``dataclasses.asdict(StudyConfig)``.
    preset: dict[str, Any] = field(default_factory=dict)
    # arm name -> the arm's fixed trial config (``dataclasses.asdict(TrialConfig)``): its
    # recipe, solver and data settings and schedules; a trial's searched values replace
    # lr, weight decay, schedule and seed.
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)
    # arm name -> its searched ranges, per-arm overrides applied.
    search_spaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    # One per (model, data fraction): its non-inferiority margin and the reason, fixed before
    # the first trial.
    margins: list[dict[str, Any]] = field(default_factory=list)
    # What the generated stand-in for ImageNet classifies (none is a detection category).
    pretraining_classes: list[str] = field(default_factory=list)
    # How the study was started: "search" (trials per arm, replicates) or "trial" (one
    # --trial's values), with the --set overrides on the preset.
    mode: str = "search"
    trial: dict[str, Any] | None = None
    num_samples: int | None = None
    replicates: int | None = None
    overrides: list[str] = field(default_factory=list)
    # A --config file's base preset and settings as read ({"path", "preset", "settings"}),
    # applied before the overrides on --resume as when the study started.
    config: dict[str, Any] | None = None
    code_version: str | None = None
    python: str | None = None
    packages: dict[str, str | None] = field(default_factory=dict)

    @property
    def name(self) -> str | None:
        return self.preset.get("name")

    @property
    def objective(self) -> str:
        return self.preset.get("objective", "bbox_AP")

    @property
    def seed(self) -> int:
        return int(self.preset.get("seed", 0))

    def recipes(self) -> dict[str, tuple[float, float]]:
        """arm -> its recipe's (lr, weight_decay), as the arm configs carry it."""
        return {arm: (float(t["lr"]), float(t["weight_decay"])) for arm, t in self.arms.items()}

    def search_ranges(self) -> dict[str, dict[str, tuple[float, float]]]:
        """arm -> its searched lr and weight-decay ranges."""
        return {
            arm: {"lr": tuple(space["lr"]), "weight_decay": tuple(space["weight_decay"])}
            for arm, space in self.search_spaces.items()
        }

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), indent=2, default=str).encode()

    @classmethod
    def from_blob(cls, blob: dict[str, Any]) -> StudyRecord:
        """The record from a parsed study.json; unknown keys are kept out, missing ones empty."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in blob.items() if k in known and v is not None}
        return cls(**values)


def write_record(uri: str, record: StudyRecord) -> None:
    """study.json in the study folder ``uri``, written whole (atomically)."""
    storage.write_bytes_atomic(storage.join(uri, STUDY_FILE), record.to_json())


def has_record(uri: str) -> bool:
    return storage.exists(storage.join(uri, STUDY_FILE))


def read_record(uri: str, missing_ok: bool = False) -> StudyRecord:
    """The study folder's record. A damaged file is a ConfigError naming it; a missing one
    too, unless ``missing_ok`` (then an empty record: the report of rows without one)."""
    path = storage.join(uri, STUDY_FILE)
    if missing_ok and not storage.exists(path):
        return StudyRecord()
    try:
        blob = json.loads(storage.read_bytes(path))
        record = StudyRecord.from_blob(blob)
        if not isinstance(record.name, str) and not missing_ok:
            raise ValueError("no preset name")
        if not isinstance(record.arms, dict):
            raise ValueError("arms is not a mapping")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ConfigError(
            f"{path} is damaged ({type(err).__name__}: {err}); nothing was changed. Restore it from a copy, "
            f"or start the study again in another folder",
            STUDY_FILE,
        ) from None
    return record
