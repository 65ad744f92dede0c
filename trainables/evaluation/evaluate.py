"""COCO AP of a model over a whole evaluation split, sharded across the ranks.

Each rank predicts its shard; rank 0 gathers, de-duplicates (a padded shard repeats an
image), evaluates once with the COCO evaluator (trainables/evaluation/coco_eval.py) and shares the
scores, so every rank reports the same metrics.
"""

from __future__ import annotations

import socket
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from pycocotools import mask as mask_utils

from trainables.contract.errors import InputError
from trainables.contract.rows import ap_keys
from trainables.data.dataset import EvalSet
from trainables.evaluation import coco_eval
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
            predictions = coco_eval.dedupe_by_image([p for p, _, _ in gathered])
            scores = coco_eval.evaluate(split.gt, predictions, keypoint_sigmas=split.keypoint_sigmas)
            # Output without masks (or keypoints) predicted at all still reports every key, 0.
            metrics = [{k: scores.get(k, 0.0) for k in ap_keys(bool(dataset.keypoint_names))}]
    if session.world_size > 1:
        dist.broadcast_object_list(metrics, src=0)
    if "unreadable" in metrics[0]:
        raise AgreedInputError(metrics[0]["unreadable"])
    return metrics[0]


def _unreadable_message(errors: list[str], split: str) -> str:
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{errors[0]}{more}; the evaluation needs every image of the {split} split"


def coco_results(
    outputs: list[dict[str, torch.Tensor]],
    image_ids: list[int],
    label_to_category: dict[int, int],
    mask_threshold: float = 0.5,
) -> list[dict]:
    """torchvision detections -> COCO result dicts (xywh boxes, RLE masks with str counts,
    and keypoints as ``[x1, y1, v1, ...]`` where the model predicts them, as torchvision's
    references/detection/coco_eval.py writes them)."""
    results = []
    for out, image_id in zip(outputs, image_ids):
        boxes = out["boxes"].detach().cpu()
        if len(boxes) == 0:
            continue
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        scores = out["scores"].detach().cpu().tolist()
        labels = out["labels"].detach().cpu().tolist()
        points = out["keypoints"].detach().cpu().flatten(1).tolist() if "keypoints" in out else None
        masks = None
        if "masks" in out:
            binary = (out["masks"][:, 0] > mask_threshold).cpu().numpy().astype(np.uint8)
            masks = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))
        for i, (box, score, label) in enumerate(zip(xywh, scores, labels)):
            res = {
                "image_id": int(image_id),
                "category_id": label_to_category[int(label)],
                "bbox": [round(v, 2) for v in box],
                "score": round(float(score), 5),
            }
            if masks is not None:
                rle = masks[i]
                res["segmentation"] = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
            if points is not None:
                res["keypoints"] = [round(v, 2) for v in points[i]]
            results.append(res)
    return results
