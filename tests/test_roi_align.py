"""The CPU RoIAlign (trainables/roi_align.py) against torchvision's kernel: values and gradients."""

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign as TorchvisionPooler
from torchvision.ops import roi_align as torchvision_roi_align

from trainables.roi_align import MAX_DENSE_POSITIONS, MultiScaleRoIAlign, roi_align, separable_roi_align


def _rois(n_images: int, count: int, height: int, width: int, scale: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    batch = torch.randint(0, n_images, (count, 1), generator=g).float()
    # Boxes in image pixels, some reaching past the map's edges and some thinner than a cell.
    xy = torch.rand(count, 2, generator=g) * torch.tensor([width / scale + 20, height / scale + 20]) - 10
    wh = torch.rand(count, 2, generator=g) * 60 + 0.2
    return torch.cat([batch, xy, xy + wh], dim=1)


@pytest.mark.parametrize("n_images,height,width,count,size", [(1, 32, 40, 64, 7), (1, 32, 40, 16, 14),
                                                               (1, 5, 3, 20, 7), (3, 16, 20, 40, 14)])
def test_values_and_gradients_match_torchvision(n_images, height, width, count, size):
    torch.manual_seed(0)
    x = torch.randn(n_images, 8, height, width, dtype=torch.float64, requires_grad=True)
    rois = _rois(n_images, count, height, width, 0.25, seed=count).double()
    weights = torch.randn(count, 8, size, size, dtype=torch.float64)
    grads = []
    for fn in (torchvision_roi_align, separable_roi_align):
        x.grad = None
        out = fn(x, rois, (size, size), 0.25, 2)
        (out * weights).sum().backward()
        grads.append((out.detach(), x.grad.clone()))
    (ref, ref_grad), (ours, our_grad) = grads
    # float64 on both sides: any difference beyond rounding is a different formula.
    assert torch.allclose(ours, ref, atol=1e-12, rtol=1e-10)
    assert torch.allclose(our_grad, ref_grad, atol=1e-12, rtol=1e-10)


def test_large_maps_and_adaptive_sampling_use_torchvision(monkeypatch):
    calls = []
    monkeypatch.setattr("trainables.roi_align.separable_roi_align", lambda *a, **k: calls.append(a))
    side = int(MAX_DENSE_POSITIONS**0.5) + 1
    x = torch.randn(1, 4, side, side)
    rois = _rois(1, 5, side, side, 1.0, seed=1)
    roi_align(x, rois, (7, 7), 1.0, 2)  # map too large for dense weights
    roi_align(x[..., :8, :8], rois, (7, 7), 1.0, 0)  # adaptive sampling ratio
    assert calls == []
    roi_align(x[..., :8, :8], rois, (7, 7), 1.0, 2)
    assert len(calls) == 1


def test_pooler_matches_torchvisions_pooler_over_fpn_levels():
    torch.manual_seed(0)
    features = {str(i): torch.randn(2, 8, 64 // 2**i, 80 // 2**i) for i in range(4)}
    boxes = [_rois(1, 30, 64, 80, 0.25, seed=s)[:, 1:].clamp(min=0) for s in (2, 3)]
    boxes = [torch.cat([b[:, :2], torch.maximum(b[:, 2:], b[:, :2] + 1)], dim=1) for b in boxes]
    shapes = [(256, 320), (256, 320)]
    ours = MultiScaleRoIAlign(["0", "1", "2", "3"], output_size=7, sampling_ratio=2)
    ref = TorchvisionPooler(["0", "1", "2", "3"], output_size=7, sampling_ratio=2)
    out, expected = ours(features, boxes, shapes), ref(features, boxes, shapes)
    assert out.shape == expected.shape == (60, 8, 7, 7)
    assert torch.allclose(out, expected, atol=1e-5)
