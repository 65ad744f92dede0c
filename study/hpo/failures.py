"""What failed in a study, and what that means for the rest of it.

A trial whose input is bad records it in ``DIR/NAME/failures/<trial>.json`` (and the full
tracebacks in ``<trial>.log``; trainables/engine/trial.py). From those records and Tune's own
errors the driver decides whether the study can go on (an error in a value one arm has, or
one trial) or whether every trial would hit it (a path all arms share), and closes the run
with one line per failed trial. Nothing here imports Ray.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from trainables.contract import storage

FAILURES_DIR = "failures"


@dataclass(frozen=True)
class Failure:
    """One failed trial, as the closing summary tells it."""

    trial_id: str
    arm: str
    error_type: str
    message: str
    log: str

    def line(self) -> str:
        message = " ".join(self.message.split())
        if len(message) > 400:
            message = message[:397] + "..."
        return f"trial {self.trial_id} ({self.arm}) failed: {self.error_type}: {message} [log: {self.log}]"


def input_failure(results_uri: str, trial_id: str) -> dict[str, Any] | None:
    """The trial's bad-input record, if it ended on bad input."""
    path = storage.join(results_uri, FAILURES_DIR, f"{trial_id}.json")
    if not storage.exists(path):
        return None
    return json.loads(storage.read_bytes(path))


def from_record(record: dict[str, Any]) -> Failure:
    return Failure(record["trial_id"], record["arm"], record["type"], record["message"], record["log"])


def from_exception(trial_id: str, arm: str, error: BaseException, log: str) -> Failure:
    """A failure Tune recorded: the original exception's type and its message's last line."""
    cause = getattr(error, "cause", None) or error
    lines = [ln for ln in str(cause).strip().splitlines() if ln.strip()]
    return Failure(trial_id, arm, type(cause).__name__, lines[-1] if lines else repr(cause), log)


def lookup(config: dict[str, Any], field: str) -> Any:
    """A dotted field (``data.train_annotations``) of a trial config dict; KeyError if absent."""
    value: Any = config
    for part in field.split("."):
        value = value[part]
    return value


def arms_to_close(record: dict[str, Any], arms: dict[str, dict[str, Any]]) -> tuple[list[str], str]:
    """The arms that would meet a trial's bad input again, and why: every arm whose config
    has the value that failed (all of them for the dataset's paths; those of one init for
    its pretrained weights; those of one data fraction for it); none without a field."""
    field, arm = record.get("field"), record["arm"]
    if not field or arm not in arms:
        return [], ""
    try:
        value = lookup(arms[arm], field)
    except (KeyError, TypeError):
        return [], ""
    same = []
    for name, config in arms.items():
        try:
            if lookup(config, field) == value:
                same.append(name)
        except (KeyError, TypeError):
            continue
    who = "every arm reads" if len(same) == len(arms) else f"{', '.join(same)} read"
    return same, f"{who} {field}={value!r}, which failed in trial {record['trial_id']}"


def format_failures(failures: list[Failure]) -> str:
    if not failures:
        return ""
    head = f"{len(failures)} trial(s) failed:"
    return "\n".join([head, *(f"  {f.line()}" for f in failures)])
