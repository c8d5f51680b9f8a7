"""Pixels for the synthetic datasets: textured backgrounds and filled polygons."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw

# Saturated, well separated RGB values; backgrounds stay muted so these read clearly.
PALETTE = {
    "red": (215, 35, 35),
    "green": (40, 170, 60),
    "blue": (40, 80, 225),
    "yellow": (240, 215, 40),
    "purple": (145, 55, 185),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "brown": (130, 80, 35),
    "grey": (140, 140, 140),
    "orange": (240, 140, 30),
    "cyan": (40, 215, 225),
}

TEXTURES = ("noise", "stripes", "checker", "blotches", "gradient")


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    grey = rng.uniform(55, 150)
    return np.clip(grey + rng.normal(0, 12, size=3), 0, 255)


def texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A (size, size, 3) uint8 background of muted colours in one of five textures."""
    kind = TEXTURES[rng.integers(len(TEXTURES))]
    a, b = _muted_colour(rng), _muted_colour(rng)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "noise":
        mix = rng.random((size, size)).astype(np.float32)
    elif kind == "stripes":
        angle, period = rng.uniform(0, math.pi), rng.uniform(5, 14)
        mix = 0.5 + 0.5 * np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
    elif kind == "checker":
        period = int(rng.integers(6, 16))
        mix = ((xx // period + yy // period) % 2).astype(np.float32)
    elif kind == "blotches":
        coarse = rng.random((5, 5)).astype(np.float32)
        mix = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC))
        mix = mix.astype(np.float32) / 255.0
    else:
        angle = rng.uniform(0, 2 * math.pi)
        ramp = xx * math.cos(angle) + yy * math.sin(angle)
        mix = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
    pixels = a * mix[..., None] + b * (1.0 - mix[..., None])
    pixels += rng.normal(0, 6, size=pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def jitter(colour: tuple[int, int, int], rng: np.random.Generator, amount: float = 12.0) -> tuple[int, int, int]:
    """``colour`` moved by a little Gaussian noise per channel."""
    return tuple(int(v) for v in np.clip(np.asarray(colour) + rng.normal(0, amount, 3), 0, 255))


def regular_polygon(cx: float, cy: float, radius: float, sides: int, rotation: float) -> list[tuple[float, float]]:
    return [
        (cx + radius * math.cos(rotation + 2 * math.pi * k / sides), cy + radius * math.sin(rotation + 2 * math.pi * k / sides))
        for k in range(sides)
    ]


def star(cx: float, cy: float, radius: float, rotation: float, points: int = 5) -> list[tuple[float, float]]:
    inner = radius * 0.45
    return [
        (cx + r * math.cos(rotation + math.pi * k / points), cy + r * math.sin(rotation + math.pi * k / points))
        for k, r in enumerate([radius, inner] * points)
    ]


def cross(cx: float, cy: float, radius: float, rotation: float) -> list[tuple[float, float]]:
    """A plus sign whose arms are a third of its width."""
    t = radius / 3
    corners = [
        (t, radius),
        (t, t),
        (radius, t),
        (radius, -t),
        (t, -t),
        (t, -radius),
        (-t, -radius),
        (-t, -t),
        (-radius, -t),
        (-radius, t),
        (-t, t),
        (-t, radius),
    ]
    c, s = math.cos(rotation), math.sin(rotation)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners]


def shape_outline(shape: str, cx: float, cy: float, radius: float, rotation: float) -> list[tuple[float, float]]:
    """The polygon of ``shape``; a circle is a 24-gon, which is also its COCO segmentation."""
    if shape == "circle":
        return regular_polygon(cx, cy, radius, 24, 0.0)
    if shape == "square":
        return regular_polygon(cx, cy, radius * 1.1, 4, math.pi / 4 + rotation)
    if shape == "triangle":
        return regular_polygon(cx, cy, radius * 1.15, 3, -math.pi / 2 + rotation)
    if shape == "star":
        return star(cx, cy, radius * 1.2, -math.pi / 2 + rotation)
    if shape == "cross":
        return cross(cx, cy, radius * 1.1, rotation)
    raise ValueError(f"unknown shape {shape!r}")


def draw_polygon(draw: ImageDraw.ImageDraw, points, fill) -> None:
    draw.polygon([(round(x, 2), round(y, 2)) for x, y in points], fill=fill)


def jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    """Baseline JPEG without metadata, so the same pixels give the same bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=False, progressive=False)
    return buffer.getvalue()
