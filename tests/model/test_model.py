"""The detector: nothing frozen from scratch, the paper's heads, a real optimizer step."""

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from trainables.model.mask_rcnn import assert_scratch_ready, build_model, count_parameters, freeze_stages, param_groups
from trainables.model.zoo import R50_GN, TINY_GN, TINY_GN_KEYPOINTS


def _norm_types(model):
    return {type(m) for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, FrozenBatchNorm2d))}


@pytest.mark.parametrize("cfg", [TINY_GN, R50_GN], ids=["tiny", "r50"])
def test_scratch_gn_has_nothing_frozen(cfg):
    model = build_model(cfg, 80, min_size=(800,), max_size=1333)
    assert_scratch_ready(model)
    total, trainable = count_parameters(model)
    assert total == trainable
    assert _norm_types(model) == {nn.GroupNorm}
    # GN in the FPN and in the 4conv1fc box head and the mask head, as the paper
    assert any(isinstance(m, nn.GroupNorm) for m in model.backbone.fpn.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in model.roi_heads.box_head.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in model.roi_heads.mask_head.modules())
    assert sum(isinstance(m, nn.Conv2d) for m in model.roi_heads.box_head.modules()) == cfg.box_head_convs


def test_r50_matches_torchvision_layout():
    from torchvision.models import resnet50

    model = build_model(R50_GN, 80, min_size=(800,), max_size=1333)
    ours = {k: v.shape for k, v in model.backbone.body.state_dict().items()}
    ref = {
        k: v.shape
        for k, v in resnet50().state_dict().items()
        if not k.startswith("fc.") and "running" not in k and "num_batches" not in k
    }
    assert ours == ref


def test_guard_catches_torchvision_defaults():
    # Why the model is assembled by hand: torchvision's FPN backbone builder defaults to
    # FrozenBatchNorm2d and 3 trainable stages (pytorch/vision#2164); the guard must see it.
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None)
    with pytest.raises(RuntimeError, match="FrozenBatchNorm2d"):
        assert_scratch_ready(backbone)


def test_frozenbn_freezes_stem_and_res2():
    cfg = TINY_GN.__class__(**{**TINY_GN.__dict__, "norm": "frozenbn", "box_head_convs": 0})
    model = build_model(cfg, 3, min_size=(96,), max_size=128)
    freeze_stages(model, 2)
    body = model.backbone.body
    assert not any(p.requires_grad for p in body.conv1.parameters())
    assert not any(p.requires_grad for p in body.layer1.parameters())
    assert all(p.requires_grad for p in body.layer2.parameters())
    assert FrozenBatchNorm2d in _norm_types(model)
    assert len(model.roi_heads.box_head) == 5  # flatten + 2x (fc, relu): the 2fc head


def test_norm_weight_decay_groups():
    model = build_model(TINY_GN, 3, min_size=(96,), max_size=128)
    groups = param_groups(model, 1e-4, 0.0)
    norm_params = {id(p) for m in model.modules() if isinstance(m, nn.GroupNorm) for p in m.parameters()}
    assert {id(p) for p in groups[1]["params"]} == norm_params and groups[1]["weight_decay"] == 0.0
    assert groups[0]["weight_decay"] == 1e-4
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert param_groups(model, 1e-4, None)[1]["weight_decay"] == 1e-4


def test_one_training_step_on_cpu():
    torch.manual_seed(0)
    model = build_model(TINY_GN, 3, min_size=(96,), max_size=128)
    images = [torch.rand(3, 96, 112), torch.rand(3, 100, 96)]
    masks = torch.zeros(1, 96, 112, dtype=torch.uint8)
    masks[0, 20:50, 30:70] = 1
    targets = [
        {"boxes": torch.tensor([[30.0, 20.0, 70.0, 50.0]]), "labels": torch.tensor([2]), "masks": masks},
        {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.int64),
            "masks": torch.zeros(0, 100, 96, dtype=torch.uint8),
        },
    ]
    opt = torch.optim.SGD(param_groups(model, 1e-4, 0.0), lr=0.01, momentum=0.9)
    before = model.roi_heads.box_predictor.cls_score.weight.clone()
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    assert not torch.equal(before, model.roi_heads.box_predictor.cls_score.weight)
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 96, 112)])
    assert set(out[0]) == {"boxes", "labels", "scores", "masks"} and out[0]["masks"].shape[-2:] == (96, 112)


def test_evaluation_uses_its_own_size():
    model = build_model(TINY_GN, 3, min_size=(64, 80), max_size=400, test_min_size=128)
    image = torch.rand(3, 100, 150)
    model.eval()
    evaluated, _ = model.transform([image])
    assert min(evaluated.image_sizes[0]) == 128
    model.train()
    trained, _ = model.transform([image], [{"boxes": torch.tensor([[1.0, 1, 9, 9]]), "labels": torch.tensor([1])}])
    assert min(trained.image_sizes[0]) in (64, 80)


def test_a_keypoint_task_adds_a_normalized_keypoint_head_that_trains():
    """Mask R-CNN with a keypoint branch (torchvision's RoIHeads runs it beside the mask's):
    a GN after every conv of the head, nothing frozen from scratch, a keypoint loss whose
    step moves the head, and keypoints with scores from evaluation."""
    torch.manual_seed(0)
    model = build_model(TINY_GN, 1, min_size=(96,), max_size=128, num_keypoints=5)
    head = model.roi_heads.keypoint_head
    convs = [m for m in head if isinstance(m, nn.Conv2d)]
    norms = [m for m in head if isinstance(m, nn.GroupNorm)]
    assert len(convs) == len(norms) == TINY_GN.keypoint_head_convs and convs[0].bias is None
    assert convs[-1].out_channels == TINY_GN.keypoint_head_dim
    assert model.roi_heads.keypoint_predictor.kps_score_lowres.out_channels == 5
    # 14 x 14 RoIs by default (56 x 56 heatmaps); the toy's keypoint model pools 7 x 7.
    assert tuple(model.roi_heads.keypoint_roi_pool.output_size) == (14, 14)
    small = build_model(TINY_GN_KEYPOINTS, 1, min_size=(96,), max_size=128, num_keypoints=5)
    assert tuple(small.roi_heads.keypoint_roi_pool.output_size) == (7, 7)
    assert_scratch_ready(model)
    masks = torch.zeros(1, 96, 112, dtype=torch.uint8)
    masks[0, 20:60, 30:80] = 1
    # x, y, visibility: two visible, one hidden but labelled, two unlabelled.
    points = torch.tensor([[[35.0, 25, 2], [75, 25, 2], [55, 40, 1], [0, 0, 0], [0, 0, 0]]])
    target = {"boxes": torch.tensor([[30.0, 20, 80, 60]]), "labels": torch.tensor([1]), "masks": masks}
    losses = model([torch.rand(3, 96, 112)], [{**target, "keypoints": points}])
    assert set(losses) == {
        "loss_classifier",
        "loss_box_reg",
        "loss_mask",
        "loss_keypoint",
        "loss_objectness",
        "loss_rpn_box_reg",
    }
    before = model.roi_heads.keypoint_predictor.kps_score_lowres.weight.clone()
    opt = torch.optim.SGD(param_groups(model, 1e-4, 0.0), lr=0.01, momentum=0.9)
    sum(losses.values()).backward()
    opt.step()
    assert not torch.equal(before, model.roi_heads.keypoint_predictor.kps_score_lowres.weight)
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 96, 112)])[0]
    assert {"keypoints", "keypoints_scores", "masks"} <= set(out)
    assert out["keypoints"].shape[1:] == (5, 3) and out["keypoints_scores"].shape[1:] == (5,)
    # Without keypoints the model is the plain Mask R-CNN.
    assert build_model(TINY_GN, 1, min_size=(96,), max_size=128).roi_heads.keypoint_head is None


def test_uint8_images_are_normalized_on_the_models_device_exactly_as_floats_were():
    """The dataset hands uint8 images (a quarter of the bytes through the loader and to the
    GPU); the model's transform makes them float in [0, 1] there: the normalized tensor is
    the one the float hand-off gave, bit for bit, and a batch may mix both."""
    torch.manual_seed(0)
    model = build_model(TINY_GN, 5, min_size=(64,), max_size=96, test_min_size=80).eval()
    pixels = torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8)
    as_float = pixels.float().div_(255)  # the hand-off before: pil_to_tensor(...).float().div_(255)
    assert torch.equal(model.transform.normalize(pixels), model.transform.normalize(as_float))
    batch, _ = model.transform([pixels, as_float])
    assert batch.tensors.dtype == torch.float32 and torch.equal(batch.tensors[0], batch.tensors[1])
    with torch.no_grad():
        a, b = model([pixels]), model([as_float])
    assert torch.equal(a[0]["boxes"], b[0]["boxes"]) and torch.equal(a[0]["scores"], b[0]["scores"])
