"""Wire one evaluation: catalogue -> embedded store -> SearchService -> HTTP API -> harness."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.config import Settings
from lookalike.embedding import ImageEmbedder, TextEmbedder
from lookalike.eval.catalogue import build_catalogue, embed_cached
from lookalike.eval.harness import ann_eval, image_eval, load_queries, text_eval
from lookalike.search import SearchService
from lookalike.store import MilvusStore

DEMO_QUERIES = Path(__file__).parent / "data" / "demo_queries.jsonl"
ADMIN_KEY = "eval-admin-key-not-secret"


def evaluate(settings: Settings, *, catalogue: str, n_products: int, work_dir: Path,
             queries: Path | None = DEMO_QUERIES, image_queries: int = 200, ann_queries: int = 50,
             extra: dict[str, Any] | None = None, seed: int = 0,
             embedders: tuple[ImageEmbedder, TextEmbedder] | None = None) -> dict[str, Any]:
    """Every figure for one catalogue; `extra` goes into every search request (e.g. {"infer":
    "off"}). The store is (re)filled from cached vectors, so a run measures today's code."""
    from fastapi.testclient import TestClient

    from lookalike.api import create_api

    # From settings: the default runtime (ONNX on the CPU), or LOOKALIKE_MODEL_RUNTIME=torch,
    # or LOOKALIKE_TEXT_QUANTIZE=int8, evaluates that runtime.
    ie, te = embedders or (ImageEmbedder.from_settings(settings),
                           TextEmbedder.from_settings(settings))
    products = build_catalogue(kind=catalogue, n_products=n_products, work_dir=work_dir)
    labelled = embed_cached(products, image_embedder=ie, text_embedder=te, cache_dir=work_dir)
    store = MilvusStore.from_settings(settings, image_dim=ie.dim, text_dim=te.dim)
    if store.client.has_collection(settings.collection):
        store.drop()
    store.ensure_collection()
    for start in range(0, len(labelled.items), 200):
        store.upsert(labelled.items[start:start + 200])
    store.flush()
    store.wait_index_ready()

    async def embed_image(img: Any) -> np.ndarray:
        return ie.embed([img])[0]

    async def embed_text(text: str) -> np.ndarray:
        return te.embed([text])[0]

    service = SearchService(store=store, embed_image=embed_image, embed_text=embed_text,
                            media_dir=settings.media_dir, facets_ttl_s=3600,
                            cross_modal=getattr(te, "cross_modal", False))
    app = create_api(service, settings)
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"catalogue": catalogue, "products": len(products),
                           "index_type": settings.index_type, "extra": extra or {}}
    with TestClient(app) as client:
        def post(body: dict[str, Any]) -> dict[str, Any]:
            r = client.post("/v1/search", json=body)
            if r.status_code != 200:
                raise RuntimeError(f"search failed ({r.status_code}): {r.text[:300]}")
            return r.json()

        if queries is not None:
            out["text"] = text_eval(post, products, load_queries(queries), extra=extra)
        if image_queries:
            sample = rng.choice(len(products), size=min(image_queries, len(products)), replace=False)
            out["image"] = image_eval(post, labelled, [int(i) for i in sample], extra=extra)
    if ann_queries:
        sample = rng.choice(len(products), size=min(ann_queries, len(products)), replace=False)
        out["ann"] = ann_eval(store.search, labelled, [int(i) for i in sample], seed=seed)
    store.drop()
    store.close()
    return out


def dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, ensure_ascii=False)
