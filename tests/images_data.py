"""Generated images for the image tests and benchmark: varied pictures (a colour gradient, a
wave texture, discs and boxes, a little noise) drawn for many images at once with numpy, and
planted near-duplicates (resized, re-encoded as JPEG at another quality, brighter)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def pictures(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """``n`` RGB pictures, ``(n, size, size, 3)`` uint8, each different in layout and colour."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, 1.0, size)
    y, x = grid[None, :, None], grid[None, None, :]

    def per_image(*shape):
        return rng.random((n, *shape))[:, None, None] if shape == () else rng.random((n, *shape))

    angle = per_image() * 2 * np.pi
    ramp = np.clip(0.5 + (np.cos(angle) * (x - 0.5) + np.sin(angle) * (y - 0.5)), 0, 1)
    low, high = rng.random((n, 3)) * 255, rng.random((n, 3)) * 255
    image = low[:, None, None, :] + (high - low)[:, None, None, :] * ramp[..., None]
    frequency = 2 + per_image() * 10
    phase = per_image() * 2 * np.pi
    wave = np.sin(frequency * (np.cos(phase) * x + np.sin(phase) * y) * np.pi + phase)
    image += (rng.random((n, 3)) * 60 - 30)[:, None, None, :] * wave[..., None]
    for _ in range(5):
        cx, cy, r = per_image(), per_image(), 0.05 + per_image() * 0.2
        disc = (x - cx) ** 2 + (y - cy) ** 2 < r**2
        image = np.where(disc[..., None], (rng.random((n, 3)) * 255)[:, None, None, :], image)
    for _ in range(4):
        x0, y0 = per_image() * 0.9, per_image() * 0.9
        w, h = 0.05 + per_image() * 0.3, 0.05 + per_image() * 0.3
        box = (x >= x0) & (x < x0 + w) & (y >= y0) & (y < y0 + h)
        image = np.where(box[..., None], (rng.random((n, 3)) * 255)[:, None, None, :], image)
    image += rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def encode(array: np.ndarray, format: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format, **options)
    return out.getvalue()


def near_copy(array: np.ndarray, kind: int, rng: np.random.Generator) -> bytes:
    """A near-duplicate: 0 resized (to 0.6-1.5x), 1 re-encoded as JPEG (quality 50-85),
    2 brighter or darker by 6-12 levels (PNG)."""
    if kind == 0:
        side = int(array.shape[0] * rng.uniform(0.6, 1.5))
        return encode(np.asarray(Image.fromarray(array).resize((side, side), Image.BICUBIC)))
    if kind == 1:
        return encode(array, "JPEG", quality=int(rng.integers(50, 86)))
    shift = int(rng.integers(6, 13)) * (1 if rng.random() < 0.5 else -1)
    return encode(np.clip(array.astype(np.int16) + shift, 0, 255).astype(np.uint8))


def planted(originals: int, copies: int, size: int = 64, seed: int = 0):
    """``(images, origin)``: ``originals`` PNG pictures then ``copies`` near-duplicates of
    randomly chosen ones (a shuffled order); ``origin[i]`` is the picture image ``i`` shows."""
    rng = np.random.default_rng(seed + 1)
    arrays = pictures(originals, size, seed)
    images = [encode(a) for a in arrays]
    origin = list(range(originals))
    for i in range(copies):
        source = int(rng.integers(originals))
        images.append(near_copy(arrays[source], i % 3, rng))
        origin.append(source)
    order = rng.permutation(len(images))
    return [images[i] for i in order], np.asarray(origin)[order]
