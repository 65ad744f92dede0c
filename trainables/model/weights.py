"""Load ImageNet-style backbone weights into the detector's ResNet, from a path or a URL.

One function serves every pretrained init: the embedded pretraining's own output, a
torchvision ResNet state_dict (``IMAGENET1K_V1``), a GroupNorm ResNet-50 such as timm's
``resnet50_gn``, or Detectron's Caffe2 ``R-50-GN.pkl``/``R-101-GN.pkl`` (the paper's own
ImageNet GN models). torchvision and timm name ResNet modules the same way (``conv1``,
``bn1``, ``layerN.M.convK``, ``downsample.0/1``), so mapping is prefix stripping plus
dropping the classifier; Detectron's blob names (``res2_0_branch2a_w``) are renamed, and its
BGR ``conv1`` is flipped to RGB. What did not load is reported; a shape or normalization
mismatch is an error, never a silent partial load.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from trainables.contract import storage

# Prefixes that wrappers and training frameworks put in front of backbone keys.
_PREFIXES = ("module.", "model.", "backbone.body.", "backbone.", "body.", "encoder.")
# Classifier keys an ImageNet checkpoint carries and a detector does not use.
_CLASSIFIER = ("fc.", "head.fc.", "classifier.")


@dataclass(frozen=True)
class LoadReport:
    source: str
    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    ignored: tuple[str, ...]

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors from {self.source}"]
        if self.missing:
            parts.append(f"{len(self.missing)} missing (left at random init): {', '.join(self.missing[:5])}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected (not used): {', '.join(self.unexpected[:5])}")
        if self.ignored:
            parts.append(f"{len(self.ignored)} classifier tensors ignored")
        return "; ".join(parts)


def read_state_dict(source: str) -> dict[str, torch.Tensor]:
    """A state_dict from a local path, ``file://``, ``http(s)://`` or a pyarrow URI (``s3://``)."""
    if source.endswith(".pkl"):
        return detectron_to_torchvision(_read_detectron_blobs(source), source)
    if source.startswith(("http://", "https://")):
        # Cached in $TORCH_HOME/hub/checkpoints, so each node downloads once.
        obj = torch.hub.load_state_dict_from_url(source, map_location="cpu", progress=False, weights_only=True)
    else:
        if not storage.exists(source):
            raise FileNotFoundError(f"pretrained weights not found: {source}")
        data = storage.read_bytes(source)
        if source.endswith(".safetensors"):
            from safetensors.torch import load as load_safetensors

            try:
                obj = load_safetensors(data)
            except Exception as err:  # safetensors' own error type is no ValueError: bad input all the same
                raise ValueError(f"{source} is not a readable safetensors file ({err})") from None
        else:
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return _unwrap(obj, source)


def _unwrap(obj, source: str) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model", "backbone"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{source} does not hold a state_dict of tensors")
    return obj


def normalize_keys(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Strip wrapper prefixes and set classifier tensors aside."""
    out, ignored = {}, []
    for key, value in state.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        if key.startswith(_CLASSIFIER):
            ignored.append(key)
        else:
            out[key] = value
    return out, ignored


def load_backbone_weights(body: nn.Module, source: str) -> LoadReport:
    """Load ``source`` into the ResNet ``body`` in place and report what happened.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: a tensor's shape differs, or the checkpoint's normalization (BatchNorm
            statistics or not) does not match the model's, or nothing matched at all.
    """
    state, ignored = normalize_keys(read_state_dict(source))
    # The detector never uses a classifier; a standalone ResNet body still carries one.
    target = {k: v for k, v in body.state_dict().items() if not k.startswith(_CLASSIFIER)}
    _check_norm_kind(target, state, source)
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in target.items()
        if k in state and state[k].shape != v.shape
    ]
    if mismatched:
        raise ValueError(
            f"{source} does not fit the backbone ({len(mismatched)} shape mismatches, e.g. "
            f"{'; '.join(mismatched[:3])}); is it the same depth and width?"
        )
    loaded = [k for k in target if k in state]
    if not loaded:
        raise ValueError(f"{source} shares no tensor name with the backbone (first keys: {list(state)[:3]})")
    # num_batches_tracked is bookkeeping, not a weight: neither missing nor unexpected.
    missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in target and not k.endswith("num_batches_tracked")]
    body.load_state_dict({k: state[k] for k in loaded}, strict=False)
    return LoadReport(source, tuple(loaded), tuple(missing), tuple(unexpected), tuple(ignored))


def _check_norm_kind(target: dict, state: dict, source: str) -> None:
    model_bn = "bn1.running_mean" in target
    ckpt_bn = "bn1.running_mean" in state
    if "bn1.weight" in state and model_bn != ckpt_bn:
        have, want = ("BatchNorm", "GroupNorm") if ckpt_bn else ("GroupNorm", "BatchNorm")
        raise ValueError(
            f"{source} holds {have} weights but the model's backbone uses {want}; "
            f"use weights trained with the same normalization (e.g. timm resnet50_gn for gn)"
        )


# Detectron (Caffe2) ResNet blob names -> torchvision module names.
_STAGE = re.compile(r"^res(\d)_(\d+)_branch(1|2[abc])_(w|gn_s|gn_b)$")
_STEM = {"conv1_w": "conv1.weight", "conv1_gn_s": "bn1.weight", "conv1_gn_b": "bn1.bias"}
_PARAM = {"w": "weight", "gn_s": "weight", "gn_b": "bias"}


def _read_detectron_blobs(source: str) -> dict:
    if source.startswith(("http://", "https://")):
        # Download once into torch's hub cache, then unpickle the Caffe2 numpy blobs.
        folder = os.path.join(torch.hub.get_dir(), "checkpoints")
        os.makedirs(folder, exist_ok=True)
        local = os.path.join(folder, os.path.basename(urlparse(source).path))
        if not os.path.exists(local):
            torch.hub.download_url_to_file(source, local, progress=False)
        data = Path(local).read_bytes()
    else:
        if not storage.exists(source):
            raise FileNotFoundError(f"pretrained weights not found: {source}")
        data = storage.read_bytes(source)
    obj = pickle.loads(data, encoding="latin1")  # Caffe2 pickles are Python-2 era
    return obj.get("blobs", obj) if isinstance(obj, dict) else obj


def detectron_to_torchvision(blobs: dict, source: str = "") -> dict[str, torch.Tensor]:
    """Rename Detectron GN ResNet blobs to torchvision keys; conv1 goes from BGR to RGB.

    ``res{N}_{i}_branch2{a,b,c}`` is ``layer{N-1}.{i}.conv{1,2,3}`` (+ ``bn{1,2,3}`` for
    ``_gn_s``/``_gn_b``); ``branch1`` is the ``downsample`` shortcut; ``pred_*`` is the
    classifier. The GN models put the stride in the 3x3 conv, as torchvision does
    (detectron2's GN configs: STRIDE_IN_1X1 False).
    """
    out: dict[str, torch.Tensor] = {}
    for name, value in blobs.items():
        if name.endswith("_momentum") or name.startswith("pred_"):
            continue  # optimizer state, the 1000-way classifier
        tensor = torch.as_tensor(value)
        if name in _STEM:
            key = _STEM[name]
            if name == "conv1_w":
                tensor = tensor.flip(1)  # Caffe2 reads BGR; this model is fed RGB
        elif (m := _STAGE.match(name)) is not None:
            stage, block, branch, param = m.groups()
            prefix = f"layer{int(stage) - 1}.{block}"
            if branch == "1":
                key = f"{prefix}.downsample.{0 if param == 'w' else 1}.{_PARAM[param]}"
            else:
                k = "abc".index(branch[1]) + 1
                key = f"{prefix}.{'conv' if param == 'w' else 'bn'}{k}.{_PARAM[param]}"
        else:
            raise ValueError(f"{source}: unexpected Detectron blob {name!r} (only GN ResNets are supported)")
        out[key] = tensor.float()
    return out
