"""MMR (lookalike/rank/mmr.py) against its formula, written out plainly here.

The mutation run (docs/testing.md) found the numbers unchecked: relevance scaling, vector
normalisation, missing vectors and tiers could all change without a failing test, as long as
near-duplicates were still skipped. So each greedy pick is checked against the formula:
(1 - diversity) * relevance - diversity * (highest cosine to the chosen), within its tier.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lookalike.catalog.product import Product
from lookalike.rank.mmr import mmr
from lookalike.store.base import Hit

# A pick may tie its best rival up to float rounding (numpy versus this plain arithmetic).
TIE = 1e-9


def cosine(a: list[float] | None, b: list[float] | None) -> float:
    """A missing or zero vector is similar to nothing."""
    na = math.sqrt(sum(x * x for x in a)) if a else 0.0
    nb = math.sqrt(sum(x * x for x in b)) if b else 0.0
    if not na or not nb:
        return 0.0
    return sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb)


def values(hits: list[Hit], vectors: dict[str, list[float]], chosen: list[int],
           candidates: list[int], diversity: float) -> dict[int, float]:
    scores = [h.score for h in hits]
    lo, hi = min(scores), max(scores)
    vec = [vectors.get(h.product.product_id) for h in hits]
    out = {}
    for i in candidates:
        relevance = (scores[i] - lo) / (hi - lo) if hi > lo else 1.0
        redundancy = max(cosine(vec[i], vec[j]) for j in chosen)
        out[i] = (1 - diversity) * relevance - diversity * redundancy
    return out


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[Hit], dict[str, list[float]], dict[str, int]]:
    n = draw(st.integers(2, 8))
    # few distinct scores: equal scores (no spread) and ties come up often
    scores = draw(st.lists(st.sampled_from([0.1, 0.35, 0.5, 0.8, 0.95]), min_size=n, max_size=n))
    hits = [Hit(Product(f"p{i}"), s) for i, s in enumerate(scores)]
    # unnormalised, some shorter than 1, some zero, some missing: all must count by direction
    component = st.sampled_from([-1.0, -0.3, 0.0, 0.2, 0.5, 2.0])
    vectors = {h.product.product_id: draw(st.lists(component, min_size=3, max_size=3))
               for h in hits if draw(st.integers(0, 4))}
    # tiers ascend along the ranked list (Ordering.tiers)
    steps = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    tiers = {h.product.product_id: sum(steps[: i + 1]) for i, h in enumerate(hits)}
    return hits, vectors, tiers


def case(scores: list[float], vectors: dict[str, list[float]],
         ) -> tuple[list[Hit], dict[str, list[float]], dict[str, int]]:
    hits = [Hit(Product(f"p{i}"), s) for i, s in enumerate(scores)]
    return hits, vectors, {h.product.product_id: 0 for h in hits}


DUPLICATES = {"p0": [1.0, 0.0], "p1": [1.0, 0.0], "p2": [0.0, 1.0]}  # p1 repeats p0


@settings(max_examples=300, deadline=None)
@given(cases(), st.sampled_from([0.2, 0.5, 0.8, 1.0]), st.integers(1, 8), st.booleans())
# Always run, whatever the example budget (the mutation run caps it): equal scores (no spread);
# relevance on the 0..1 scale, where a near-duplicate barely beats a distinct product (0.45); and
# vectors shorter than 1, which count by direction only.
@example(case([0.5, 0.5, 0.5], DUPLICATES), 0.5, 3, False)
@example(case([1.0, 0.9, 0.1], DUPLICATES), 0.45, 3, False)
@example(case([1.0, 0.9, 0.5], {"p0": [0.1, 0.0], "p1": [0.1, 0.0], "p2": [0.0, 0.1]}), 0.5, 3,
         False)
def test_each_pick_maximises_the_mmr_value_within_the_best_tier_left(
        case: tuple[list[Hit], dict[str, list[float]], dict[str, int]], diversity: float,
        top_k: int, tiered: bool) -> None:
    hits, vectors, tiers = case
    arrays = {k: np.asarray(v, np.float32) for k, v in vectors.items()}
    picked = mmr(hits, arrays, top_k=top_k, diversity=diversity, tiers=tiers if tiered else None)
    order = [hits.index(h) for h in picked]
    assert len(order) == min(top_k, len(hits)) and len(set(order)) == len(order)
    assert order[0] == 0  # the best result stays first
    tier_of = [tiers[h.product.product_id] if tiered else 0 for h in hits]
    for step in range(1, len(order)):
        chosen, left = order[:step], [i for i in range(len(hits)) if i not in order[:step]]
        best_tier = min(tier_of[i] for i in left)
        rivals = [i for i in left if tier_of[i] == best_tier]
        assert order[step] in rivals
        value = values(hits, vectors, chosen, rivals, diversity)
        assert value[order[step]] >= max(value.values()) - TIE


def test_no_diversity_keeps_the_ranked_order_even_where_scores_do_not_descend() -> None:
    # tiers put a lower score first (a kept limit over a higher-scored break): diversity 0
    # must not re-sort by score
    hits = [Hit(Product("a"), 0.2), Hit(Product("b"), 0.5), Hit(Product("c"), 0.9)]
    vectors = {h.product.product_id: np.ones(2, np.float32) for h in hits}
    assert mmr(hits, vectors, top_k=3, diversity=0.0) == hits
    assert mmr(hits[:1], vectors, top_k=3, diversity=0.5) == hits[:1]
    assert mmr([], vectors, top_k=3, diversity=0.5) == []


@pytest.mark.parametrize("vectors", [{}, {"b": np.array([0.0, 1.0], np.float32)}])
def test_products_without_a_vector_are_similar_to_nothing(
        vectors: dict[str, np.ndarray]) -> None:
    hits = [Hit(Product("a"), 0.9), Hit(Product("b"), 0.8), Hit(Product("c"), 0.7)]
    # every redundancy is 0, so the order is relevance alone
    assert mmr(hits, vectors, top_k=3, diversity=0.5) == hits
