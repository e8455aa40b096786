"""What a shopper's photo says besides its vector: its dominant colour and likely category.

Colour comes from the pixels: product shots sit on a light, low-saturation background, so
pixels close to the border's colour (or near-white) are dropped and the colour of the most
strongly inked remaining pixels is named after the nearest catalogue shade (vocabulary.py).
Category is a vote of the photo's nearest neighbours in the catalogue (their stored
categories, weighted by similarity): a photo carries no label, its neighbours do.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

THUMB = 64  # pixels a side: enough to find the colour, cheap to scan
BACKGROUND_DISTANCE = 40.0  # RGB distance under which a pixel is background
MIN_FOREGROUND = 0.02  # share of pixels that must be foreground to name a colour
INK_SHARE = 0.02  # the most strongly coloured share of the foreground names the colour
VOTE_SHARE = 0.5  # a category needs this share of the neighbours' weight
VOTE_NEIGHBOURS = 10
SAME_PHOTO = 0.98  # a neighbour this close is the photographed product itself: its category


def _to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (0..255) -> CIE Lab, so "nearest shade" is nearest as the eye sees it."""
    c = rgb / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = c @ np.array([[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192],
                        [0.1805, 0.0722, 0.9505]]) / np.array([0.9505, 1.0, 1.089])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def dominant_rgb(image: Image.Image) -> tuple[int, int, int] | None:
    """The photo's article colour, or None when nothing stands out from the background."""
    px = np.asarray(image.convert("RGB").resize((THUMB, THUMB), Image.Resampling.BILINEAR), dtype=np.float32)
    border = np.concatenate([px[0], px[-1], px[:, 0], px[:, -1]])
    background = np.median(border, axis=0)
    flat = px.reshape(-1, 3)
    distance = np.linalg.norm(flat - background, axis=1)
    near_white = (flat.min(axis=1) > 235)
    fg = (distance > BACKGROUND_DISTANCE) & ~near_white
    if fg.mean() < MIN_FOREGROUND:
        return None
    d = distance[fg]
    strongest = flat[fg][d >= np.quantile(d, 1 - INK_SHARE)]
    return tuple(int(v) for v in np.median(strongest, axis=0))  # type: ignore[return-value]


def nearest_shade(rgb: tuple[int, int, int], shades: Mapping[str, tuple[int, int, int]]) -> str | None:
    if not shades:
        return None
    names = list(shades)
    lab = _to_lab(np.array([shades[n] for n in names], dtype=np.float64))
    q = _to_lab(np.array(rgb, dtype=np.float64))
    return names[int(np.argmin(np.linalg.norm(lab - q, axis=1)))]


def photo_color(image: Image.Image, shades: Mapping[str, tuple[int, int, int]]) -> str | None:
    rgb = dominant_rgb(image)
    return None if rgb is None else nearest_shade(rgb, shades)


def vote_category(neighbours: Sequence[tuple[str, float]], *, share: float = VOTE_SHARE,
                  n: int = VOTE_NEIGHBOURS) -> str | None:
    """The category of the (category, similarity) neighbours holding `share` of their weight."""
    if neighbours and neighbours[0][0] and neighbours[0][1] >= SAME_PHOTO:
        return neighbours[0][0]
    weights: dict[str, float] = defaultdict(float)
    top = [(c, max(s, 0.0)) for c, s in neighbours[:n] if c]
    for category, score in top:
        weights[category] += score
    total = sum(weights.values())
    if not total:
        return None
    best = max(weights, key=lambda c: weights[c])
    return best if weights[best] / total >= share else None
