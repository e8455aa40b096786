"""A labelled catalogue for the harness: the demo builder's products, embedded once and cached.

The demo catalogue uses Fashion-MNIST's train split; `test` builds the same kind of catalogue
from the held-out test split, so figures are also measured on articles the demo never shows.
Vectors are cached next to the catalogue under the models' versions: a re-run (before/after
a change to ranking) re-embeds nothing, and a changed model re-embeds everything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.catalog import demo, load_manifest
from lookalike.catalog.product import Product
from lookalike.embedding import ImageEmbedder, TextEmbedder
from lookalike.indexing import batched, embed_products
from lookalike.store.base import StoredProduct

SPLIT_OF = {"demo": "train", "test": "test"}


@dataclass(frozen=True)
class Labelled:
    """The products and their stored vectors, in the same order."""

    items: list[StoredProduct]

    @property
    def products(self) -> list[Product]:
        return [it.product for it in self.items]


def build_catalogue(*, kind: str, n_products: int, work_dir: Path, seed: int = 7) -> list[Product]:
    if kind not in SPLIT_OF:
        raise ValueError(f"catalogue must be one of {', '.join(SPLIT_OF)}, not {kind!r}")
    out = Path(work_dir) / f"{kind}-{n_products}-{seed}"
    manifest = out / "manifest.jsonl"
    if not manifest.exists():
        demo.build(out, n_products, seed=seed, split=SPLIT_OF[kind])  # type: ignore[arg-type]
    products, errors = load_manifest(manifest)
    if errors:
        raise ValueError(f"catalogue {manifest}: {errors[0]}")
    return products


def embed_cached(products: list[Product], *, image_embedder: ImageEmbedder,
                 text_embedder: TextEmbedder, cache_dir: Path) -> Labelled:
    # The runtime too: ONNX fp32 keeps torch's model version, and a harness run comparing the
    # runtimes must embed with each, not read the other's vectors.
    runtimes = [getattr(e, "runtime", "torch") for e in (image_embedder, text_embedder)]
    key = hashlib.sha256(json.dumps([image_embedder.version, text_embedder.version, runtimes,
                                     [p.content_hash() for p in products]]).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"vectors-{key}.npz"
    if cache.exists():
        with np.load(cache) as data:
            image, text, owner = data["image"], data["text"], data["owner"]
        items = [StoredProduct(p, image[owner == i], text[i], p.content_hash(),
                               f"{image_embedder.version}|{text_embedder.version}")
                 for i, p in enumerate(products)]
        return Labelled(items)
    items: list[StoredProduct] = []
    for batch in batched(products, 64):
        items.extend(embed_products(batch, image_embedder=image_embedder, text_embedder=text_embedder))
    owner = np.concatenate([np.full(len(it.image_vectors), i) for i, it in enumerate(items)])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, image=np.concatenate([it.image_vectors for it in items]),
             text=np.stack([it.text_vector for it in items]), owner=owner)
    return Labelled(items)
