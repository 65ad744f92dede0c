"""COCO AP of a model over a whole evaluation split, sharded across the ranks.

Each rank predicts its shard; rank 0 gathers, de-duplicates (a padded shard repeats an
image), evaluates once with the COCO evaluator (trainables/coco_eval.py) and shares the
scores, so every rank reports the same metrics.
"""

from __future__ import annotations

import socket
from typing import Any

import torch
import torch.distributed as dist

from trainables import coco_eval
from trainables.data import EvalSet, coco_results
from trainables.errors import InputError
from trainables.rows import AP_KEYS
from trainables.runtime import AgreedInputError, Session, describe_input_error


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, loader, split: EvalSet, session: Session, use_amp: bool) -> dict[str, float]:
    """COCO AP over a whole evaluation split: shard, predict, gather, dedupe, evaluate once,
    share. ``model`` is the bare model (not its DDP wrapper).

    An unreadable image cannot be skipped without changing the AP, so it fails the trial,
    on every rank together (after the gather every rank takes part in anyway).
    """
    dataset = split.dataset
    model.eval()
    mine: list[dict] = []
    unreadable: list[str] = []
    for images, infos in loader:
        unreadable.extend(i["error"] for i in infos if "error" in i)
        keep = [k for k, image in enumerate(images) if image is not None]
        if not keep:
            continue
        with torch.autocast(session.device.type, enabled=use_amp):
            outputs = model([images[k] for k in keep])
        outputs = [{k: v.float() for k, v in o.items()} for o in outputs]
        mine.extend(coco_results(outputs, [infos[k]["image_id"] for k in keep], dataset.label_to_category))
    here = (mine, unreadable, socket.gethostname())
    gathered = [here]
    if session.world_size > 1:
        # To rank 0 only: a 5,000-image split's predictions need not travel to every rank.
        gathered = [None] * session.world_size if session.rank == 0 else None
        dist.gather_object(here, gathered, dst=0)
    metrics: list[Any] = [None]
    if session.rank == 0:
        failed = [
            describe_input_error(InputError(_unreadable_message(errors, split.split), split.field), r, node)
            for r, (_, errors, node) in enumerate(gathered)
            if errors
        ]
        if failed:
            metrics = [{"unreadable": failed}]
        else:
            metrics = [coco_eval.evaluate(split.gt, coco_eval.dedupe_by_image([p for p, _, _ in gathered]))]
            # Bbox-only output (no masks predicted at all) still reports every key.
            metrics[0] = {k: metrics[0].get(k, 0.0) for k in AP_KEYS}
    if session.world_size > 1:
        dist.broadcast_object_list(metrics, src=0)
    if "unreadable" in metrics[0]:
        raise AgreedInputError(metrics[0]["unreadable"])
    return metrics[0]


def _unreadable_message(errors: list[str], split: str) -> str:
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{errors[0]}{more}; the evaluation needs every image of the {split} split"
