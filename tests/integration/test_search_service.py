"""SearchService writes against a real milvus-lite server with the packaged embedders
in-process: uploaded media follows the stored products, and facets stay current."""

from __future__ import annotations

import asyncio
import io
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.catalog import Product
from lookalike.embedding import ImageEmbedder, TextEmbedder
from lookalike.search import MediaUnavailable, SearchQuery, SearchService
from lookalike.store import MilvusStore, StoredProduct
from lookalike.store.base import StoreError
from tests.integration.services import make_service


@pytest.fixture
def service(store: MilvusStore, embedders: tuple[ImageEmbedder, TextEmbedder],
            tmp_path: Path) -> SearchService:
    return make_service(store, embedders, tmp_path / "media")


def photo(rgb: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), rgb).save(buf, "PNG")
    return buf.getvalue()


RED, GREEN, BLUE = photo((200, 0, 0)), photo((0, 200, 0)), photo((0, 0, 200))


def media_files(service: SearchService) -> set[str]:
    return {p.name for p in service.media_dir.glob("*.png")}


def name(service: SearchService, data: bytes) -> str:
    return service.media.ref_for(data).removeprefix("media:")


def test_replaced_and_deleted_products_lose_media_no_one_else_lists(service: SearchService) -> None:
    red, green, blue = (name(service, d) for d in (RED, GREEN, BLUE))
    asyncio.run(service.upsert(Product("a", title="red and green"), [RED, GREEN]))
    asyncio.run(service.upsert(Product("b", title="red too"), [RED]))
    assert media_files(service) == {red, green}
    # a now shows blue only: green goes, red stays (b lists it).
    asyncio.run(service.upsert(Product("a", title="blue"), [BLUE]))
    assert media_files(service) == {red, blue}
    asyncio.run(service.delete("b"))
    assert media_files(service) == {blue}
    asyncio.run(service.upsert(Product("a", title="blue again"), [BLUE]))  # unchanged image
    assert media_files(service) == {blue}
    asyncio.run(service.delete("a"))
    assert media_files(service) == set()


def test_deleting_a_catalogue_product_keeps_its_images(service: SearchService, store: MilvusStore,
                                                       tmp_path: Path) -> None:
    image = tmp_path / "catalogue" / "img.png"
    image.parent.mkdir()
    image.write_bytes(RED)
    vectors = np.ones((1, store.image_dim), np.float32), np.ones(store.text_dim, np.float32)
    store.upsert([StoredProduct(Product("cat-1", images=(str(image),)), *vectors)])
    asyncio.run(service.delete("cat-1"))
    assert image.read_bytes() == RED and not store.get(["cat-1"])


def test_a_failed_store_write_leaves_no_files(service: SearchService, store: MilvusStore) -> None:
    too_long = Product("big", title="x" * 20_000)  # over the VARCHAR limit: Milvus refuses it
    with pytest.raises(StoreError):
        asyncio.run(service.upsert(too_long, [RED, GREEN]))
    assert not store.get(["big"])
    assert media_files(service) == set()


def break_media_dir(service: SearchService) -> None:
    """A real failure of the media write: its directory replaced by a plain file."""
    shutil.rmtree(service.media_dir, ignore_errors=True)
    service.media_dir.write_bytes(b"")


def test_a_failed_media_write_stores_nothing_new(service: SearchService,
                                                 store: MilvusStore) -> None:
    break_media_dir(service)
    with pytest.raises(MediaUnavailable):
        asyncio.run(service.upsert(Product("new", title="red"), [RED]))
    assert not store.get(["new"])


def test_a_failed_media_write_leaves_the_old_version(service: SearchService,
                                                     store: MilvusStore) -> None:
    asyncio.run(service.upsert(Product("p", title="red dress"), [RED]))
    before = store.get(["p"])["p"]
    break_media_dir(service)
    with pytest.raises(MediaUnavailable):
        asyncio.run(service.upsert(Product("p", title="blue coat"), [BLUE, GREEN]))
    after = store.get(["p"], with_vectors=True)["p"]
    assert after.intact and after.product == before.product
    assert after.product.title == "red dress" and after.content_hash == before.content_hash
    assert len(after.image_vectors) == 1


class ScanCountingStore:
    """The real store, counting its facet scans; `hold` keeps a scan waiting inside it."""

    def __init__(self, store: MilvusStore) -> None:
        self.store, self.scans = store, 0
        self.hold, self.entered = threading.Event(), threading.Event()
        self.release = threading.Event()
        self.finished, self._done = 0, threading.Condition()

    def facets(self) -> dict:
        with self._done:
            self.scans += 1
        if self.hold.is_set():
            self.entered.set()
            assert self.release.wait(60)
        out = self.store.facets()
        with self._done:
            self.finished += 1
            self._done.notify_all()
        return out

    def scanned(self, n: int, *, timeout_s: float) -> bool:
        """Until `n` scans have finished."""
        with self._done:
            return self._done.wait_for(lambda: self.finished >= n, timeout_s)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


def test_facets_follow_puts_and_deletes_without_a_scan_per_call(
        store: MilvusStore, embedders: tuple[ImageEmbedder, TextEmbedder], tmp_path: Path) -> None:
    counting = ScanCountingStore(store)
    # A period far beyond the test: only this service's writes can change the facets.
    service = make_service(counting, embedders, tmp_path / "media", facets_ttl_s=3600)
    asyncio.run(service.upsert(Product("a", category="dress", color="red", price=10.0), [RED]))
    first = asyncio.run(service.facets())
    assert first["color"] == {"red": 1} and first["price"] == {"min": 10.0, "max": 10.0}
    for _ in range(5):
        assert asyncio.run(service.facets()) == first
    assert counting.scans == 1

    # Counts and a wider price range follow a write at once, without a scan.
    asyncio.run(service.upsert(Product("b", category="coat", color="teal", price=99.5), [GREEN]))
    after_put = asyncio.run(service.facets())
    assert after_put["color"] == {"red": 1, "teal": 1}
    assert after_put["category"] == {"dress": 1, "coat": 1}
    assert after_put["price"] == {"min": 10.0, "max": 99.5}
    assert counting.scans == 1

    asyncio.run(service.upsert(Product("a", category="dress", color="blue", price=12.0), [RED]))
    assert asyncio.run(service.facets())["color"] == {"blue": 1, "teal": 1}

    asyncio.run(service.delete("b"))
    assert asyncio.run(service.facets())["color"] == {"blue": 1}
    # The cheapest and the dearest product went: the range may shrink, which only a scan
    # knows; it runs in the background.
    assert service._facets.wait_idle(60)
    after_delete = asyncio.run(service.facets())
    assert after_delete["color"] == {"blue": 1}
    assert after_delete["price"] == {"min": 12.0, "max": 12.0}
    assert 2 <= counting.scans <= 3  # one per write that shrank the range, at most


def test_a_search_never_waits_for_a_facets_scan(
        store: MilvusStore, embedders: tuple[ImageEmbedder, TextEmbedder], tmp_path: Path) -> None:
    counting = ScanCountingStore(store)
    service = make_service(counting, embedders, tmp_path / "media", facets_ttl_s=3600)
    asyncio.run(service.upsert(Product("a", title="red summer dress", category="dress",
                                       color="red", price=10.0), [RED]))
    assert asyncio.run(service.facets())["color"] == {"red": 1}  # the first scan, at start
    counting.hold.set()
    try:
        asyncio.run(service.delete("a"))  # its price was the range's: a rescan starts...
        assert counting.entered.wait(60)  # ...and is held inside the store
        asyncio.run(service.upsert(Product("b", title="green dress", category="dress",
                                           color="green", price=20.0), [GREEN]))
        out = asyncio.run(service.search(SearchQuery(text="green dress", top_k=3)))
        assert [h.product.product_id for h in out.hits] == ["b"]
        assert asyncio.run(service.facets())["color"] == {"green": 1}
    finally:
        counting.release.set()
        service.close()


def test_writes_that_bypass_the_service_show_after_the_period(
        store: MilvusStore, embedders: tuple[ImageEmbedder, TextEmbedder], tmp_path: Path) -> None:
    # Another router replica or the ingest job writes straight to the store.
    counting = ScanCountingStore(store)
    service = make_service(counting, embedders, tmp_path / "media", facets_ttl_s=0.2)
    try:
        assert asyncio.run(service.facets())["color"] == {}
        vectors = np.ones((1, store.image_dim), np.float32), np.ones(store.text_dim, np.float32)
        store.upsert([StoredProduct(Product("x", color="ochre", images=("/x.png",)), *vectors)])
        # The scan running now may predate the write; the next one does not, and the one
        # after it starts once that one's result is the snapshot.
        done = counting.finished
        for _ in range(3):
            done += 1
            assert counting.scanned(done, timeout_s=60)
        assert asyncio.run(service.facets())["color"] == {"ochre": 1}
    finally:
        service.close()


def test_a_repeated_text_query_skips_the_embedder_and_ranks_the_same(
        store: MilvusStore, embedders: tuple[ImageEmbedder, TextEmbedder], tmp_path: Path) -> None:
    ie, te = embedders
    asked: list[str] = []

    async def embed_text(text: str) -> np.ndarray:
        asked.append(text)
        return te.embed([text])[0]

    async def embed_image(img: Image.Image) -> np.ndarray:
        return ie.embed([img])[0]

    def service(size: int) -> SearchService:
        return SearchService(store=store, embed_image=embed_image, embed_text=embed_text,
                             media_dir=tmp_path / "media", query_vector_cache_size=size)

    cached = service(16)
    for pid, title, colour, data in (("a", "red summer dress", "red", RED),
                                     ("b", "green wool coat", "green", GREEN),
                                     ("c", "blue denim jacket", "blue", BLUE)):
        asyncio.run(cached.upsert(Product(pid, title=title, color=colour), [data]))
    asked.clear()

    def ids(svc: SearchService, text: str) -> list[tuple[str, float]]:
        got = asyncio.run(svc.search(SearchQuery(text=text, top_k=3)))
        return [(h.product.product_id, round(h.score, 6)) for h in got.hits]

    first = ids(cached, "warm coat")
    assert ids(cached, "warm coat") == first and asked == ["warm coat"]
    assert ids(cached, "summer dress")[0][0] == "a" and len(asked) == 2
    # The same ranking as a service that embeds every query.
    assert ids(service(0), "warm coat") == first and first[0][0] == "b"
    assert len(asked) == 3


def test_search_pages_concatenate(service: SearchService, store: MilvusStore) -> None:
    """Pages of a text search (inferred category and colour boosting, variant groups, MMR)
    follow each other: no duplicate and no gap, the same results as one larger page."""
    rng = np.random.default_rng(29)
    items = []
    for i in range(42):
        category, colour = ("dress", "coat", "bag")[i % 3], ("red", "blue")[i % 2]
        image = rng.normal(size=(1, store.image_dim)).astype(np.float32)
        text = rng.normal(size=store.text_dim).astype(np.float32)
        items.append(StoredProduct(
            Product(f"p{i}", title=f"{colour} {category} {i}", category=category, color=colour,
                    images=(f"/p{i}.png",)),
            image / np.linalg.norm(image), text / np.linalg.norm(text),
            group_id=f"~g{i // 4}" if i % 2 == 0 else ""))  # pairs: p0 p2, p4 p6, ...
    store.upsert(items)

    def page(**kw: object):
        return asyncio.run(service.search(SearchQuery(text="red dress", **kw)))

    for options in ({}, {"infer": "off"}, {"collapse_variants": False}, {"diversity": 0.5}):
        whole = [h.product.product_id for h in page(top_k=20, **options).hits]
        shown, offset = [], 0
        while offset is not None and offset < 20:
            got = page(top_k=5, offset=offset, **options)
            shown += [h.product.product_id for h in got.hits]
            offset = got.next_offset
        assert len(whole) == 20 and shown == whole, options
    # Walked to the end (42 products fit in one candidate pool): every product once.
    shown, offset = [], 0
    while offset is not None:
        got = page(top_k=8, offset=offset, collapse_variants=False)
        shown += [h.product.product_id for h in got.hits]
        offset = got.next_offset
    assert sorted(shown) == sorted(f"p{i}" for i in range(42))
