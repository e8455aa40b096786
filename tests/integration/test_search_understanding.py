"""Query understanding and attribute ranking through SearchService, on a real milvus-lite
server with a small demo catalogue and the packaged models."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.catalog import demo, load_manifest
from lookalike.catalog.product import Product
from lookalike.config import Settings
from lookalike.embedding import ImageEmbedder, TextEmbedder
from lookalike.indexing import embed_products
from lookalike.search import SearchQuery, SearchService
from lookalike.store import Filters, MilvusStore, StoredProduct
from tests.checks import all_of
from tests.integration.services import make_service

N = 150


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory,
          embedders: tuple[ImageEmbedder, TextEmbedder]) -> list[StoredProduct]:
    products, errors = load_manifest(demo.build(tmp_path_factory.mktemp("cat"), N))
    assert not errors
    return embed_products(products, image_embedder=embedders[0], text_embedder=embedders[1])


@pytest.fixture
def service(settings: Settings, embedders: tuple[ImageEmbedder, TextEmbedder],
            items: list[StoredProduct], tmp_path: Path) -> Iterator[SearchService]:
    ie, te = embedders
    store = MilvusStore.from_settings(settings, image_dim=ie.dim, text_dim=te.dim)
    store.ensure_collection()
    store.upsert(items)
    yield make_service(store, embedders, tmp_path / "media")
    store.drop()
    store.close()


def run(service: SearchService, **kwargs: object):
    return asyncio.run(service.search(SearchQuery(**kwargs)))  # type: ignore[arg-type]


def products(items: list[StoredProduct]) -> list[Product]:
    return [it.product for it in items]


def test_everyday_words_find_the_right_category_and_colour(service: SearchService,
                                                           items: list[StoredProduct]) -> None:
    navy_jumpers = [p for p in products(items) if p.category == "pullover" and p.color == "blue"]
    assert navy_jumpers, "the catalogue needs a blue pullover for this test"
    got = run(service, text="navy jumper", top_k=len(navy_jumpers))
    assert {h.product.product_id for h in got.hits} == {p.product_id for p in navy_jumpers}
    assert got.inferred.categories == ("pullover",) and got.inferred.colors == ("blue",)
    off = run(service, text="navy jumper", top_k=len(navy_jumpers), infer="off")
    assert {h.product.product_id for h in off.hits} != {p.product_id for p in navy_jumpers}


def test_price_and_size_words_constrain_in_filter_mode(service: SearchService,
                                                        items: list[StoredProduct]) -> None:
    got = run(service, text="dress under 60", top_k=5, infer="filter")
    all_of(got.hits, lambda h: h.product.category == "dress" and h.product.price <= 60, "hits")
    assert got.inferred.max_price == 60


def test_relaxation_drops_inferred_attributes_and_says_so(service: SearchService,
                                                           items: list[StoredProduct]) -> None:
    # Size 42 red sandals under 20 do not exist in 150 products; the explicit filter stays.
    got = run(service, text="red sandals size 42 under 20", top_k=5, infer="filter",
              filters=Filters(categories=("sandal",)))
    assert got.relaxed and got.relaxed[0] == "size"
    all_of(got.hits, lambda h: h.product.category == "sandal", "hits")


def test_explicit_filters_win(service: SearchService) -> None:
    got = run(service, text="crimson gown", top_k=5, filters=Filters(colors=("blue",)))
    all_of(got.hits, lambda h: h.product.color == "blue", "hits")
    assert got.inferred.overridden == ("color",) and got.inferred.categories == ("dress",)


def test_a_photo_infers_its_colour_and_category_and_every_hit_explains_itself(
        service: SearchService, items: list[StoredProduct]) -> None:
    inferred_right = inferred = 0
    for it in items[:12]:
        p = it.product
        got = run(service, image=Image.open(p.images[0]), top_k=5)
        assert got.inferred.colors == (p.color,) and "photo" in got.inferred.why["color"]
        if got.inferred.categories:
            inferred += 1
            inferred_right += got.inferred.categories == (p.category,)
            assert "nearest" in got.inferred.why["category"]
        for h in got.hits:
            e = h.explain
            assert set(e["vector"]) == {"image"} and e["matched_image"] == h.image_index
            assert h.score == pytest.approx(e["base_score"] + sum(b["weight"] for b in e["boosts"]),
                                            abs=1e-5)
        assert p.product_id in [h.product.product_id for h in got.hits]  # its own photo matches
    assert inferred >= 4 and inferred_right >= 0.75 * inferred


def mean_pairwise(hits, items: list[StoredProduct]) -> float:
    vec = {it.product.product_id: it.image_vectors[0] for it in items}
    m = np.stack([vec[h.product.product_id] for h in hits])
    sims = m @ m.T
    n = len(hits)
    return float((sims.sum() - n) / (n * (n - 1)))


def test_diversity_makes_a_page_less_alike(service: SearchService, items: list[StoredProduct]) -> None:
    bag = next(it.product for it in items if it.product.category == "bag")
    plain = run(service, image=Image.open(bag.images[0]), top_k=8, infer="off")
    varied = run(service, image=Image.open(bag.images[0]), top_k=8, infer="off", diversity=0.7)
    assert len(varied.hits) == 8 and varied.hits[0].product.product_id == plain.hits[0].product.product_id
    assert mean_pairwise(varied.hits, items) < mean_pairwise(plain.hits, items)


def test_not_like_leaves_products_out(service: SearchService) -> None:
    first = run(service, text="dress", top_k=5).hits
    again = run(service, text="dress", top_k=5, exclude_ids=(first[0].product.product_id,)).hits
    assert first[0].product.product_id not in [h.product.product_id for h in again]
    assert again[0].product.product_id == first[1].product.product_id


def test_a_put_product_searched_by_its_own_photo_is_first_for_every_page_size(
        service: SearchService, items: list[StoredProduct]) -> None:
    """Issue 29: a product PUT with a catalogue photo (here a shirt's) as a t-shirt, with no
    colour of its own, searched by that photo with category=t-shirt. The photo's colour and
    its neighbours' category are inferred; the old ranking searched the inferred filters for
    top_k products and, when they filled the page, never looked further: the exact match was
    missing for small pages and first for large ones."""
    shirt = next(it.product for it in items if it.product.category == "shirt")
    data = Path(shirt.images[0]).read_bytes()
    asyncio.run(service.upsert(Product("put-tee", title="Graphic tee", category="t-shirt"), [data]))
    photo = asyncio.run(service.load_image(data))
    for infer in ("boost", "filter", "off"):
        pages = [run(service, image=photo, top_k=k, infer=infer,
                     filters=Filters(categories=("t-shirt",))) for k in (1, 3, 5, 10)]
        for got in pages:
            assert got.hits[0].product.product_id == "put-tee", (infer, len(got.hits))
            all_of(got.hits, lambda h: h.product.category == "t-shirt", "hits")
        ids = [[h.product.product_id for h in got.hits] for got in pages]
        assert len(ids) == 4 and all(small == ids[-1][:len(small)] for small in ids)  # prefixes


def test_a_price_in_the_words_holds_or_says_it_cannot(service: SearchService,
                                                      items: list[StoredProduct]) -> None:
    """Issue 29: "red dress under 60" showed dresses at 94 and 83 under the understood
    "under 60". The catalogue has red dresses above 60 and products under 60."""
    dresses = [p for p in products(items) if p.category == "dress" and p.color == "red"]
    assert any(p.price > 60 for p in dresses) and any(p.price <= 60 for p in dresses)
    for k in (5, 10, 20):
        got = run(service, text="red dress under 60", top_k=k)
        assert got.inferred.max_price == 60
        all_of(got.hits, lambda h: h.product.price <= 60, "hits")
        assert got.relaxed == [] and got.hits[0].product.category == "dress"
        assert got.full_matches == sum(p.price <= 60 for p in dresses)
    # No bag under 20: said so (none keeps it), and the closest prices come first.
    got = run(service, text="black bag under 20", top_k=5, filters=Filters(categories=("bag",)))
    prices = [h.product.price for h in got.hits]
    assert got.relaxed == ["price"] and got.relaxed_detail == [{"attribute": "price", "kept": 0}]
    assert got.full_matches == 0  # the page says "No black bags under €20 — the closest:"
    assert len(prices) == 5 and prices == sorted(prices) and prices[0] > 20
    assert prices[0] == min(p.price for p in products(items) if p.category == "bag")
