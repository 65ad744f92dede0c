"""Load ImageNet-style backbone weights into the detector's ResNet, from a path or a URL.

One function serves every pretrained init: the embedded pretraining's own output, a
torchvision ResNet state_dict (``IMAGENET1K_V1``), or a GroupNorm ResNet-50 such as timm's
``resnet50_gn``. torchvision and timm name ResNet modules the same way (``conv1``, ``bn1``,
``layerN.M.convK``, ``downsample.0/1``), so mapping is prefix stripping plus dropping the
classifier. What did not load is reported; a shape or normalization mismatch is an error,
never a silent partial load.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import torch
from torch import nn

from trainables import storage

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
    if source.startswith(("http://", "https://")):
        # Cached in $TORCH_HOME/hub/checkpoints, so each node downloads once.
        obj = torch.hub.load_state_dict_from_url(source, map_location="cpu", progress=False, weights_only=True)
    else:
        if not storage.exists(source):
            raise FileNotFoundError(f"pretrained weights not found: {source}")
        data = storage.read_bytes(source)
        if source.endswith(".safetensors"):
            from safetensors.torch import load as load_safetensors

            obj = load_safetensors(data)
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
                key = key[len(prefix):]
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
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in target.items() if k in state and state[k].shape != v.shape]
    if mismatched:
        raise ValueError(f"{source} does not fit the backbone ({len(mismatched)} shape mismatches, e.g. "
                         f"{'; '.join(mismatched[:3])}); is it the same depth and width?")
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
        raise ValueError(f"{source} holds {have} weights but the model's backbone uses {want}; "
                         f"use weights trained with the same normalization (e.g. timm resnet50_gn for gn)")
