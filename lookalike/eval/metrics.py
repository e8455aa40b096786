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


def overlap_recall(found: Sequence[str], exact: Sequence[str]) -> float:
    """ANN recall: the share of the exact top results the approximate search also returned."""
    if not exact:
        return 1.0
    return len(set(found) & set(exact)) / len(exact)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
