"""Recommend strategies, MMR and relative constraints (pure logic on small vectors)."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.catalog.product import Product
from lookalike.rank.examples import IMAGE_WEIGHT, Example, average_query, best_score, similarity
from lookalike.rank.mmr import mmr
from lookalike.rank.relative import Relative, relative_filters
from lookalike.store.base import Filters, Hit


def e(*v: float) -> Example:
    x = np.asarray(v, np.float32)
    return Example((x / np.linalg.norm(x))[None, :])


def test_average_query_moves_away_from_the_negatives() -> None:
    image, text = average_query([e(1, 0, 0), e(1, 1, 0)], [e(0, 1, 0)])
    assert text is None and image is not None
    assert image @ np.array([1, 0, 0]) > image @ np.array([0, 1, 0])
    assert float(np.linalg.norm(image)) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        average_query([], [e(1, 0, 0)])


def test_best_score_sinks_what_is_nearer_a_negative() -> None:
    pos, neg = [e(1, 0, 0)], [e(0, 1, 0)]
    near_pos, near_neg = e(1, 0.2, 0), e(0.2, 1, 0)
    assert best_score(near_pos, pos, neg) > 0 > best_score(near_neg, pos, neg)
    assert best_score(near_neg, pos, []) > 0  # without negatives, only closeness counts


def test_similarity_weighs_text_in_only_where_both_have_text() -> None:
    image = np.array([[1.0, 0.0]], np.float32)
    a = Example(image, np.array([1.0, 0.0], np.float32))
    b = Example(image, np.array([0.0, 1.0], np.float32))  # the same photo, unrelated text
    assert similarity(a, b) == pytest.approx(IMAGE_WEIGHT * 1.0 + (1 - IMAGE_WEIGHT) * 0.0)
    assert similarity(a, a) == pytest.approx(1.0)
    c = Example(np.array([[0.6, 0.8]], np.float32), a.text)  # another photo, the same text
    assert similarity(a, c) == pytest.approx(IMAGE_WEIGHT * 0.6 + (1 - IMAGE_WEIGHT) * 1.0)
    assert similarity(a, Example(image)) == similarity(Example(image), b) == pytest.approx(1.0)


def test_best_score_a_tie_between_a_positive_and_a_negative_counts_as_positive() -> None:
    same = e(1, 0, 0)
    assert best_score(same, [same], [same]) == pytest.approx(1.0)


def hit(pid: str, score: float) -> Hit:
    return Hit(Product(pid), score)


def test_mmr_skips_near_duplicates() -> None:
    hits = [hit("a", 0.9), hit("a2", 0.89), hit("b", 0.8)]
    vectors = {"a": np.array([1.0, 0]), "a2": np.array([1.0, 0.01]), "b": np.array([0.0, 1])}
    assert [h.product.product_id for h in mmr(hits, vectors, top_k=2, diversity=0.0)] == ["a", "a2"]
    assert [h.product.product_id for h in mmr(hits, vectors, top_k=2, diversity=0.5)] == ["a", "b"]
    assert len(mmr(hits, vectors, top_k=5, diversity=0.5)) == 3


PRODUCT = Product("p", category="dress", color="red", size="M", price=50.0)
COLOURS = ["red", "blue", "green"]


@pytest.mark.parametrize(("rel", "explicit", "want"), [
    (Relative(cheaper=True), Filters(), Filters(max_price=49.99)),
    (Relative(cheaper=True), Filters(max_price=30.0), Filters(max_price=30.0)),
    (Relative(same_category=True), Filters(), Filters(categories=("dress",))),
    (Relative(other_color=True), Filters(), Filters(colors=("blue", "green"))),
    (Relative(other_color=True), Filters(colors=("red", "blue")), Filters(colors=("blue",))),
    (Relative(size="L"), Filters(), Filters(sizes=("L",))),
    (Relative(same_category=True), Filters(categories=("coat",)), Filters(categories=("\x00none",))),
    (Relative(), Filters(colors=("red",)), Filters(colors=("red",))),
    (Relative(size="L"), Filters(sizes=("L", "M")), Filters(sizes=("L",))),
    (Relative(size="L"), Filters(sizes=("M",)), Filters(sizes=("\x00none",))),
    (Relative(cheaper=True), Filters(min_price=10.0), Filters(min_price=10.0, max_price=49.99)),
])
def test_relative_filters(rel: Relative, explicit: Filters, want: Filters) -> None:
    assert relative_filters(PRODUCT, rel, explicit, colors=COLOURS) == want
