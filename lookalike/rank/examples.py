"""Recommend from examples: "more like these, not like those" (pure vector math).

Two strategies, after Qdrant's recommendation API:
- average_vector: one query, average(positives) + (average(positives) - average(negatives)),
  searched like any query (fast: one search; negatives push the query away from them).
- best_score: each candidate scores by its best similarity to a positive; if a negative is
  closer than every positive, by minus that similarity instead, so anything nearer a negative
  sinks below everything nearer a positive (slower: similarities to every example).
Similarity of two products: IMAGE_WEIGHT * best photo-pair cosine + the rest * text cosine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STRATEGIES = ("average_vector", "best_score")
IMAGE_WEIGHT = 0.7


@dataclass(frozen=True)
class Example:
    """A product (or the shopper's photo) as vectors: its photos and, if any, its text."""

    images: np.ndarray  # (n, image_dim), L2-normalised
    text: np.ndarray | None = None


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def average_query(positive: Sequence[Example], negative: Sequence[Example]
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """(image query, text query or None); needs one positive at least."""
    if not positive:
        raise ValueError("give at least one positive example")

    def avg(examples: Sequence[Example], text: bool) -> np.ndarray | None:
        found = [e.text if text else _unit(e.images.mean(axis=0)) for e in examples]
        vs = [v for v in found if v is not None]
        return np.mean(vs, axis=0) if vs else None

    def query(text: bool) -> np.ndarray | None:
        pos, neg = avg(positive, text), avg(negative, text)
        if pos is None:
            return None
        return _unit(pos + (pos - neg) if neg is not None else pos).astype(np.float32)

    image = query(False)
    # Every example has images and there is a positive one: the image query always exists.
    assert image is not None
    return image, query(True)


def similarity(a: Example, b: Example) -> float:
    image = float(np.max(a.images @ b.images.T))
    if a.text is None or b.text is None:
        return image
    return IMAGE_WEIGHT * image + (1 - IMAGE_WEIGHT) * float(a.text @ b.text)


def best_score(candidate: Example, positive: Sequence[Example], negative: Sequence[Example]) -> float:
    pos = max(similarity(candidate, p) for p in positive)
    neg = max((similarity(candidate, n) for n in negative), default=-np.inf)
    return pos if pos >= neg else -neg
