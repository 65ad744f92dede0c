"""Drawing primitives shared by the generated detection data and the pretraining data.

Shapes are outlines (polygons) or discs/rings, filled with a texture (solid, stripes,
checks, noise) over a cluttered background, so a detector has to learn shape rather than
colour. Everything is a pure function of a ``numpy.random.Generator``.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

# Shape kinds. The detection data uses a subset; pretraining classifies all of them.
POLYGON_SIDES = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}
KINDS = ("disc", "square", "triangle", "ring", "cross", "pentagon", "hexagon", "star", "ellipse", "half_disc")


def outline(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]] | None:
    """Vertices of a polygonal shape of circumradius ``r``, or None for round shapes."""
    if kind in POLYGON_SIDES:
        n = POLYGON_SIDES[kind]
        return [
            (cx + r * math.cos(angle + 2 * math.pi * i / n), cy + r * math.sin(angle + 2 * math.pi * i / n))
            for i in range(n)
        ]
    if kind == "star":
        return [
            (
                cx + (r if i % 2 == 0 else 0.45 * r) * math.cos(angle + math.pi * i / 5),
                cy + (r if i % 2 == 0 else 0.45 * r) * math.sin(angle + math.pi * i / 5),
            )
            for i in range(10)
        ]
    if kind == "cross":
        a, b = r, 0.35 * r
        pts = [
            (b, a),
            (b, b),
            (a, b),
            (a, -b),
            (b, -b),
            (b, -a),
            (-b, -a),
            (-b, -b),
            (-a, -b),
            (-a, b),
            (-b, b),
            (-b, a),
        ]
        c, s = math.cos(angle), math.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]
    if kind == "kite":
        # The keypoint task's object (not one the pretraining classifies): an arrowhead
        # whose apex points along ``angle``; kite_keypoints names its corners.
        return kite_keypoints(cx, cy, r, angle)[:3]
    if kind == "disc":
        # COCO stores round objects as many-sided polygons too.
        return [(cx + r * math.cos(2 * math.pi * i / 24), cy + r * math.sin(2 * math.pi * i / 24)) for i in range(24)]
    return None


# The kite's keypoints, in this order. "left" is the base corner next after the apex
# counterclockwise on screen, like a person's own left: a mirrored image swaps the two
# (trainables/data/keypoints.py's flip_index).
KITE_KEYPOINTS = ("apex", "left_base", "right_base", "centre")


def kite_keypoints(cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """The apex, the left and right base corners and the centre of a kite of radius ``r``."""
    corners = [(r, angle), (0.8 * r, angle - math.radians(140)), (0.8 * r, angle + math.radians(140))]
    return [(cx + d * math.cos(a), cy + d * math.sin(a)) for d, a in corners] + [(cx, cy)]


def shape_mask(kind: str, height: int, width: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """A boolean (height, width) mask of one shape."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    pts = outline(kind, cx, cy, r, angle)
    if pts is not None:
        draw.polygon(pts, fill=255)
    elif kind == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        inner = 0.55 * r
        draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    elif kind == "ellipse":
        pts = [
            (
                cx + r * math.cos(t) * math.cos(angle) - 0.55 * r * math.sin(t) * math.sin(angle),
                cy + r * math.cos(t) * math.sin(angle) + 0.55 * r * math.sin(t) * math.cos(angle),
            )
            for t in np.linspace(0, 2 * math.pi, 32, endpoint=False)
        ]
        draw.polygon(pts, fill=255)
    elif kind == "half_disc":
        draw.pieslice([cx - r, cy - r, cx + r, cy + r], math.degrees(angle), math.degrees(angle) + 180, fill=255)
    else:
        raise ValueError(f"unknown shape kind {kind!r}")
    return np.asarray(canvas) > 127


def random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float32)


TEXTURES = ("solid", "stripes", "checks", "noise")


def texture(rng: np.random.Generator, height: int, width: int, kinds: int = len(TEXTURES)) -> np.ndarray:
    """A (height, width, 3) float texture, one of the first ``kinds`` of TEXTURES."""
    c1 = random_colour(rng)
    kind = rng.integers(kinds)
    if kind == 0:
        return np.broadcast_to(c1, (height, width, 3)).copy()
    c2 = random_colour(rng)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == 1:
        theta, period = rng.uniform(0, math.pi), rng.uniform(3, 8)
        sel = (np.floor((xx * math.cos(theta) + yy * math.sin(theta)) / period) % 2).astype(bool)
    elif kind == 2:
        period = rng.integers(3, 8)
        sel = ((xx // period + yy // period) % 2).astype(bool)
    else:
        sel = rng.random((height, width)) < 0.5
    return np.where(sel[..., None], c1, c2)


def background(rng: np.random.Generator, height: int, width: int, clutter: int = 4) -> np.ndarray:
    """A gradient with noise and a few random lines and blobs that are not objects."""
    c1, c2 = random_colour(rng), random_colour(rng)
    theta = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (xx * math.cos(theta) + yy * math.sin(theta)) / max(height, width)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    img += rng.normal(0, 12, size=img.shape)
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(0, clutter + 1)):
        x0, y0, x1, y1 = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0, width), rng.uniform(0, height)
        colour = tuple(int(c) for c in random_colour(rng))
        if rng.random() < 0.6:
            draw.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(1, 4)))
        else:
            r = rng.uniform(2, 6)
            draw.ellipse([x0 - r, y0 - 0.5 * r, x0 + r, y0 + 0.5 * r], outline=colour)
    return np.asarray(canvas).astype(np.float32)


def composite(img: np.ndarray, mask: np.ndarray, tex: np.ndarray) -> None:
    """Paint ``tex`` into ``img`` where ``mask`` is set."""
    img[mask] = tex[mask]


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(img, 0, 255).astype(np.uint8)
