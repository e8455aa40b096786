"""Embed products in-process (no Ray): small loads, tests, and the baseline server.

The Ray Data ingest job (ingest_job.py) is the scalable path; both use the same embedders
and the same StoredProduct, so their vectors match.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path

from lookalike.catalog.product import Product
from lookalike.embedding import ImageEmbedder, TextEmbedder
from lookalike.images import decode_image
from lookalike.store.base import StoredProduct
from lookalike.variants import phash_hex


def embed_products(products: Sequence[Product], *, image_embedder: ImageEmbedder,
                   text_embedder: TextEmbedder) -> list[StoredProduct]:
    """Local image files only (URLs are the ingest job's business)."""
    version = f"{image_embedder.version}|{text_embedder.version}"
    text_vecs = text_embedder.embed([p.text() for p in products])
    out: list[StoredProduct] = []
    for product, text_vec in zip(products, text_vecs):
        blobs = [Path(ref).read_bytes() for ref in product.images]
        images = [decode_image(b) for b in blobs]
        image_vecs = image_embedder.embed(images)
        digests = tuple(hashlib.sha256(b).hexdigest() for b in blobs)
        out.append(StoredProduct(product, image_vecs, text_vec, product.content_hash(digests), version,
                                 phashes=tuple(phash_hex(img) for img in images)))
    return out


def batched(items: Iterable[Product], n: int) -> Iterator[list[Product]]:
    """Lists of n (the last one shorter): itertools.batched, which is Python 3.12+ (we support
    3.10), as its documented islice recipe."""
    it = iter(items)
    while batch := list(islice(it, n)):
        yield batch


