"""MilvusStore.referenced_images and the facets' price range, against a real milvus-lite server
(json_contains over the JSON `images` field)."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.catalog import Product
from lookalike.store import MilvusStore, StoredProduct
from tests.integration.test_store import IMG, TXT, unit


@pytest.fixture
def store(store_factory) -> MilvusStore:
    return store_factory(IMG, TXT)


def item(pid: str, images: tuple[str, ...], price: float | None = None) -> StoredProduct:
    rng = np.random.default_rng(len(pid))
    return StoredProduct(Product(pid, images=images, price=price), unit(rng, len(images), IMG),
                         unit(rng, TXT))


def test_a_shared_image_stays_referenced_until_its_last_product_goes(store: MilvusStore) -> None:
    shared, odd = "/media/aa.jpg", '/media/quote"and\\backslash.png'
    store.upsert([item("a", (shared, "/media/a2.jpg")), item("b", ("/media/b.jpg", shared, odd))])
    asked = [shared, "/media/a2.jpg", "/media/b.jpg", odd, "/media/nobody.jpg", "/media/aa"]
    assert store.referenced_images(asked) == {shared, "/media/a2.jpg", "/media/b.jpg", odd}
    store.delete(["a"])
    assert store.referenced_images(asked) == {shared, "/media/b.jpg", odd}
    store.upsert([item("b", ("/media/b.jpg",))])  # b drops two of its images
    assert store.referenced_images(asked) == {"/media/b.jpg"}
    assert store.referenced_images([]) == set()


def test_facet_price_range_ignores_products_without_a_price(store: MilvusStore) -> None:
    assert store.facets()["price"] == {}
    store.upsert([item("free", ("/x.jpg",)), item("p1", ("/y.jpg",), 12.5),
                  item("p2", ("/z.jpg",), 3.25)])
    assert store.facets()["price"] == {"min": 3.25, "max": 12.5}
