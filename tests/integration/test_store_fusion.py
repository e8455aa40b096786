"""Hybrid fusion is per product, against the real milvus-lite server.

A product has one row per photo and its text vector on every row. These tests pin down that a
product's fused score always combines its best photo's image score with its text score, whatever
row that photo is on, however many of its photos are close, and whatever a filter drops; and
that `similar` queries with every stored photo of the product.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from lookalike.catalog import Product
from lookalike.config import Settings
from lookalike.search import SearchService
from lookalike.store import Filters, MilvusStore, StoredProduct

IMG, TXT = 8, 8
W = 0.6  # image weight


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def fused(image_cos: float, text_cos: float, w: float = W) -> float:
    """What the WeightedRanker gives for COSINE: each modality normalised to (1 + cos) / 2."""
    return w * (1 + image_cos) / 2 + (1 - w) * (1 + text_cos) / 2


@pytest.fixture
def store(settings: Settings) -> MilvusStore:
    # FLAT: exact search, so every expected score below is exact too.
    s = MilvusStore.from_settings(settings.model_copy(update={"index_type": "FLAT"}),
                                  image_dim=IMG, text_dim=TXT)
    s.ensure_collection()
    yield s
    s.drop()
    s.close()


def item(pid: str, photos: np.ndarray, text: np.ndarray, color: str = "red") -> StoredProduct:
    photos = unit(photos)
    return StoredProduct(Product(pid, title=pid, color=color,
                                 images=tuple(f"/img/{pid}-{i}.jpg" for i in range(len(photos)))),
                         photos, unit(text), f"h-{pid}", "v")


def expected(items: list[StoredProduct], q_img: np.ndarray, q_txt: np.ndarray) -> dict[str, float]:
    return {it.product.product_id: fused(float(np.max(it.image_vectors @ q_img)),
                                         float(it.text_vector @ q_txt)) for it in items}


def random_catalogue(rng: np.random.Generator, n: int) -> list[StoredProduct]:
    return [item(f"r{i}", rng.normal(size=(1 + i % 4, IMG)), rng.normal(size=TXT),
                 color=["red", "blue"][i % 2]) for i in range(n)]


def test_best_photo_on_a_later_row_gets_both_scores(store: MilvusStore) -> None:
    rng = np.random.default_rng(1)
    q_img, q_txt = unit(rng.normal(size=IMG)), unit(rng.normal(size=TXT))
    far = -q_img + 0.1 * rng.normal(size=IMG)
    # Photo 2 of 3 is the query photo; the text is close too.
    target = item("target", np.stack([far, far + 0.2, q_img]), q_txt + 0.3 * unit(rng.normal(size=TXT)))
    items = [target, *random_catalogue(rng, 30)]
    store.upsert(items)
    hits = store.search(image_vector=q_img, text_vector=q_txt, image_weight=W, top_k=5)
    want = expected(items, unit(q_img), unit(q_txt))
    assert hits[0].product.product_id == "target" and hits[0].image_index == 2
    for h in hits:
        assert h.score == pytest.approx(want[h.product.product_id], abs=1e-4)


def test_several_close_photos_score_by_the_best_one(store: MilvusStore) -> None:
    rng = np.random.default_rng(2)
    q_img, q_txt = unit(rng.normal(size=IMG)), unit(rng.normal(size=TXT))
    close = np.stack([q_img + s * unit(rng.normal(size=IMG)) for s in (0.5, 0.3, 0.1, 0.4)])
    # The text vector is far from the query text: the image part must carry the max photo.
    many = item("many", close, -q_txt)
    items = [many, *random_catalogue(rng, 20)]
    store.upsert(items)
    hits = {h.product.product_id: h for h in
            store.search(image_vector=q_img, text_vector=q_txt, image_weight=W, top_k=21)}
    want = expected(items, q_img, q_txt)
    assert hits["many"].image_index == 2
    assert hits["many"].score == pytest.approx(want["many"], abs=1e-4)
    assert set(hits) == set(want)  # every product once, none lost to its siblings' rows
    for pid, h in hits.items():
        assert h.score == pytest.approx(want[pid], abs=1e-4)


def test_filters_that_drop_rows_leave_the_fused_scores_exact(store: MilvusStore) -> None:
    rng = np.random.default_rng(3)
    items = random_catalogue(rng, 40)
    store.upsert(items)
    q_img, q_txt = unit(rng.normal(size=IMG)), unit(rng.normal(size=TXT))
    blue = [it for it in items if it.product.color == "blue"]
    hits = store.search(image_vector=q_img, text_vector=q_txt, image_weight=W, top_k=10,
                        filters=Filters(colors=("blue",)), exclude_ids=[blue[0].product.product_id])
    want = expected(blue[1:], q_img, q_txt)
    ranked = sorted(want, key=lambda pid: -want[pid])[:10]
    assert [h.product.product_id for h in hits] == ranked
    for h in hits:
        assert h.product.color == "blue"
        assert h.score == pytest.approx(want[h.product.product_id], abs=1e-4)


def test_single_modality_scores_are_raw_cosine(store: MilvusStore) -> None:
    rng = np.random.default_rng(4)
    items = random_catalogue(rng, 12)
    store.upsert(items)
    q = unit(rng.normal(size=IMG))
    for h in store.search(image_vector=q, top_k=5):
        it = next(i for i in items if i.product.product_id == h.product.product_id)
        assert h.score == pytest.approx(float(np.max(it.image_vectors @ q)), abs=1e-4)


async def _no_embedding(_: object) -> np.ndarray:
    raise AssertionError("similar must use the stored vectors, not re-embed")


def test_similar_queries_with_every_stored_photo(store: MilvusStore, tmp_path) -> None:
    rng = np.random.default_rng(5)
    front, back = unit(rng.normal(size=IMG)), unit(rng.normal(size=IMG))
    text = unit(rng.normal(size=TXT))
    source = item("source", np.stack([front, back]), text)
    # "twin" is a near copy of the source's *second* photo only; "decoy" is somewhat like the
    # first. With only the first photo as the query, the decoy would win.
    twin = item("twin", (back + 0.05 * unit(rng.normal(size=IMG)))[None], text + 0.5 * unit(rng.normal(size=TXT)))
    decoy = item("decoy", (front + 0.9 * unit(rng.normal(size=IMG)))[None], text + 0.5 * unit(rng.normal(size=TXT)))
    items = [source, twin, decoy, *random_catalogue(rng, 20)]
    store.upsert(items)
    service = SearchService(store=store, embed_image=_no_embedding, embed_text=_no_embedding,
                            media_dir=tmp_path)
    outcome = asyncio.run(service.similar("source", top_k=5, filters=Filters()))
    ids = [h.product.product_id for h in outcome.hits]
    assert "source" not in ids
    assert ids[0] == "twin"
    # Each candidate scores by its best pair (photo of the source x photo of the candidate).
    for h in outcome.hits:
        it = next(i for i in items if i.product.product_id == h.product.product_id)
        best = float(np.max(source.image_vectors @ it.image_vectors.T))
        assert h.score == pytest.approx(fused(best, float(it.text_vector @ text), 0.7), abs=1e-4)


def test_a_product_found_only_by_its_text_comes_back_whole(store: MilvusStore) -> None:
    # Its photo is the worst match, so only the text search finds it, and its image cosine is
    # completed from the stored vectors. That completion used to overwrite the product's row
    # (KeyError: 'product_id', a 500 for hybrid searches) whenever such a product ranked.
    rng = np.random.default_rng(7)
    q_img, q_txt = unit(rng.normal(size=IMG)), unit(rng.normal(size=TXT))
    texty = item("texty", np.stack([-q_img]), q_txt)
    store.upsert([texty, *random_catalogue(rng, 60)])
    hits = store.search(image_vector=q_img, text_vector=q_txt, image_weight=0.1, top_k=3)
    assert hits[0].product.product_id == "texty" and hits[0].product.title == "texty"
