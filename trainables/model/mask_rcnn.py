"""torchvision Mask R-CNN with a ResNet-FPN backbone, built for the paper's comparison.

He et al. (2019) replace every frozen BN with GroupNorm or SyncBN, in the backbone, the FPN
and the 4conv1fc box head and mask head, and fine-tune the pretrained model with the same
normalization, nothing frozen (paper Sec. 3 and 4.1). torchvision's own builders
freeze layers and use FrozenBatchNorm whenever backbone weights are given (and did so even
without them before PR #5443, pytorch/vision#2164), so the model is assembled here from
torchvision's parts instead. ``frozenbn`` is the classic fine-tuning baseline (Detectron's
FREEZE_AT=2 and a 2fc box head), only valid with pretrained weights.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from trainables.contract.trial_config import CAFFE2_PIXEL_MEAN, CAFFE2_PIXEL_STD, ModelConfig
from trainables.data.mask_handoff import paste_masks
from trainables.model.roi_align import MultiScaleRoIAlign

NORM_TYPES = (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm, FrozenBatchNorm2d)


class TestSizeTransform(GeneralizedRCNNTransform):
    """torchvision's resize-and-normalize, with its own shorter side for evaluation, taking
    uint8 images and cropped training masks (trainables/data/mask_handoff.py) too.

    torchvision evaluates at the last training size; with scale augmentation ("train aug",
    shorter side drawn from 640..800) the paper still tests at one fixed size.
    """

    def __init__(self, test_min_size: int, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.test_min_size = test_min_size

    def normalize(self, image):
        """uint8 images (the dataset's, trainables/data/dataset.py) become float in [0, 1] here,
        on the model's device, exactly as ``pil_to_tensor(...).float().div_(255)`` would on the
        host; float images pass as they are."""
        if image.dtype == torch.uint8:
            image = image.float().div_(255)
        return super().normalize(image)

    def resize(self, image, target=None):
        if target is not None:
            target = paste_masks(target, image.device)  # whole masks at the image's size, then resized
        if self.training:
            return super().resize(image, target)
        train_sizes, self.min_size = self.min_size, (self.test_min_size,)
        try:
            return super().resize(image, target)
        finally:
            self.min_size = train_sizes


class ResNet(tv_resnet.ResNet):
    """torchvision's ResNet with a configurable stem width.

    With ``width=64`` it is exactly torchvision's resnet18/50/101 (same module names and
    shapes), so torchvision and timm ImageNet state_dicts load into it unchanged; a smaller
    width gives the narrow CPU variant.
    """

    def __init__(self, depth: int, width: int, norm_layer: Callable[[int], nn.Module]) -> None:
        block, layers = {
            18: (tv_resnet.BasicBlock, [2, 2, 2, 2]),
            50: (tv_resnet.Bottleneck, [3, 4, 6, 3]),
            101: (tv_resnet.Bottleneck, [3, 4, 23, 3]),
        }[depth]
        nn.Module.__init__(self)
        self._norm_layer = norm_layer
        self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, 1000)
        # MSRA init for convs, (1, 0) for norms: the paper's random init (He et al. 2015).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        self.out_channels = [width * (2**i) * block.expansion for i in range(4)]


def norm_factory(norm: str, gn_groups: int) -> Callable[[int], nn.Module] | None:
    """The norm layer for the backbone; heads/FPN get ``head_norm_factory``."""
    if norm == "gn":
        return partial(nn.GroupNorm, gn_groups)
    if norm == "syncbn":
        # Plain BN here; converted to SyncBatchNorm once the process group exists (model.py's
        # caller), so the same model also runs in one process.
        return nn.BatchNorm2d
    if norm == "frozenbn":
        return FrozenBatchNorm2d
    raise ValueError(f"unknown norm {norm!r}")


def head_norm_factory(norm: str, gn_groups: int) -> Callable[[int], nn.Module] | None:
    # The frozen-BN baseline has no norm in FPN and heads (torchvision/Detectron default).
    return None if norm == "frozenbn" else norm_factory(norm, gn_groups)


def build_backbone_body(cfg: ModelConfig) -> ResNet:
    return ResNet(cfg.depth, cfg.width, norm_factory(cfg.norm, cfg.gn_groups))


class KeypointHead(nn.Sequential):
    """torchvision's ``KeypointRCNNHeads`` (3x3 convs, each followed by ReLU) with a norm after
    each conv: the paper's GN setting normalizes every conv head (the box and mask heads,
    Sec. 3), and a keypoint head trained from scratch is one more such head. ``norm_layer`` None
    gives torchvision's head exactly."""

    def __init__(self, in_channels: int, dim: int, convs: int, norm_layer: Callable[[int], nn.Module] | None):
        layers: list[nn.Module] = []
        for i in range(convs):
            layers.append(nn.Conv2d(in_channels if i == 0 else dim, dim, 3, padding=1, bias=norm_layer is None))
            if norm_layer is not None:
                layers.append(norm_layer(dim))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
        for m in self.modules():  # torchvision's init of its keypoint head
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)


def build_model(
    cfg: ModelConfig,
    num_classes: int,
    *,
    min_size: tuple[int, ...],
    max_size: int,
    test_min_size: int | None = None,
    num_keypoints: int = 0,
) -> MaskRCNN:
    """Mask R-CNN for ``num_classes`` foreground classes (background is added here), with a
    keypoint head for ``num_keypoints`` keypoints per object when that is > 0 (the paper's
    keypoint experiment: Mask R-CNN R50-FPN GN on COCO person keypoints, 2x and 3x).

    Resizing happens inside the model (``GeneralizedRCNNTransform``): the shorter side is
    drawn from ``min_size`` in training and set to ``test_min_size`` in evaluation.
    """
    body = build_backbone_body(cfg)
    head_norm = head_norm_factory(cfg.norm, cfg.gn_groups)
    backbone = BackboneWithFPN(
        body,
        return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
        in_channels_list=body.out_channels,
        out_channels=cfg.fpn_channels,
        extra_blocks=LastLevelMaxPool(),
        norm_layer=head_norm,
    )
    c = cfg.fpn_channels
    conv_layers = [c] * cfg.box_head_convs
    # 4conv1fc (paper, with GN/SyncBN) or 2fc when there are no convs (frozen-BN baseline).
    fc_layers = [cfg.box_head_fc] if conv_layers else [cfg.box_head_fc] * 2
    box_head = FastRCNNConvFCHead((c, 7, 7), conv_layers, fc_layers, norm_layer=head_norm)
    mask_head = MaskRCNNHeads(c, [c] * cfg.mask_head_convs, 1, norm_layer=head_norm)
    anchors = AnchorGenerator(sizes=tuple((s,) for s in cfg.anchor_sizes), aspect_ratios=((0.5, 1.0, 2.0),) * 5)
    model = MaskRCNN(
        backbone,
        num_classes=None,  # given by the predictors, whose widths torchvision would hard-code
        min_size=min_size,
        max_size=max_size,
        image_mean=list(cfg.pixel_mean),
        image_std=list(cfg.pixel_std),
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train,
        rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
        # torchvision's default poolers (FPN levels 0-3, sampling ratio 2), with a faster CPU
        # RoIAlign for small maps (trainables/model/roi_align.py).
        box_roi_pool=MultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"], output_size=7, sampling_ratio=2),
        mask_roi_pool=MultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"], output_size=14, sampling_ratio=2),
        box_head=box_head,
        box_predictor=FastRCNNPredictor(cfg.box_head_fc, num_classes + 1),
        box_batch_size_per_image=cfg.box_batch_size_per_image,
        box_detections_per_img=cfg.detections_per_img,
        mask_head=mask_head,
        mask_predictor=MaskRCNNPredictor(c, c, num_classes + 1),
    )
    if num_keypoints > 0:
        # torchvision's RoIHeads runs a keypoint branch beside the mask branch when these
        # three are set (as KeypointRCNN sets them): RoIs of keypoint_roi_size (14), heatmaps
        # upscaled 4x (to 56 x 56).
        heads = model.roi_heads
        heads.keypoint_roi_pool = MultiScaleRoIAlign(
            featmap_names=["0", "1", "2", "3"], output_size=cfg.keypoint_roi_size, sampling_ratio=2
        )
        heads.keypoint_head = KeypointHead(c, cfg.keypoint_head_dim, cfg.keypoint_head_convs, head_norm)
        heads.keypoint_predictor = KeypointRCNNPredictor(cfg.keypoint_head_dim, num_keypoints)
    # Without a test size, torchvision's own rule: evaluate at the last training size.
    test = test_min_size if test_min_size is not None else tuple(min_size)[-1]
    model.transform = TestSizeTransform(test, min_size, max_size, list(cfg.pixel_mean), list(cfg.pixel_std))
    return model


def freeze_stages(model: MaskRCNN, stages: int) -> None:
    """Freeze the stem (stage 1) and the first ``stages - 1`` residual stages."""
    body = model.backbone.body
    parts = [("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",)][:stages]
    for names in parts:
        for name in names:
            for p in getattr(body, name).parameters():
                p.requires_grad_(False)


def convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def is_norm_param(module: nn.Module) -> bool:
    return isinstance(module, NORM_TYPES)


def param_groups(model: nn.Module, weight_decay: float, weight_decay_norm: float | None) -> list[dict]:
    """SGD parameter groups: norm weights/biases may get their own weight decay."""
    norm, other = [], []
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if p.requires_grad:
                (norm if is_norm_param(module) else other).append(p)
    wd_norm = weight_decay if weight_decay_norm is None else weight_decay_norm
    groups = [{"params": other, "weight_decay": weight_decay}]
    if norm:
        groups.append({"params": norm, "weight_decay": wd_norm})
    return groups


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def assert_scratch_ready(model: nn.Module) -> None:
    """From scratch, nothing may be frozen: no FrozenBatchNorm, every parameter trainable."""
    frozen_bn = [n for n, m in model.named_modules() if isinstance(m, FrozenBatchNorm2d)]
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    if frozen_bn or frozen:
        raise RuntimeError(
            f"scratch model has frozen parts: FrozenBatchNorm2d at {frozen_bn[:3]}, frozen parameters {frozen[:3]}"
        )


__all__ = [
    "CAFFE2_PIXEL_MEAN",
    "CAFFE2_PIXEL_STD",
    "KeypointHead",
    "ResNet",
    "build_backbone_body",
    "build_model",
    "freeze_stages",
    "convert_sync_batchnorm",
    "param_groups",
    "count_parameters",
    "assert_scratch_ready",
]
