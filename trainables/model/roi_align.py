"""RoIAlign as two matrix products per image, for training on small CPU feature maps.

torchvision's CPU RoIAlign backward visits every (RoI, channel, bin, sample) and recomputes
the sample's bilinear weights for each channel; in the toy study it is the costliest single
operation of a training step (box 7x7 and mask 14x14 pooling, sampling ratio 2). Bilinear
sampling is separable, so for one RoI the pooled map is ``Wy @ F @ Wx.T`` per channel, with
``Wy`` (bins x H) and ``Wx`` (bins x W) the sample weights averaged over each bin, exactly
torchvision's ``roi_align`` arithmetic (Mask R-CNN, He et al. 2017; torchvision
``csrc/ops/cpu/roi_align_kernel.cpp``: samples outside [-1, size] count as zero, others are
clamped to the map). Dense weights cost O(bins x H x W) per RoI, so this path is taken only
on the CPU, for maps of at most ``MAX_DENSE_POSITIONS`` positions and a fixed sampling
ratio, and only where a gradient is wanted: evaluation keeps torchvision's kernel, whose
forward pass is the faster one, and so does everything on GPUs and COCO-sized maps. Values
and gradients agree with torchvision's to float rounding (tests/model/test_roi_align.py); in an
interleaved A/B on the toy model the training step took 10-16% less time.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign as _TorchvisionPooler
from torchvision.ops import roi_align as torchvision_roi_align

# The pooler's private helpers (trainables/model/torchvision_compat.py); the test compares this
# pooler with torchvision's own, so a change there fails loudly.
from trainables.model.torchvision_compat import convert_to_roi_format, filter_input, setup_scales

# 64 x 64 positions: the toy's largest FPN level is 32 x 48; COCO's (200 x 336 at 800 px) is
# far above, where the dense weights would cost more than torchvision's kernel saves.
MAX_DENSE_POSITIONS = 4096


def _axis_weights(start: Tensor, size: Tensor, bins: int, sampling_ratio: int, length: int) -> Tensor:
    """(R, bins, length): each bin's bilinear weights along one axis, averaged over its samples."""
    offsets = (torch.arange(sampling_ratio, dtype=start.dtype, device=start.device) + 0.5) / sampling_ratio
    grid = torch.arange(bins, dtype=start.dtype, device=start.device)[:, None] + offsets  # (bins, sr)
    pos = start[:, None, None] + (size / bins)[:, None, None] * grid  # (R, bins, sr)
    valid = ((pos >= -1.0) & (pos <= length)).to(start.dtype)
    pos = pos.clamp(min=0)
    low = pos.floor().long()
    at_edge = low >= length - 1
    low = torch.where(at_edge, length - 1, low)
    high = torch.where(at_edge, low, low + 1)
    frac = torch.where(at_edge, torch.zeros_like(pos), pos - low)
    weights = torch.zeros(*pos.shape, length, dtype=start.dtype, device=start.device)
    weights.scatter_add_(3, low[..., None], ((1 - frac) * valid)[..., None])
    weights.scatter_add_(3, high[..., None], (frac * valid)[..., None])
    return weights.sum(2) / sampling_ratio


def _bin_weights(
    rois: Tensor, output_size: tuple[int, int], spatial_scale: float, sampling_ratio: int, height: int, width: int
) -> tuple[Tensor, Tensor]:
    """(Wy, Wx): (R, ph, H) and (R, pw, W) for torchvision's RoI geometry (aligned=False)."""
    x1, y1 = rois[:, 1] * spatial_scale, rois[:, 2] * spatial_scale
    # torchvision's legacy behaviour: RoIs at least one cell wide.
    roi_w = (rois[:, 3] * spatial_scale - x1).clamp(min=1.0)
    roi_h = (rois[:, 4] * spatial_scale - y1).clamp(min=1.0)
    return (
        _axis_weights(y1, roi_h, output_size[0], sampling_ratio, height),
        _axis_weights(x1, roi_w, output_size[1], sampling_ratio, width),
    )


def separable_roi_align(
    x: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float, sampling_ratio: int
) -> Tensor:
    """``torchvision.ops.roi_align`` (rois as (batch index, x1, y1, x2, y2)) by matrix products.

    Autograd differentiates the two products, which is where the time is saved.
    """
    ph, pw = output_size
    n, c, h, w = x.shape
    wy, wx = _bin_weights(rois, output_size, spatial_scale, sampling_ratio, h, w)

    def pool(image: Tensor, wy: Tensor, wx: Tensor) -> Tensor:
        rows = torch.matmul(wy, image.permute(1, 0, 2).reshape(h, c * w))  # (r, ph, c * w)
        pooled = torch.bmm(rows.view(-1, ph * c, w), wx.transpose(1, 2))  # (r, ph * c, pw)
        return pooled.view(-1, ph, c, pw).permute(0, 2, 1, 3)

    if n == 1:  # one image per worker in the toy study: no gathering by image
        return pool(x[0], wy, wx)
    batch = rois[:, 0].long()
    out = x.new_zeros(rois.shape[0], c, ph, pw)
    for i in range(n):
        idx = torch.where(batch == i)[0]
        out = out.index_copy(0, idx, pool(x[i], wy[idx], wx[idx]))
    return out


def roi_align(
    x: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float, sampling_ratio: int
) -> Tensor:
    """The separable form where its backward pass pays off, torchvision's kernel elsewhere."""
    if (
        x.requires_grad
        and torch.is_grad_enabled()
        and x.device.type == "cpu"
        and sampling_ratio > 0
        and x.shape[-2] * x.shape[-1] <= MAX_DENSE_POSITIONS
    ):
        return separable_roi_align(x, rois, tuple(output_size), spatial_scale, sampling_ratio)
    return torchvision_roi_align(
        x, rois, output_size=output_size, spatial_scale=spatial_scale, sampling_ratio=sampling_ratio
    )


class MultiScaleRoIAlign(_TorchvisionPooler):
    """torchvision's FPN pooler (same levels, scales and state), pooling with :func:`roi_align`."""

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        features = filter_input(x, self.featmap_names)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = setup_scales(
                features, image_shapes, self.canonical_scale, self.canonical_level
            )
        rois = convert_to_roi_format(boxes)
        if len(features) == 1:
            return roi_align(features[0], rois, self.output_size, self.scales[0], self.sampling_ratio)
        levels = self.map_levels(boxes)
        result = features[0].new_zeros((len(rois), features[0].shape[1], *self.output_size))
        for level, (feature, scale) in enumerate(zip(features, self.scales)):
            idx = torch.where(levels == level)[0]
            if len(idx) == 0:  # small objects leave the coarse levels empty: nothing to pool
                continue
            # Match dtypes: under autocast the levels may come out in different precisions.
            result[idx] = roi_align(feature, rois[idx], self.output_size, scale, self.sampling_ratio).to(result.dtype)
        return result


__all__ = ["MultiScaleRoIAlign", "roi_align", "separable_roi_align", "MAX_DENSE_POSITIONS"]
