"""The CPU RoIAlign backward (trainables/model/roi_align.py) against torchvision's kernel."""

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign as TorchvisionPooler
from torchvision.ops import roi_align as torchvision_roi_align

from trainables.model.roi_align import MAX_DENSE_POSITIONS, MultiScaleRoIAlign, roi_align, separable_roi_align


def _rois(n_images: int, count: int, height: int, width: int, scale: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    batch = torch.randint(0, n_images, (count, 1), generator=g).float()
    # Boxes in image pixels, some reaching past the map's edges and some thinner than a cell.
    xy = torch.rand(count, 2, generator=g) * torch.tensor([width / scale + 20, height / scale + 20]) - 10
    wh = torch.rand(count, 2, generator=g) * 60 + 0.2
    return torch.cat([batch, xy, xy + wh], dim=1)


@pytest.mark.parametrize(
    "n_images,height,width,count,size", [(1, 32, 40, 64, 7), (1, 32, 40, 16, 14), (1, 5, 3, 20, 7), (3, 16, 20, 40, 14)]
)
def test_values_and_gradients_match_torchvision(n_images, height, width, count, size):
    torch.manual_seed(0)
    x = torch.randn(n_images, 8, height, width, dtype=torch.float64, requires_grad=True)
    rois = _rois(n_images, count, height, width, 0.25, seed=count).double()
    weights = torch.randn(count, 8, size, size, dtype=torch.float64)
    results = []
    for fn in (torchvision_roi_align, separable_roi_align, roi_align):
        x.grad = None
        out = fn(x, rois, (size, size), 0.25, 2)
        (out * weights).sum().backward()
        results.append((out.detach(), x.grad.clone()))
    (ref, ref_grad), *ours = results
    # float64 on both sides: any difference beyond rounding is a different formula.
    for out, grad in ours:
        assert torch.allclose(out, ref, atol=1e-12, rtol=1e-10)
        assert torch.allclose(grad, ref_grad, atol=1e-12, rtol=1e-10)


def _separable(out: torch.Tensor) -> bool:
    return out.grad_fn is not None and "roi_align" not in type(out.grad_fn).__name__


def test_separable_form_only_where_it_pays():
    side = int(MAX_DENSE_POSITIONS**0.5) + 1
    big = torch.randn(1, 4, side, side, requires_grad=True)
    small = torch.randn(1, 4, 8, 8, requires_grad=True)
    rois = _rois(1, 5, 8, 8, 1.0, seed=1)
    assert _separable(roi_align(small, rois, (7, 7), 1.0, 2))
    assert not _separable(roi_align(big, rois, (7, 7), 1.0, 2))  # dense weights would cost too much
    assert not _separable(roi_align(small, rois, (7, 7), 1.0, 0))  # adaptive sampling ratio
    with torch.no_grad():  # evaluation: torchvision's kernel, nothing to differentiate
        assert roi_align(small, rois, (7, 7), 1.0, 2).grad_fn is None


def test_pooler_matches_torchvisions_pooler_over_fpn_levels():
    torch.manual_seed(0)
    # Features that want a gradient, as in training: our pooler takes the separable path.
    features = {str(i): torch.randn(2, 8, 64 // 2**i, 80 // 2**i, requires_grad=True) for i in range(4)}
    boxes = [_rois(1, 30, 64, 80, 0.25, seed=s)[:, 1:].clamp(min=0) for s in (2, 3)]
    boxes = [torch.cat([b[:, :2], torch.maximum(b[:, 2:], b[:, :2] + 1)], dim=1) for b in boxes]
    shapes = [(256, 320), (256, 320)]
    ours = MultiScaleRoIAlign(["0", "1", "2", "3"], output_size=7, sampling_ratio=2)
    ref = TorchvisionPooler(["0", "1", "2", "3"], output_size=7, sampling_ratio=2)
    out, expected = ours(features, boxes, shapes), ref(features, boxes, shapes)
    assert out.shape == expected.shape == (60, 8, 7, 7)
    assert torch.allclose(out, expected, atol=1e-5)
