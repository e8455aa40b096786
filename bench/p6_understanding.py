"""P6: what query understanding costs a text search (infer=boost vs infer=off), same code.

    .venv/bin/python bench/p6_understanding.py [--products 2000] [--rounds 5]

In-process SearchService (packaged embedders, no HTTP) over an embedded milvus-lite server
holding the demo catalogue (vectors cached by lookalike.eval under --work-dir). The query file's
texts run in interleaved rounds, each text once per mode per round, so a change in machine
load hits both modes alike. Reports p50/p95 of the whole search (embed + understand + store)
and of its store part, per mode, and the p50 difference. Writes bench/results/p6.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from bench.common import free_port, machine, summary_ms, write_result
    from lookalike.config import Settings
    from lookalike.embedding import ImageEmbedder, TextEmbedder
    from lookalike.eval.catalogue import build_catalogue, embed_cached
    from lookalike.eval.harness import load_queries
    from lookalike.eval.runner import ADMIN_KEY, DEMO_QUERIES
    from lookalike.search import SearchQuery, SearchService
    from lookalike.store import MilvusStore
    from lookalike.store.lite_server import LiteServer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--products", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--work-dir", type=Path, default=Path("data/eval"))
    args = ap.parse_args(argv)
    ie, te = ImageEmbedder(), TextEmbedder()
    products = build_catalogue(kind="demo", n_products=args.products, work_dir=args.work_dir)
    labelled = embed_cached(products, image_embedder=ie, text_embedder=te, cache_dir=args.work_dir)
    lite = LiteServer(args.work_dir / "lite-p6", free_port())
    lite.ensure_running()
    try:
        settings = Settings(data_dir=lite.data_dir, lite_port=lite.port, port=free_port(),
                            collection="bench_p6", admin_key=ADMIN_KEY)
        store = MilvusStore.from_settings(settings, image_dim=ie.dim, text_dim=te.dim)
        if store.client.has_collection(settings.collection):
            store.drop()
        store.ensure_collection()
        for start in range(0, len(labelled.items), 200):
            store.upsert(labelled.items[start:start + 200])
        store.flush()
        store.wait_index_ready()

        async def embed_text(text: str) -> np.ndarray:
            return te.embed([text])[0]

        async def no_image(_: object) -> np.ndarray:
            raise AssertionError("text only")

        service = SearchService(store=store, embed_image=no_image, embed_text=embed_text,
                                media_dir=settings.media_dir, facets_ttl_s=3600)
        texts = [q.text for q in load_queries(DEMO_QUERIES)]
        total: dict[str, list[float]] = {"off": [], "boost": []}
        store_s: dict[str, list[float]] = {"off": [], "boost": []}

        async def run() -> None:
            for mode in total:  # warm-up: models, facets, vocabulary
                await service.search(SearchQuery(text=texts[0], infer=mode))
            for _ in range(args.rounds):
                for text in texts:
                    for mode, times in total.items():
                        started = time.perf_counter()
                        out = await service.search(SearchQuery(text=text, infer=mode))
                        times.append(time.perf_counter() - started)
                        store_s[mode].append(out.timings.search_ms / 1000.0)

        asyncio.run(run())
        result = {"machine": machine(), "products": len(products), "queries": len(texts),
                  "rounds": args.rounds,
                  "total": {m: summary_ms(v) for m, v in total.items()},
                  "store_and_ranking": {m: summary_ms(v) for m, v in store_s.items()}}
        result["p50_delta_ms"] = round(result["total"]["boost"]["p50_ms"]
                                       - result["total"]["off"]["p50_ms"], 3)
        store.drop()
        store.close()
    finally:
        lite.stop()
    path = write_result("p6", result)
    import json

    print(json.dumps(result, indent=2))
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
