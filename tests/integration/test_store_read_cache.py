"""The store's read cache (lookalike/store/read_cache.py) on a real milvus-lite server: fewer
reads, and what another client's writes look like through it."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from lookalike.store import MilvusStore, StoredProduct
from tests.integration.test_store import IMG, TXT, make_items

TTL = 1.0


@pytest.fixture
def pair(store_factory) -> tuple[MilvusStore, MilvusStore]:
    """A cached store (the router's) and another client of the same collection (a writer)."""
    cached = store_factory(IMG, TXT, read_cache_ttl_s=TTL)
    other = MilvusStore.from_settings(cached.settings.model_copy(update={"read_cache_ttl_s": 0}),
                                      image_dim=IMG, text_dim=TXT)
    return cached, other


def count_queries(store: MilvusStore) -> list[str]:
    """The scalar queries a store sends (its real client, counted)."""
    sent: list[str] = []
    query = store.client.query

    def counted(*args, **kwargs):
        sent.append(kwargs.get("filter", ""))
        return query(*args, **kwargs)

    store.client.query = counted
    return sent


def retitled(item: StoredProduct, title: str) -> StoredProduct:
    return replace(item, product=replace(item.product, title=title))


def test_a_repeated_search_reads_no_rows_and_returns_the_same(pair) -> None:
    cached, _ = pair
    items = make_items(20)
    cached.upsert(items)
    sent = count_queries(cached)
    first = cached.search(image_vector=items[3].image_vectors[0], top_k=5)
    reads = len(sent)
    assert reads >= 1  # the winners' fields
    again = cached.search(image_vector=items[3].image_vectors[0], top_k=5)
    assert len(sent) == reads  # all five winners came from the cache
    assert [(h.product, h.score, h.image_index) for h in again] == \
        [(h.product, h.score, h.image_index) for h in first]


def test_another_clients_rewrite_shows_at_once(pair) -> None:
    cached, other = pair
    items = make_items(10)
    cached.upsert(items)
    cached.search(image_vector=items[2].image_vectors[0], top_k=3)  # p2 cached
    other.upsert([retitled(items[2], "rewritten")])  # new version, the old one retired
    hit = cached.search(image_vector=items[2].image_vectors[0], top_k=3)[0]
    assert hit.product.product_id == "p2" and hit.product.title == "rewritten"


def test_a_write_in_progress_elsewhere_shows_one_whole_version_then_the_newest(
        pair, monkeypatch) -> None:
    cached, other = pair
    items = make_items(10)
    cached.upsert(items)
    assert cached.search(image_vector=items[2].image_vectors[0], top_k=3)[0].product.title == "title 2"
    # The other client's write stops before it retires the old version (in flight, or killed).
    monkeypatch.setattr(other, "_retire_older", lambda pids, version: 0)
    other.upsert([retitled(items[2], "newer")])
    hit = next(h for h in cached.search(image_vector=items[2].image_vectors[0], top_k=5)
               if h.product.product_id == "p2")
    # Within the TTL: the cached version, whole (its fields with its own photo's match) ...
    assert hit.product.title in ("title 2", "newer")
    assert hit.image_index < len(hit.product.images)
    time.sleep(TTL + 0.2)
    # ... after it, the newest version, and the search finished the write's cleanup.
    hit = next(h for h in cached.search(image_vector=items[2].image_vectors[0], top_k=5)
               if h.product.product_id == "p2")
    assert hit.product.title == "newer"
    assert cached.get(["p2"])["p2"].intact


def test_own_writes_and_regrouping_show_at_once(pair) -> None:
    cached, _ = pair
    assert cached.variants  # the default schema has the variant fields
    items = make_items(10)
    cached.upsert(items)
    assert cached.group_members(["p1"]) == {"p1": [items[1].product]}
    cached.set_groups({"p1": "g", "p2": "g"})
    assert [p.product_id for p in cached.group_members(["g"])["g"]] == ["p1", "p2"]
    assert cached.group_members(["p1"]) == {}
    cached.upsert([retitled(items[1], "own write")])
    hit = cached.search(image_vector=items[1].image_vectors[0], top_k=1)[0]
    assert hit.product.title == "own write"


def test_a_group_member_deleted_by_another_client_is_gone_at_once(pair) -> None:
    # Another router replica deletes a variant: its group must not list it any more (a cached
    # group cannot know; tests/e2e/test_api.py met it through two router replicas).
    cached, other = pair
    cached.upsert(make_items(6))
    cached.set_groups({"p1": "g", "p2": "g", "p3": "g"})
    assert [p.product_id for p in cached.group_members(["g"])["g"]] == ["p1", "p2", "p3"]
    other.delete(["p2"])
    assert [p.product_id for p in cached.group_members(["g"])["g"]] == ["p1", "p3"]
