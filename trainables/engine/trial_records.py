"""A trial's records beside its rows: what the report and a rerun need besides the metrics.

The description of a trial's bad input (``failures/``, cleared once the input is good),
the training subset and the search and test splits it used (``subsets/``, for
reproducibility and the report's regime indicators), its generated backbone's pretraining
(``pretraining/``), and the marker of an injected fault (``faults/``: the failure happens
once per trial, not once per restart). Only trainables/engine/trial.py writes them.
"""

from __future__ import annotations

import json
from typing import Any

from trainables.contract import storage
from trainables.contract.trial_config import TrialConfig
from trainables.data.splits import SEARCH, TEST, DataPaths, splits_record
from trainables.runtime import Session


def record_input_error(cfg: TrialConfig, session: Session, errors: list[dict[str, Any]]) -> dict[str, Any]:
    """One description of the trial's bad input, logged once and written beside the rows.

    The same error from several ranks (every rank reads the same file) is told once, with
    the ranks and nodes that hit it; the full tracebacks go to ``failures/<trial>.log``.
    """
    distinct: dict[tuple[str, str], dict[str, Any]] = {}
    for e in errors:
        d = distinct.setdefault((e["type"], e["message"]), {**e, "ranks": [], "nodes": []})
        d["ranks"].append(e["rank"])
        if e["node"] not in d["nodes"]:
            d["nodes"].append(e["node"])
    first = next(iter(distinct.values()))
    log_path = storage.join(cfg.results_uri, "failures", f"{cfg.trial_id}.log")
    summary = {
        "trial_id": cfg.trial_id,
        "arm": cfg.arm,
        "type": first["type"],
        "message": first["message"],
        "field": first["field"],
        "ranks": first["ranks"],
        "nodes": first["nodes"],
        "log": log_path,
        "distinct_errors": len(distinct),
    }
    if session.rank == 0:
        text = "\n".join(
            f"{d['type']} on rank(s) {', '.join(map(str, d['ranks']))} (node {', '.join(d['nodes'])}):\n"
            f"{d['traceback']}"
            for d in distinct.values()
        )
        storage.write_bytes_atomic(log_path, text.encode())
        storage.write_bytes_atomic(
            storage.join(cfg.results_uri, "failures", f"{cfg.trial_id}.json"), json.dumps(summary, indent=2).encode()
        )
        for d in distinct.values():
            session.log(
                f"[{cfg.trial_id}] bad input on rank(s) {', '.join(map(str, d['ranks']))} (node "
                f"{', '.join(d['nodes'])}), the trial ends without a retry: {d['type']}: {d['message']}"
            )
    return summary


def clear_input_error(cfg: TrialConfig) -> None:
    """The input is good now: a bad-input record from an earlier attempt no longer holds."""
    for suffix in (".json", ".log"):
        storage.delete(storage.join(cfg.results_uri, "failures", f"{cfg.trial_id}{suffix}"))


def record_data(
    cfg: TrialConfig, paths: DataPaths, train_ids: list[int], split_ids: dict[str, list[int]], instances: int
) -> None:
    """Write the chosen training image ids (and how many instances they hold, for the
    report's regime indicators) once per (fraction, seed), and the search and test splits'
    ids once per subset seed, beside the rows (for reproducibility)."""
    folder = storage.join(cfg.results_uri, "subsets")
    subset = storage.join(folder, f"fraction-{cfg.data_fraction:g}-seed-{cfg.data.subset_seed}.json")
    if not storage.exists(subset):
        blob = {
            "data_fraction": cfg.data_fraction,
            "subset_seed": cfg.data.subset_seed,
            "train_images": len(train_ids),
            "train_instances": instances,
            "image_ids": train_ids,
        }
        storage.write_bytes_atomic(subset, json.dumps(blob).encode())
    splits = storage.join(folder, f"splits-seed-{cfg.data.subset_seed}.json")
    if not storage.exists(splits):
        blob = splits_record(paths, split_ids[SEARCH], split_ids.get(TEST, []))
        storage.write_bytes_atomic(splits, json.dumps(blob).encode())


PRETRAINING_DIR = "pretraining"


def record_pretraining(cfg: TrialConfig, meta: dict[str, Any]) -> None:
    """Write the generated backbone's metadata (its classes, held-out accuracy along the way
    and whether it levelled off) beside the rows, once per pretraining seed, for the report."""
    path = storage.join(cfg.results_uri, PRETRAINING_DIR, f"seed-{meta['spec']['seed']}.json")
    if not storage.exists(path):
        blob = {k: v for k, v in meta.items() if k != "model"}
        storage.write_bytes_atomic(path, json.dumps(blob, indent=2).encode())


def fault_fired(cfg: TrialConfig, iteration: int) -> bool:
    """Whether the injected failure at ``iteration`` already happened (marking it if not)."""
    marker = storage.join(cfg.results_uri, "faults", f"{cfg.trial_id}-{iteration}")
    if storage.exists(marker):
        return True
    storage.write_bytes_atomic(marker, b"injected\n")
    return False
