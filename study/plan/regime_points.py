"""A study's regime indicators before it runs (analysis/stats/regime.py's ratios): each comparison's
training images (and instances, where the training file was counted) against the pretraining
its pretrained arm gets, and what scratch sees at its longest schedule. Pure; no Ray.
"""

from __future__ import annotations

from analysis.stats import regime
from study.spec.resolved import ResolvedStudy, arm_spec
from study.spec.study_config import Arm, StudyConfig
from trainables.data.census import DataCounts


def regime_points(resolved: ResolvedStudy, counts: DataCounts | None) -> list[regime.Point]:
    """Each (model, data fraction)'s regime indicators, from the preset (and the counted
    training files where there are ``counts``)."""
    s = resolved.study
    batch = s.num_workers * s.solver.ims_per_worker
    points = []
    for model in s.axes.model:
        pretrain_images = pretrain_seen = None
        if model in s.pretrained_weights:
            # Given weights are ImageNet's (the presets' are): its distinct images, and the
            # images the preset states they saw.
            pretrain_images, pretrain_seen = regime.IMAGENET_IMAGES, s.pretrained_images.get(model)
        elif s.pretrain is not None:
            pretrain_images, pretrain_seen = s.pretrain.num_images, s.pretrain.images_seen
        for fraction in s.axes.data_fraction:
            counted = counts.per_fraction if counts is not None else {}
            images, instances = counted.get(float(fraction), (expected_images(s, fraction), None))
            # Scratch's own settings, also where scratch is no arm of this study.
            arm = Arm("scratch", fraction, model)
            spec = next((a for a in resolved.arms if a.arm == arm), None) or arm_spec(s, arm)
            longest = max((*spec.schedules, spec.recipe["schedule"]))
            points.append(
                regime.Point(
                    f"{model}, data fraction {fraction:g}",
                    images,
                    instances,
                    pretrain_images if "pretrained" in s.axes.init else None,
                    pretrain_seen if "pretrained" in s.axes.init else None,
                    round(longest * s.solver.base_iters * batch),
                )
            )
    return points


def expected_images(s: StudyConfig, fraction: float) -> int:
    """A fraction's training images as the trials choose them (every generated image holds
    objects; a COCO file's images without objects are not known before it is read)."""
    d = s.data
    pool = (d.synthetic.num_train if d.source == "synthetic" else d.fraction_of_images) - d.search_holdout
    return min(pool, max(1, round(fraction * (d.fraction_of_images or pool)))) if pool > 0 else 0
