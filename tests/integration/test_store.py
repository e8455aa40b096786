"""MilvusStore against a real milvus-lite server process."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.catalog import Product
from lookalike.config import Settings
from lookalike.ports import free_port
from lookalike.store import Filters, MilvusStore, StoredProduct
from lookalike.store.lite_server import LiteServer

IMG, TXT = 32, 16
COLORS = ["red", "blue", "green"]
CATS = ["dress", "shirt", "bag", "coat"]
SIZES = ["S", "M", "L"]


def unit(rng: np.random.Generator, *shape: int) -> np.ndarray:
    v = rng.normal(size=shape).astype(np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def make_items(n: int, seed: int = 0) -> list[StoredProduct]:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        k = 1 + i % 3
        p = Product(f"p{i}", title=f"title {i}", category=CATS[i % 4], color=COLORS[i % 3],
                    size=SIZES[i % 3 - 1], price=float(i % 50), images=tuple(f"/img/{i}-{j}.jpg" for j in range(k)),
                    attributes={"brand": "b" + str(i % 2)})
        items.append(StoredProduct(p, unit(rng, k, IMG), unit(rng, TXT), f"h{i}", "v"))
    return items


def open_store(settings: Settings) -> MilvusStore:
    store = MilvusStore.from_settings(settings, image_dim=IMG, text_dim=TXT)
    store.ensure_collection()
    return store


@pytest.fixture
def store(store_factory) -> MilvusStore:
    return store_factory(IMG, TXT)


def test_upsert_get_count_and_one_result_per_product(store: MilvusStore) -> None:
    items = make_items(30)
    assert store.upsert(items) == 30
    assert store.count() == 30
    # p2 has three images: searching with its third image finds it once, matched on image 2.
    hits = store.search(image_vector=items[2].image_vectors[2], top_k=10)
    assert hits[0].product.product_id == "p2" and hits[0].image_index == 2
    ids = [h.product.product_id for h in hits]
    assert len(ids) == len(set(ids)) == 10
    rec = store.get(["p2"], with_vectors=True)["p2"]
    assert rec.product.images == items[2].product.images and len(rec.image_vectors) == 3
    assert rec.product.attributes == {"brand": "b0"} and rec.content_hash == "h2"


def test_a_new_collection_has_every_index_and_is_loaded(store: MilvusStore) -> None:
    # The indexes are created without pymilvus' wait (sync=False): they must all be there, and
    # the collection loaded and searchable at once.
    from lookalike.store.schema import build_index_params

    wanted = {p.field_name for p in build_index_params(store.client, store.settings)}
    indexed = {store.client.describe_index(store.collection, name)["field_name"]
               for name in store.client.list_indexes(store.collection)}
    assert len(wanted) == 9 and indexed == wanted
    assert str(store.client.get_load_state(store.collection)["state"]).endswith("Loaded")
    items = make_items(5)
    store.upsert(items)
    assert store.search(image_vector=items[3].image_vectors[0], top_k=1)[0].product.product_id == "p3"


def test_upsert_replaces_and_removes_extra_images(store: MilvusStore) -> None:
    items = make_items(6)
    store.upsert(items)
    old = items[2]  # three images
    new = StoredProduct(Product("p2", title="renamed", color="red", images=("/img/new.jpg",)),
                        old.image_vectors[:1], old.text_vector, "h-new", "v")
    store.upsert([new])
    rec = store.get(["p2"], with_vectors=True)["p2"]
    assert rec.product.title == "renamed" and len(rec.image_vectors) == 1 and rec.content_hash == "h-new"
    assert store.count() == 6
    hit = store.search(image_vector=old.image_vectors[2], top_k=6)
    p2 = [h for h in hit if h.product.product_id == "p2"]
    assert p2 and all(h.image_index == 0 for h in p2)


def test_delete_removes_from_search(store: MilvusStore) -> None:
    items = make_items(10)
    store.upsert(items)
    assert store.delete(["p3", "missing"]) == 1
    assert store.delete(["p3"]) == 0
    assert "p3" not in store.get(["p3"])
    hits = store.search(image_vector=items[3].image_vectors[0], top_k=10)
    assert "p3" not in {h.product.product_id for h in hits}
    assert store.count() == 9


@pytest.mark.parametrize("filters", [
    Filters(categories=("dress",)), Filters(colors=("red", "blue")), Filters(sizes=("M",)),
    Filters(min_price=10, max_price=20), Filters(categories=("bag", "coat"), colors=("green",), max_price=30),
])
def test_filters_are_honoured_by_every_result(store: MilvusStore, filters: Filters) -> None:
    items = make_items(60)
    store.upsert(items)
    rng = np.random.default_rng(5)
    for query in (dict(image_vector=unit(rng, IMG)), dict(text_vector=unit(rng, TXT)),
                  dict(image_vector=unit(rng, IMG), text_vector=unit(rng, TXT))):
        hits = store.search(**query, filters=filters, top_k=20)
        assert hits
        for h in hits:
            p = h.product
            assert not filters.categories or p.category in filters.categories
            assert not filters.colors or p.color in filters.colors
            assert not filters.sizes or p.size in filters.sizes
            assert filters.min_price is None or p.price >= filters.min_price
            assert filters.max_price is None or p.price <= filters.max_price


def test_price_bounds_are_inclusive_to_the_cent(store: MilvusStore) -> None:
    rng = np.random.default_rng(9)
    prices = [40.83, 40.84, 19.99, 20.0]
    store.upsert([StoredProduct(Product(f"c{i}", title="t", price=price, images=("/i.jpg",)),
                                unit(rng, 1, IMG), unit(rng, TXT), "h", "v")
                  for i, price in enumerate(prices)])
    hits = store.search(text_vector=unit(rng, TXT), top_k=10,
                        filters=Filters(min_price=20.0, max_price=40.83))
    assert sorted(h.product.price for h in hits) == [20.0, 40.83]


def test_top10_matches_exact_cosine_search(store: MilvusStore) -> None:
    rng = np.random.default_rng(1)
    n = 2000
    vectors = unit(rng, n, IMG)
    text = unit(rng, n, TXT)
    items = [StoredProduct(Product(f"q{i}", images=("/x.jpg",)), vectors[i:i + 1], text[i]) for i in range(n)]
    store.upsert(items)
    queries = unit(rng, 100, IMG)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    agree = 0
    for q, truth in zip(queries, exact):
        got = [int(h.product.product_id[1:]) for h in store.search(image_vector=q, top_k=10)]
        agree += got == truth.tolist()
    assert agree >= 95, f"only {agree}/100 queries had the exact top-10"


def test_similar_style_exclusion_and_facets(store: MilvusStore) -> None:
    items = make_items(12)
    store.upsert(items)
    hits = store.search(image_vector=items[0].image_vectors[0], top_k=5, exclude_ids=["p0"])
    assert "p0" not in {h.product.product_id for h in hits}
    facets = store.facets()
    assert sum(facets["category"].values()) == 12 and set(facets["color"]) == set(COLORS)
    assert facets["price"] == {"min": 0.0, "max": 11.0}


def test_data_survives_a_server_restart(tmp_path) -> None:
    server = LiteServer(tmp_path, free_port())
    server.ensure_running()
    settings = Settings(data_dir=tmp_path, lite_port=server.port, collection="restart")
    try:
        items = make_items(20)
        store = open_store(settings)
        store.upsert(items)
        store.close()
        server.stop()
        server.ensure_running()
        store = open_store(settings)  # loads the collection again (NotLoad after a restart)
        assert store.count() == 20
        assert store.search(image_vector=items[7].image_vectors[0], top_k=1)[0].product.product_id == "p7"
        store.close()
    finally:
        server.stop()


def test_supervisor_restarts_a_killed_server(tmp_path) -> None:
    server = LiteServer(tmp_path, free_port())
    server.ensure_running()
    settings = Settings(data_dir=tmp_path, lite_port=server.port, collection="crash")
    try:
        store = open_store(settings)
        store.upsert(make_items(5))
        store.flush()
        store.close()
        server.kill_server()
        import time

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                store = open_store(settings)
                assert store.count() == 5
                store.close()
                break
            except Exception:  # noqa: BLE001 - the server is coming back
                time.sleep(0.5)
        else:
            pytest.fail("the supervisor did not bring the server back")
    finally:
        server.stop()


def test_remote_uri_uses_category_partition_key(lite_server: LiteServer) -> None:
    """The same code against a Milvus URI (here the lite server addressed as a remote one)."""
    settings = Settings(data_dir=lite_server.data_dir, milvus_uri=lite_server.uri,
                        milvus_token=lite_server.token(), collection="remote_style")
    store = open_store(settings)
    try:
        fields = {f["name"]: f for f in store.client.describe_collection("remote_style")["fields"]}
        assert fields["category"].get("is_partition_key") is True
        store.upsert(make_items(20))
        hits = store.search(text_vector=make_items(1)[0].text_vector, top_k=10,
                            filters=Filters(categories=("bag",)))
        assert hits and all(h.product.category == "bag" for h in hits)
    finally:
        store.drop()
        store.close()
