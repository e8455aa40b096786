"""Ranking metrics over binary relevance (pure functions).

Precision here divides by min(k, R), R being the number of relevant products in the
catalogue: a query with three matching products can reach 1.0, so a narrow query ("pink dress
size M under 50") measures the ranking, not the catalogue's stock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def precision_at_k(relevant: Sequence[bool], k: int, n_relevant: int) -> float:
    if n_relevant <= 0:
        return 0.0
    return sum(bool(r) for r in relevant[:k]) / min(k, n_relevant)


def recall_at_k(relevant: Sequence[bool], k: int, n_relevant: int) -> float:
    if n_relevant <= 0:
        return 0.0
    return sum(bool(r) for r in relevant[:k]) / n_relevant


def ndcg_at_k(relevant: Sequence[bool], k: int, n_relevant: int) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, r in enumerate(relevant[:k]) if r)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, n_relevant)))
    return dcg / ideal if ideal else 0.0


def tie_aware_recall(found_scores: Sequence[float], exact_scores: Sequence[float], *,
                     eps: float = 1e-5) -> float:
    """ANN recall@k: the share of the k results whose exact score reaches the exact k-th best.

    Plain id overlap is wrong where products tie (the demo has products with the very same
    text, hence the same text vector): any of the tied products is an exact answer.
    `found_scores` are the exact scores of what the approximate search returned."""
    if not exact_scores:
        return 1.0
    kth = min(exact_scores)
    return min(1.0, sum(s >= kth - eps for s in found_scores) / len(exact_scores))


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
