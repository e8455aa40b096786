"""A SearchService for integration tests: a real store, the real embedders called in-process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.embedding import ImageEmbedder, TextEmbedder
from lookalike.search import SearchService
from lookalike.store import MilvusStore


def make_service(store: MilvusStore, embedders: tuple[ImageEmbedder, TextEmbedder],
                 media_dir: Path, **kwargs: object) -> SearchService:
    """No Ray: the embedders run in this process, behind the async callables Serve's handles
    are elsewhere."""
    ie, te = embedders

    async def embed_image(img: Image.Image) -> np.ndarray:
        return ie.embed([img])[0]

    async def embed_text(text: str) -> np.ndarray:
        return te.embed([text])[0]

    return SearchService(store=store, embed_image=embed_image, embed_text=embed_text,
                         media_dir=media_dir, **kwargs)
