"""BM25 full-text search fused with the dense text vector, on the real milvus-lite server."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

from lookalike.catalog import Product
from lookalike.config import Settings
from lookalike.store import Filters, MilvusStore, StoredProduct

DIM = 8


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture
def store(settings: Settings) -> Iterator[MilvusStore]:
    s = MilvusStore.from_settings(settings.model_copy(update={"index_type": "FLAT"}),
                                  image_dim=DIM, text_dim=DIM)
    s.ensure_collection()
    yield s
    s.drop()
    s.close()


def item(pid: str, title: str, text: np.ndarray, **attrs: object) -> StoredProduct:
    return StoredProduct(Product(pid, title=title, color="red", images=(f"/{pid}.jpg",),
                                 attributes=dict(attrs)),
                         unit(np.ones((1, DIM))), unit(text), f"h-{pid}", "v")


def test_an_exact_word_lifts_a_product_the_vector_ranks_low(store: MilvusStore) -> None:
    rng = np.random.default_rng(3)
    q = unit(rng.normal(size=DIM))
    items = [item(f"p{i}", f"plain product {i}", q + 0.2 * rng.normal(size=DIM)) for i in range(20)]
    items.append(item("acme", "linen shirt", -q, brand="Zorblax", sku="ZX-4411"))
    store.upsert(items)
    assert store.lexical
    dense = store.search(text_vector=q, top_k=5)
    assert "acme" not in [h.product.product_id for h in dense]
    for words in ("zorblax shirt", "ZX-4411"):
        hits = store.search(text_vector=q, top_k=5, lexical_query=words)
        top = hits[[h.product.product_id for h in hits].index("acme")]
        # Fused in the store (one request): only the fused score comes back, 0..1.
        assert set(top.scores) == {"rrf"} and top.scores["rrf"] == top.score
        assert 0 < top.score <= 1
    # Filters apply to the lexical side too.
    assert store.search(text_vector=q, top_k=5, lexical_query="zorblax",
                        filters=Filters(colors=("blue",))) == []


def test_a_collection_without_the_bm25_fields_searches_dense_only(settings: Settings) -> None:
    client = MilvusClient(uri=settings.resolved_milvus_uri, token=settings.resolved_milvus_token())
    name = settings.collection + "_old"
    schema = MilvusClient.create_schema(auto_id=False)
    for f, t, kw in (("pk", DataType.VARCHAR, {"is_primary": True, "max_length": 160}),
                     ("product_id", DataType.VARCHAR, {"max_length": 512}),
                     ("image_index", DataType.INT64, {}), ("title", DataType.VARCHAR, {"max_length": 512}),
                     ("description", DataType.VARCHAR, {"max_length": 512}),
                     ("category", DataType.VARCHAR, {"max_length": 512}),
                     ("color", DataType.VARCHAR, {"max_length": 512}),
                     ("size", DataType.VARCHAR, {"max_length": 512}), ("price", DataType.FLOAT, {}),
                     ("images", DataType.JSON, {}), ("attributes", DataType.JSON, {}),
                     ("content_hash", DataType.VARCHAR, {"max_length": 64}),
                     ("model_version", DataType.VARCHAR, {"max_length": 512}),
                     ("write_version", DataType.INT64, {}),
                     ("source", DataType.VARCHAR, {"max_length": 512}),
                     ("image_vector", DataType.FLOAT_VECTOR, {"dim": DIM}),
                     ("text_vector", DataType.FLOAT_VECTOR, {"dim": DIM})):
        schema.add_field(f, t, **kw)
    index = client.prepare_index_params()
    for f in ("image_vector", "text_vector"):
        index.add_index(field_name=f, index_type="FLAT", metric_type="COSINE")
    client.create_collection(name, schema=schema, index_params=index)
    try:
        old = MilvusStore.from_settings(settings.model_copy(update={"collection": name, "index_type": "FLAT"}),
                                        image_dim=DIM, text_dim=DIM)
        old.ensure_collection()
        assert not old.lexical
        old.upsert([item("a", "zorblax shirt", np.ones(DIM))])
        hits = old.search(text_vector=unit(np.ones(DIM)), top_k=3, lexical_query="zorblax")
        assert [h.product.product_id for h in hits] == ["a"] and "lexical" not in hits[0].scores
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)  # the plain cosine
    finally:
        client.drop_collection(name)

