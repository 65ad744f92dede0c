"""COCO evaluation of a model on a split: inference and gathering across ranks (evaluate), and
the COCO-format results and COCOeval (coco_eval).

May import trainables.contract, .runtime (the Session and its collectives) and .data; no Ray.
"""
