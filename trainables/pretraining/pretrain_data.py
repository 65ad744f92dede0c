"""The images the embedded "ImageNet" classifies: a world of its own, not the detection task's.

ImageNet's classes are not COCO's, and its images are not COCO's. The stand-in keeps both
gaps: its classes are shapes that the detection data never draws (none is a detection
category or the keypoint task's kite; tests/data/test_pretrain_data.py checks it), there are more
of them than the detection data has categories, and they are filled with textures and laid
on backgrounds of their own (gradients, waves, dots and blocks over smooth blotches, where
the detection data has solid, striped, checked and noisy objects over a noisy gradient with
lines). A backbone pretrained here has learned edges, corners and shapes in general, and
nothing of the target task in particular.

Everything is a pure function of a ``numpy.random.Generator``.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from trainables.data import shapes

# The stand-in's classes, in order; a spec takes its first ``num_classes``. Three are
# shapes.py's kinds the detection data leaves out, nine are drawn here. (shapes.py's pentagon
# and hexagon are left out too: at these sizes they are nearly the detection data's disc.)
CLASSES = (
    "star",
    "ellipse",
    "half_disc",
    "crescent",
    "ell",
    "tee",
    "trapezoid",
    "bowtie",
    "semi_ring",
    "parallelogram",
    "arch",
    "steps",
)


def class_names(num_classes: int) -> tuple[str, ...]:
    """A spec's class names: the first ``num_classes`` of :data:`CLASSES`."""
    if not 2 <= num_classes <= len(CLASSES):
        raise ValueError(f"num_classes must be in [2, {len(CLASSES)}], got {num_classes}")
    return CLASSES[:num_classes]


OWN_KINDS = ("crescent", "ell", "tee", "trapezoid", "bowtie", "semi_ring", "parallelogram", "arch", "steps")
TEXTURES = ("gradient", "waves", "dots", "blocks")


def _turn(points: list[tuple[float, float]], cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Unit-square points (x, y in [-1, 1]) scaled by ``r``, rotated by ``angle``, moved to (cx, cy)."""
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in points]


POLYGONS = {
    "ell": [(-0.8, -1), (-0.2, -1), (-0.2, 0.4), (0.8, 0.4), (0.8, 1), (-0.8, 1)],
    "tee": [(-1, -0.9), (1, -0.9), (1, -0.35), (0.3, -0.35), (0.3, 1), (-0.3, 1), (-0.3, -0.35), (-1, -0.35)],
    "trapezoid": [(-1, 0.6), (1, 0.6), (0.45, -0.6), (-0.45, -0.6)],
    "parallelogram": [(-1, 0.55), (0.35, 0.55), (1, -0.55), (-0.35, -0.55)],
    "arch": [(-1, 1), (-1, -1), (1, -1), (1, 1), (0.45, 1), (0.45, -0.3), (-0.45, -0.3), (-0.45, 1)],
    "steps": [(-1, 1), (-1, 0.33), (-0.33, 0.33), (-0.33, -0.33), (0.33, -0.33), (0.33, -1), (1, -1), (1, 1)],
}


def class_mask(kind: str, size: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """A boolean (size, size) mask of one of :data:`CLASSES`."""
    if kind not in OWN_KINDS:
        return shapes.shape_mask(kind, size, size, cx, cy, r, angle)
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if kind in POLYGONS:
        draw.polygon(_turn(POLYGONS[kind], cx, cy, r, angle), fill=255)
    elif kind == "bowtie":
        draw.polygon(_turn([(-1, -0.8), (0, 0), (-1, 0.8)], cx, cy, r, angle), fill=255)
        draw.polygon(_turn([(1, -0.8), (0, 0), (1, 0.8)], cx, cy, r, angle), fill=255)
    elif kind == "crescent":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        ox, oy = cx + 0.55 * r * math.cos(angle), cy + 0.55 * r * math.sin(angle)
        inner = 0.85 * r
        draw.ellipse([ox - inner, oy - inner, ox + inner, oy + inner], fill=0)
    elif kind == "semi_ring":
        box = [cx - r, cy - r, cx + r, cy + r]
        start = math.degrees(angle)
        draw.pieslice(box, start, start + 180, fill=255)
        inner = 0.5 * r
        draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    else:
        raise ValueError(f"unknown pretraining class {kind!r}")
    return np.asarray(canvas) > 127


def texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A (size, size, 3) float fill, one of :data:`TEXTURES` in two random colours."""
    c1, c2 = shapes.random_colour(rng), shapes.random_colour(rng)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    kind = rng.integers(len(TEXTURES))
    theta = rng.uniform(0, 2 * math.pi)
    along = xx * math.cos(theta) + yy * math.sin(theta)
    if kind == 0:  # a linear gradient
        t = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
    elif kind == 1:  # smooth waves
        t = 0.5 + 0.5 * np.sin(along / rng.uniform(1.5, 4.0))
    elif kind == 2:  # dots on a ground
        period = rng.uniform(4, 8)
        t = (np.mod(xx, period) - period / 2) ** 2 + (np.mod(yy, period) - period / 2) ** 2 < (period / 3.5) ** 2
        t = t.astype(np.float32)
    else:  # coarse blocks of either colour
        cells = int(rng.integers(3, 7))
        grid = rng.random((cells, cells)) < 0.5
        t = np.kron(grid, np.ones((size // cells + 1, size // cells + 1)))[:size, :size].astype(np.float32)
    return c1 * (1 - t[..., None]) + c2 * t[..., None]


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour blotches (a coarse random field, upsampled) with mild noise and a few
    arcs: unlike the detection data's gradient with lines and blobs."""
    cells = int(rng.integers(2, 5))
    field = rng.integers(0, 256, size=(cells, cells, 3)).astype(np.uint8)
    img = np.asarray(Image.fromarray(field).resize((size, size), Image.BICUBIC)).astype(np.float32)
    img += rng.normal(0, 6, size=img.shape)
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(0, 3)):
        x, y, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(size / 8, size / 3)
        start = rng.uniform(0, 360)
        colour = tuple(int(c) for c in shapes.random_colour(rng))
        draw.arc([x - r, y - r, x + r, y + r], start, start + rng.uniform(60, 180), fill=colour, width=1)
    return np.asarray(canvas).astype(np.float32)
