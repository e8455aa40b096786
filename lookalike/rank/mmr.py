"""Maximal marginal relevance: a page that is not ten near-identical items.

Each next result maximises (1 - diversity) * relevance - diversity * (its highest similarity
to the results already chosen); relevance is the ranking score scaled to 0..1 over the
candidates, similarity the cosine of the products' stored vectors.

`tiers` (Ordering.tiers: exact match, relax level, limits broken, price distance) are kept:
each next result comes from the best tier that still has candidates, so diversity re-orders
within a tier and never puts a product that breaks an understood limit above one that keeps
it, nor anything above the exact photo match.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from lookalike.store.base import Hit


def mmr(hits: Sequence[Hit], vectors: Mapping[str, np.ndarray], *, top_k: int,
        diversity: float, tiers: Mapping[str, Hashable] | None = None) -> list[Hit]:
    if diversity <= 0 or len(hits) <= 1:
        return list(hits[:top_k])
    scores = np.array([h.score for h in hits], dtype=np.float64)
    spread = scores.max() - scores.min()
    relevance = (scores - scores.min()) / spread if spread > 0 else np.ones_like(scores)
    dim = next(iter(vectors.values())).shape[0] if vectors else 1
    mat = np.stack([vectors.get(h.product.product_id, np.zeros(dim, np.float32)) for h in hits])
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    mat = mat / np.where(norms > 0, norms, 1.0)
    sims = mat @ mat.T
    # `hits` come in ranked order, so their tiers ascend: a tier is a run of positions.
    tier = [tiers.get(h.product.product_id) if tiers else None for h in hits]
    chosen: list[int] = [0]
    left = list(range(1, len(hits)))
    while left and len(chosen) < top_k:
        best = [i for i in left if tier[i] == tier[left[0]]]
        redundancy = sims[np.ix_(best, chosen)].max(axis=1)
        value = (1 - diversity) * relevance[best] - diversity * redundancy
        pick = best[int(np.argmax(value))]
        left.remove(pick)
        chosen.append(pick)
    return [hits[i] for i in chosen]
