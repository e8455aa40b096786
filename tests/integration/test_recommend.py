"""Recommend from examples and relative "similar" constraints on the real milvus-lite server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lookalike.catalog import Product
from lookalike.config import Settings
from lookalike.rank.relative import Relative
from lookalike.recommend import UnknownProducts, recommend
from lookalike.search import SearchService
from lookalike.store import Filters, MilvusStore, StoredProduct

DIM = 8


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.fixture
def store(settings: Settings) -> Iterator[MilvusStore]:
    s = MilvusStore.from_settings(settings.model_copy(update={"index_type": "FLAT"}),
                                  image_dim=DIM, text_dim=DIM)
    s.ensure_collection()
    rng = np.random.default_rng(5)
    a, b = unit(rng.normal(size=DIM)), unit(rng.normal(size=DIM))
    items = []
    # Two clusters: "a*" near direction a, "b*" near direction b.
    for name, centre, colour in (("a", a, "red"), ("b", b, "blue")):
        for i in range(8):
            v = unit(centre + 0.15 * rng.normal(size=DIM))
            items.append(StoredProduct(Product(f"{name}{i}", category="dress" if i % 2 else "coat",
                                               color=colour if i < 6 else "green",
                                               price=10.0 + 10 * i, images=(f"/{name}{i}.jpg",)),
                                       v[None, :], v, f"h{name}{i}", "v"))
    s.upsert(items)
    yield s
    s.drop()
    s.close()


def ids(hits) -> list[str]:
    return [h.product.product_id for h in hits]


@pytest.mark.parametrize("strategy", ["average_vector", "best_score"])
def test_more_like_these_not_like_those(store: MilvusStore, strategy: str) -> None:
    hits = recommend(store, positive=["a0", "a1"], negative=["b0"], photo=None, strategy=strategy,
                     pool=5, filters=Filters())
    assert len(hits) == 5 and all(p.startswith("a") for p in ids(hits))
    assert not {"a0", "a1", "b0"} & set(ids(hits))  # the examples themselves are not results
    assert all(h.explain["strategy"] == strategy for h in hits)


def test_best_score_sinks_products_nearer_a_negative(store: MilvusStore) -> None:
    away = recommend(store, positive=["a0"], negative=["b1", "b2"], photo=None,
                     strategy="best_score", pool=13, filters=Filters())
    b_scores = [h.score for h in away if h.product.product_id.startswith("b")]
    a_scores = [h.score for h in away if h.product.product_id.startswith("a")]
    # Nearer a negative than any positive: scored minus that similarity, below every "a".
    assert b_scores and max(b_scores) < -0.5 and max(b_scores) < min(a_scores)


def test_recommend_with_filters_and_a_photo_only(store: MilvusStore) -> None:
    rec = store.get(["b3"], with_vectors=True)["b3"]
    hits = recommend(store, positive=[], negative=[], photo=rec.image_vectors[0],
                     strategy="average_vector", pool=3, filters=Filters(categories=("dress",)))
    assert ids(hits)[0] == "b3" and all(h.product.category == "dress" for h in hits)


def test_unknown_examples_are_named(store: MilvusStore) -> None:
    with pytest.raises(UnknownProducts) as err:
        recommend(store, positive=["a0", "nope"], negative=[], photo=None,
                  strategy="average_vector", pool=3, filters=Filters())
    assert err.value.ids == ["nope"]


@pytest.mark.parametrize(("relative", "check"), [
    (Relative(cheaper=True), lambda p: p.price < 30.0),
    (Relative(other_color=True), lambda p: p.color != "red"),
    (Relative(same_category=True), lambda p: p.category == "coat"),
    (Relative(cheaper=True, same_category=True), lambda p: p.price < 30.0 and p.category == "coat"),
])
def test_similar_with_relative_constraints(store: MilvusStore, tmp_path: Path, relative: Relative,
                                           check) -> None:
    async def never(_: object) -> np.ndarray:
        raise AssertionError("similar re-embeds nothing")

    service = SearchService(store=store, embed_image=never, embed_text=never, media_dir=tmp_path)
    out = asyncio.run(service.similar("a2", top_k=20, filters=Filters(), relative=relative))
    assert out.hits and all(check(h.product) for h in out.hits)  # a2: coat, red, price 30
    assert "a2" not in ids(out.hits)
