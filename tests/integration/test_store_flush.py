"""The write-flush policy on the real milvus-lite server: rows written through an auto-flushing
store (the router's) leave the write buffer after N rows or T idle seconds; a plain store's
stay there until someone flushes. "Flushed" is read from the server itself: the vector
index's total_rows counts rows in flushed segments only (MilvusStore.flushed_rows)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from lookalike.catalog import Product
from lookalike.config import Settings
from lookalike.store import MilvusStore, StoredProduct

IMG, TXT = 8, 8


def items(start: int, n: int) -> list[StoredProduct]:
    rng = np.random.default_rng(start)
    out = []
    for i in range(start, start + n):
        v = rng.normal(size=(1, IMG)).astype(np.float32)
        t = rng.normal(size=TXT).astype(np.float32)
        out.append(StoredProduct(Product(f"f{i}", title=f"title {i}", images=("/img/x.jpg",)),
                                 v / np.linalg.norm(v), t / np.linalg.norm(t), f"h{i}", "v"))
    return out


def eventually(predicate: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    """Polls (the flush runs on the store's thread); the deadline only bounds a failure."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.fixture
def make_store(settings: Settings) -> Iterator[Callable[..., MilvusStore]]:
    made: list[MilvusStore] = []

    def make(*, auto_flush: bool = True, **overrides: object) -> MilvusStore:
        store = MilvusStore.from_settings(settings.model_copy(update=overrides), image_dim=IMG,
                                          text_dim=TXT, auto_flush=auto_flush)
        store.ensure_collection()
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()
    if made:
        probe = MilvusStore.from_settings(settings, image_dim=IMG, text_dim=TXT)
        probe.drop()
        probe.close()


def test_without_the_policy_api_writes_stay_in_the_write_buffer(make_store) -> None:
    store = make_store(auto_flush=False)
    store.upsert(items(0, 20))
    assert store.count() == 20 and store.flushed_rows() == 0
    assert store.auto_flush is None


def test_flushed_once_enough_rows_are_pending(make_store) -> None:
    store = make_store(write_flush_rows=30, write_flush_idle_s=3600)
    first = items(0, 20)
    store.upsert(first)
    # 20 < 30 rows and an hour's idle limit: the policy has not flushed (nothing else would).
    assert store.flushed_rows() == 0
    store.upsert(items(20, 15))
    assert eventually(lambda: store.flushed_rows() == 35)
    hits = store.search(image_vector=first[7].image_vectors[0], top_k=1)
    assert hits[0].product.product_id == "f7"  # flushed rows are still searched


def test_flushed_after_the_idle_time(make_store) -> None:
    store = make_store(write_flush_rows=10**6, write_flush_idle_s=0.2)
    for start in range(0, 25, 5):  # API-style: many small writes
        store.upsert(items(start, 5))
    assert eventually(lambda: store.flushed_rows() == 25)
    assert eventually(lambda: store.auto_flush.flushes >= 1)


def test_deletes_count_as_writes_and_close_flushes_what_is_pending(make_store,
                                                                    settings: Settings) -> None:
    store = make_store(write_flush_rows=10**6, write_flush_idle_s=3600)
    store.upsert(items(0, 12))
    store.delete(["f0", "f1"])
    assert store.auto_flush.policy.pending == 12 + 2
    assert store.flushed_rows() == 0
    store.close()  # flushes the pending rows before it closes the client
    fresh = MilvusStore.from_settings(settings, image_dim=IMG, text_dim=TXT)
    try:
        assert fresh.flushed_rows() >= 10 and fresh.count() == 10
    finally:
        fresh.close()


def test_the_policy_is_off_when_the_setting_says_so(make_store) -> None:
    store = make_store(write_flush=False)
    assert store.auto_flush is None
