"""The model configurations the presets use: the paper's Mask R-CNN variants and a tiny one.

Plain frozen dataclasses (trainables/contract/trial_config.py's ModelConfig); trainables/model/mask_rcnn.py builds
them. Importing this imports no torch.
"""

from __future__ import annotations

import dataclasses

from trainables.contract.trial_config import CAFFE2_PIXEL_MEAN, CAFFE2_PIXEL_STD, ModelConfig

# The paper's Mask R-CNN R50/R101-FPN with GN (32 groups, Detectron's G) in backbone, FPN,
# 4conv1fc box head and 4-conv mask head (paper Sec. 4.1; detectron2
# configs/Misc/scratch_mask_rcnn_R_50_FPN_9x_gn.yaml).
R50_GN = ModelConfig(
    depth=50, width=64, norm="gn", gn_groups=32, fpn_channels=256, box_head_convs=4, box_head_fc=1024, mask_head_convs=4
)
R101_GN = dataclasses.replace(R50_GN, depth=101)
# SyncBN variant (paper Fig. 4): BN everywhere, synchronized across GPUs (detectron2's
# Misc/mask_rcnn_R_50_FPN_3x_syncbn), 4conv1fc head.
R50_SYNCBN = dataclasses.replace(R50_GN, norm="syncbn")
# The paper's pretrained inits are Detectron's own R-50-GN.pkl and R-101-GN.pkl, trained in
# Caffe2 on 0-255 BGR pixels: both arms of a comparison use that normalization.
R50_GN_CAFFE2 = dataclasses.replace(R50_GN, pixel_mean=CAFFE2_PIXEL_MEAN, pixel_std=CAFFE2_PIXEL_STD)
R101_GN_CAFFE2 = dataclasses.replace(R101_GN, pixel_mean=CAFFE2_PIXEL_MEAN, pixel_std=CAFFE2_PIXEL_STD)

# A ResNet-18-class backbone at a quarter width (stages of 16, 32, 64, 128 channels) with a
# 24-channel FPN and light heads (GN everywhere, 4conv1fc scaled down to 2conv1fc). The
# embedded default's budget is CPU-seconds and its learning is limited by the optimizer
# steps it can afford: at this size a step costs about the same whatever the image size,
# so the cuts are in parameters and per-RoI work (a narrow backbone and FPN, 32 sampled
# RoIs, 100 proposals from the 200 best anchors per level), each of which left the AP
# reached per step unchanged (docs/toy_calibration.md). 8 GN groups: 32 would split the
# 16-channel stem into single channels.
TINY_GN = ModelConfig(
    depth=18,
    width=16,
    norm="gn",
    gn_groups=8,
    fpn_channels=24,
    box_head_convs=2,
    box_head_fc=256,
    mask_head_convs=2,
    # Objects are 32-100 px across in 96-128-px images, so anchors start 4x smaller than COCO's 32.
    anchor_sizes=(8, 16, 32, 64, 128),
    rpn_pre_nms_top_n_train=200,
    rpn_post_nms_top_n_train=100,
    rpn_pre_nms_top_n_test=300,
    rpn_post_nms_top_n_test=100,
    box_batch_size_per_image=32,
    detections_per_img=50,
)

# The tiny model for the generated keypoint task (4 keypoints per kite): the keypoint head
# of Mask R-CNN (He et al. 2017, Sec. 5; torchvision's KeypointRCNNHeads) scaled down as
# the other heads are, 4 convs of 64 channels instead of 8 of 512, with GN, on 7 x 7 RoIs
# (28 x 28 heatmaps for objects of 32-100 px; the same keypoint AP per step as 14 x 14 on
# the search split, at a cheaper step).
TINY_GN_KEYPOINTS = dataclasses.replace(TINY_GN, keypoint_head_convs=4, keypoint_head_dim=64, keypoint_roi_size=7)
