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
from tests.checks import all_of

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
    all_of(hits, lambda h: h.explain["strategy"] == strategy)


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


# -- similar and recommend ranked as search is: variants collapsed, prefixes, pages ----------

ARTICLES, COLOURS = 14, 3


@pytest.fixture
def shelf(settings: Settings) -> Iterator[MilvusStore]:
    """Fourteen articles near one direction, each sold in three colours: a variant group
    ("~art<n>") whose members' vectors lie closer together than any two articles'."""
    s = MilvusStore.from_settings(settings.model_copy(update={"index_type": "FLAT"}),
                                  image_dim=DIM, text_dim=DIM)
    s.ensure_collection()
    rng = np.random.default_rng(11)
    centre = unit(rng.normal(size=DIM))
    items = []
    for n in range(ARTICLES):
        article = unit(centre + 0.5 * rng.normal(size=DIM))
        for c, colour in enumerate(("red", "blue", "black")[:COLOURS]):
            v = unit(article + 0.03 * rng.normal(size=DIM))
            items.append(StoredProduct(Product(f"art{n}-{c}", category="dress", color=colour,
                                               price=10.0 + n, images=(f"/art{n}-{c}.jpg",)),
                                       v[None, :], v, f"h{n}{c}", "v", group_id=f"~art{n}"))
    s.upsert(items)
    yield s
    s.drop()
    s.close()


def article(pid: str) -> str:
    return pid.split("-")[0]


def shelf_service(store: MilvusStore, tmp_path: Path) -> SearchService:
    async def never(_: object) -> np.ndarray:
        raise AssertionError("similar and recommend re-embed nothing here")

    return SearchService(store=store, embed_image=never, embed_text=never, media_dir=tmp_path)


def test_similar_is_one_per_article_never_its_own_and_prefix_stable(shelf: MilvusStore,
                                                                    tmp_path: Path) -> None:
    service = shelf_service(shelf, tmp_path)

    def similar(**kw: object) -> list[str]:
        return ids(asyncio.run(service.similar("art0-0", filters=Filters(), **kw)).hits)

    full = similar(top_k=50)
    assert len(full) == ARTICLES - 1  # every other article once, art0 (its own group) never
    assert sorted(map(article, full)) == sorted(f"art{n}" for n in range(1, ARTICLES))
    for k in (1, 3, 7):
        assert similar(top_k=k) == full[:k]
    out = asyncio.run(service.similar("art0-0", top_k=3, filters=Filters()))
    assert [len(out.variants[pid]) for pid in ids(out.hits)] == [COLOURS - 1] * 3  # listed
    every = similar(top_k=50, collapse_variants=False)
    assert len(every) == (ARTICLES - 1) * COLOURS and "art0" not in map(article, every)


@pytest.mark.parametrize("strategy", ["average_vector", "best_score"])
def test_recommend_is_one_per_article_and_prefix_stable(shelf: MilvusStore, tmp_path: Path,
                                                        strategy: str) -> None:
    service = shelf_service(shelf, tmp_path)

    def recommend(**kw: object) -> list[str]:
        return ids(asyncio.run(service.recommend(
            positive=["art1-0", "art2-1"], negative=["art3-2"], image=None, strategy=strategy,
            filters=Filters(), **kw)).hits)

    full = recommend(top_k=50)
    assert full and len(set(map(article, full))) == len(full)  # one per article
    assert not {"art1-0", "art2-1", "art3-2"} & set(full)
    for k in (1, 4, 9):
        assert recommend(top_k=k) == full[:k]
    out = asyncio.run(service.recommend(positive=["art1-0"], negative=[], image=None,
                                        strategy=strategy, top_k=2, filters=Filters()))
    all_of(out.hits, lambda h: h.explain["strategy"] == strategy, "hits")  # kept through ranking


@pytest.mark.parametrize("collapse", [True, False])
def test_similar_and_recommend_pages_concatenate(shelf: MilvusStore, tmp_path: Path,
                                                 collapse: bool) -> None:
    service = shelf_service(shelf, tmp_path)
    calls = {
        "similar": lambda **kw: service.similar("art5-1", filters=Filters(),
                                                collapse_variants=collapse, **kw),
        "recommend": lambda **kw: service.recommend(
            positive=["art5-1"], negative=[], image=None, strategy="best_score",
            filters=Filters(), collapse_variants=collapse, **kw),
    }
    for name, call in calls.items():
        whole = ids(asyncio.run(call(top_k=100)).hits)
        shown, offset, starts = [], 0, []
        while offset is not None:
            page = asyncio.run(call(top_k=4, offset=offset))
            starts.append(page.offset)
            shown += ids(page.hits)
            offset = page.next_offset
        assert whole and shown == whole, name  # no duplicate, no gap, to the last result
        assert starts == list(range(0, len(whole), 4)), name
