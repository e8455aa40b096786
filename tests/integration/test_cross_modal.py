"""Cross-modal search with CLIP on real milvus-lite: a text query finds products by their photos.

A tiny random CLIP has no semantics, so the test makes the photo the only thing that tells the
products apart: every product has the same words, and the winner must be the product whose
photo is nearest the query text in CLIP's shared space (computed here in numpy).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.catalog import Product
from lookalike.config import Settings
from lookalike.embedding.clip import ClipImageEmbedder, ClipTextEmbedder
from lookalike.search import SearchQuery, SearchService
from lookalike.store import MilvusStore, StoredProduct
from tests.tiny_clip import build_tiny_clip

QUERY = "a striped summer shirt"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[ClipImageEmbedder, ClipTextEmbedder]:
    path = str(build_tiny_clip(tmp_path_factory.mktemp("clip")))
    return ClipImageEmbedder(path), ClipTextEmbedder(path)


@pytest.fixture
def store(settings: Settings, clip: tuple[ClipImageEmbedder, ClipTextEmbedder]
          ) -> Iterator[MilvusStore]:
    s = MilvusStore.from_settings(settings.model_copy(update={"index_type": "FLAT"}),
                                  image_dim=clip[0].dim, text_dim=clip[1].dim)
    s.ensure_collection()
    yield s
    s.drop()
    s.close()


def photos(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(5)
    return [Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)) for _ in range(n)]


def service(store: MilvusStore, clip: tuple[ClipImageEmbedder, ClipTextEmbedder], *,
            cross_modal: bool, tmp_path: Path) -> SearchService:
    ie, te = clip

    async def embed_image(img: Image.Image) -> np.ndarray:
        return ie.embed([img])[0]

    async def embed_text(text: str) -> np.ndarray:
        return te.embed([text])[0]

    return SearchService(store=store, embed_image=embed_image, embed_text=embed_text,
                         media_dir=tmp_path, cross_modal=cross_modal)


def test_text_finds_a_product_by_its_photo_alone(
        store: MilvusStore, clip: tuple[ClipImageEmbedder, ClipTextEmbedder],
        tmp_path: Path) -> None:
    ie, te = clip
    imgs = photos(12)
    image_vecs = ie.embed(imgs)
    same_words = te.embed(["item"])[0]  # every product says the same: only photos differ
    store.upsert([StoredProduct(Product(product_id=f"p{i}", title="item"), image_vecs[i:i + 1],
                                same_words) for i in range(len(imgs))])
    query = te.embed([QUERY])[0]
    cosines = image_vecs @ query
    expected = [f"p{i}" for i in np.argsort(-cosines)[:3]]

    out = asyncio.run(service(store, clip, cross_modal=True, tmp_path=tmp_path).search(
        SearchQuery(text=QUERY, top_k=3, infer="off")))
    assert [h.product.product_id for h in out.hits] == expected
    for h in out.hits:  # the photo's score is the text-to-photo cosine itself
        assert h.scores["image"] == pytest.approx(float(cosines[int(h.product.product_id[1:])]),
                                                  abs=1e-4)

    # Without the cross-modal option the words alone decide, and they tie: no photo score.
    plain = asyncio.run(service(store, clip, cross_modal=False, tmp_path=tmp_path).search(
        SearchQuery(text=QUERY, top_k=3, infer="off")))
    assert plain.hits and all("image" not in h.scores for h in plain.hits)
