"""GET /v1/info's data against a real milvus-lite server: the count and the last-ingest record
kept as a collection property."""

from __future__ import annotations

import asyncio

import numpy as np

from lookalike.catalog.product import Product
from lookalike.config import Settings
from lookalike.info import catalogue_info
from lookalike.ingest.record import LAST_INGEST_KEY, load_last_ingest, save_last_ingest
from lookalike.store.base import StoredProduct
from lookalike.store.milvus import MilvusStore

IMAGE_DIM, TEXT_DIM = 8, 4
VERSION = "img:packaged@1|txt:packaged@2"


def make_store(settings: Settings) -> MilvusStore:
    store = MilvusStore.from_settings(settings, image_dim=IMAGE_DIM, text_dim=TEXT_DIM)
    store.ensure_collection()
    return store


def stored(pid: str, rng: np.random.Generator) -> StoredProduct:
    vec = rng.normal(size=(1, IMAGE_DIM)).astype(np.float32)
    text = rng.normal(size=TEXT_DIM).astype(np.float32)
    return StoredProduct(Product(pid, title=pid, images=(f"/x/{pid}.jpg",)),
                         image_vectors=vec / np.linalg.norm(vec),
                         text_vector=text / np.linalg.norm(text))


def info(store: MilvusStore, settings: Settings) -> dict:
    return asyncio.run(catalogue_info(store=store, settings=settings, model_version=VERSION))


def test_an_empty_collection_has_no_products_and_no_ingest(settings: Settings) -> None:
    store = make_store(settings)
    try:
        assert info(store, settings) == {
            "products": 0, "collection": settings.collection,
            "model": {"image": "img", "text": "txt", "version": VERSION}, "last_ingest": None,
            "warnings": []}
    finally:
        store.drop()
        store.close()


def test_the_last_ingest_record_is_read_back_and_replaced(settings: Settings) -> None:
    store = make_store(settings)
    rng = np.random.default_rng(0)
    try:
        store.upsert([stored(f"p{i}", rng) for i in range(3)])
        save_last_ingest(store, {"finished_at": "2026-12-01T20:00:00Z", "written": 3})
        got = info(store, settings)
        assert got["products"] == 3
        assert got["last_ingest"] == {"finished_at": "2026-12-01T20:00:00Z", "written": 3}
        save_last_ingest(store, {"finished_at": "2026-12-01T21:00:00Z", "written": 0})
        # Another client (another router replica) sees the newer record.
        other = make_store(settings)
        assert load_last_ingest(other) == {"finished_at": "2026-12-01T21:00:00Z", "written": 0}
        other.close()
    finally:
        store.drop()
        store.close()


def test_a_garbled_record_reads_as_unknown(settings: Settings) -> None:
    store = make_store(settings)
    try:
        store.set_property(LAST_INGEST_KEY, "{not json")
        assert load_last_ingest(store) is None
    finally:
        store.drop()
        store.close()
