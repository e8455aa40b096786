"""Store round trips per request (issue 29): the gRPC calls one SearchService request makes to a
real milvus-lite server, counted by a client interceptor (lookalike/store/call_count.py).

Counts are deterministic for a given catalogue and query, so they are asserted exactly: a
change that adds a round trip to the search path fails here and says which call it added.
The facets scan runs off the search path (a background rescan, its period set long here) and
is counted on its own.
"""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from lookalike.catalog import demo, load_manifest
from lookalike.config import Settings
from lookalike.embedding import ImageEmbedder, TextEmbedder
from lookalike.indexing import embed_products
from lookalike.search import SearchOutcome, SearchQuery, SearchService
from lookalike.store import Filters, MilvusStore, StoredProduct
from lookalike.store.call_count import count_calls
from tests.integration.services import make_service

N = 60
GROUPED = 3  # the first products share one explicit variant group


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory,
          embedders: tuple[ImageEmbedder, TextEmbedder]) -> list[StoredProduct]:
    products, errors = load_manifest(demo.build(tmp_path_factory.mktemp("cat"), N))
    assert not errors
    products = [replace(p, attributes={**p.attributes, "group_id": "g0"}) if n < GROUPED else p
                for n, p in enumerate(products)]
    return embed_products(products, image_embedder=embedders[0], text_embedder=embedders[1])


@pytest.fixture
def service(settings: Settings, embedders: tuple[ImageEmbedder, TextEmbedder],
            items: list[StoredProduct], tmp_path: Path) -> Iterator[SearchService]:
    ie, te = embedders
    store = MilvusStore.from_settings(settings, image_dim=ie.dim, text_dim=te.dim)
    store.ensure_collection()
    store.upsert(items)
    svc = make_service(store, embedders, tmp_path / "media", facets_ttl_s=3600)
    asyncio.run(svc.facets())  # the first scan; counted on its own below
    yield svc
    svc._facets.close()
    store.drop()
    store.close()


def counted(service: SearchService,
            request: Callable[[], Awaitable[SearchOutcome]]) -> tuple[SearchOutcome, Counter[str]]:
    with count_calls(service.store) as calls:
        outcome = asyncio.run(request())
    return outcome, Counter(calls)


def photo_of(item: StoredProduct) -> Image.Image:
    return Image.open(io.BytesIO(Path(item.product.images[0]).read_bytes())).convert("RGB")


def query(kind: str, items: list[StoredProduct], infer: str) -> SearchQuery:
    text = "red dress" if infer != "off" else "dress"
    if kind == "text":
        return SearchQuery(text=text, top_k=5, infer=infer)
    if kind == "photo":
        return SearchQuery(image=photo_of(items[0]), top_k=5, infer=infer)
    return SearchQuery(text=text, image=photo_of(items[0]), top_k=5, infer=infer)


# Issue 29's targets per request: text <= 2, photo <= 2, hybrid <= 3, similar <= 2. Today's
# counts: one request per candidate set (text: the dense and BM25 searches fused in the store,
# one HybridSearch; photo: one grouped search; hybrid: one per modality, plus one HybridSearch
# for the missing scores when the two lists differ, not in this catalogue), plus one read per
# page (fields come with the searches; the read checks the page's versions and finds its
# variants). With inferred attributes too: this catalogue is smaller than the pool, so the
# full matches are in the pool already and need no search of their own
# (retrieval.pool_suffices; the next test counts the search where they do).
EXPECTED = {
    "text": {"HybridSearch": 1, "Query": 1},
    "photo": {"Search": 1, "Query": 1},
    "hybrid": {"Search": 2, "Query": 1},
}


@pytest.mark.parametrize("kind", list(EXPECTED))
@pytest.mark.parametrize("infer", ["off", "boost"])
def test_a_search_makes_its_counted_store_calls(
        service: SearchService, items: list[StoredProduct], kind: str, infer: str) -> None:
    got, calls = counted(service, lambda: service.search(query(kind, items, infer)))
    assert got.hits
    if infer != "off":
        assert got.inferred.attributes(), "the query should infer an attribute"
    assert calls == EXPECTED[kind]


# The full-match search, per kind: one more candidate set of the kind's own.
FULL_MATCH_SEARCH = {"text": {"HybridSearch": 1}, "photo": {"Search": 1},
                     "hybrid": {"Search": 2}}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_a_pool_short_of_full_matches_adds_their_search(
        service: SearchService, items: list[StoredProduct], kind: str) -> None:
    """A catalogue larger than the pool (two more copies of each product, under new ids) and a
    page of 50, more than the pool's full matches: the full matches are searched for."""
    service.store.upsert([replace(it, product=replace(it.product, product_id=f"{copy}-{pid}"))
                          for copy in ("b", "c") for it in items
                          for pid in [it.product.product_id]])
    got, calls = counted(service, lambda: service.search(
        replace(query(kind, items, "boost"), top_k=50)))
    asked = got.inferred.attributes()
    full = sum(len(got.inferred.matching(h.product)) == len(asked) for h in got.hits)
    assert asked and full < 50 + 1
    assert calls == Counter(EXPECTED[kind]) + Counter(FULL_MATCH_SEARCH[kind])


def test_a_shown_hit_is_the_newest_version_and_its_group_is_read_with_it(
        service: SearchService, items: list[StoredProduct], settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Fields come with the search, so the page read checks versions: a write interrupted
    before it retired the old version (another process) is found, finished and searched again."""
    store = service.store
    assert isinstance(store, MilvusStore)
    other = MilvusStore.from_settings(settings, image_dim=store.image_dim,
                                      text_dim=store.text_dim)
    monkeypatch.setattr(other, "_retire_older", lambda pids, version: 0)
    old = items[0]
    # The new version looks like another product: the old rows match the query photo best.
    other.upsert([replace(items[7], product=replace(old.product, title="rewritten"))])
    other.close()
    assert store.get([old.product.product_id])[old.product.product_id].versions == 2
    pid = old.product.product_id
    got = asyncio.run(service.search(SearchQuery(image=photo_of(old), top_k=5, infer="off")))
    assert got.hits
    assert not [h for h in got.hits if h.product.product_id == pid and h.product.title != "rewritten"]
    assert store.get([pid])[pid].intact  # the interrupted write was finished
    # A member of the explicit group, found by its own photo, lists the others.
    got = asyncio.run(service.search(SearchQuery(image=photo_of(items[1]), top_k=5, infer="off")))
    first = got.hits[0].product.product_id
    assert first == items[1].product.product_id
    assert {p.product_id for p in got.variants[first]} == \
        {it.product.product_id for it in items[:GROUPED]} - {first}


def test_similar_makes_its_counted_store_calls(service: SearchService,
                                               items: list[StoredProduct]) -> None:
    got, calls = counted(service, lambda: service.similar(items[5].product.product_id, top_k=5,
                                                          filters=Filters()))
    assert got.hits
    # get, one search per modality, the page read (versions and variants). Target: 2
    assert calls == {"Search": 2, "Query": 2}


def test_facets_are_scanned_off_the_search_path(service: SearchService) -> None:
    with count_calls(service.store) as scan:
        service._facets.refresh()  # the background rescan (lookalike/facets.py), waited for
    _, read = counted(service, service.facets)
    assert sum(scan.values()) >= 1 and not read
