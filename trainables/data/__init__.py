"""A trial's data: the COCO-format dataset and its transforms (dataset), the search and test
splits and data fractions (splits), aspect-ratio grouping (grouping), checks of COCO files
(coco_check), keypoint targets (keypoints), and the generated COCO-format toy dataset
(synthetic, shapes).

May import trainables.contract; no Ray.
"""
