"""The model: torchvision's Mask R-CNN as a trial builds it (mask_rcnn), the backbones by name
(zoo), pretrained weights (weights), and a CPU RoIAlign (roi_align). torchvision's private
names live in torchvision_compat.

May import trainables.contract; no Ray.
"""
