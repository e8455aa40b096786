"""P6: what the whole-product guarantees cost on the store's read and write paths.

    .venv/bin/python bench/p6_read_path.py --products 2000 --queries 200

On a lookalike-launched milvus-lite server (flushed, indexes built), with the real schema
(1280-d image, 384-d text, ~1.25 photos a product) and random unit vectors, per query kind:
p50/p99 of MilvusStore.search as shipped (candidates, then one read of the winners' fields that
is also the newest-version check; hybrid fused exactly per product), against the single call
the store used to make (`search`/`hybrid_search` with every product field, WeightedRanker),
measured in interleaved rounds so machine load hits both alike. Random vectors are the worst
case for the exact fusion: text and photo disagree, so candidate lists rarely overlap. Also:
upsert of one product (insert + version check + cleanup) and of 500-product batches. Prints a
table and writes bench/results/p6_read_path.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, host
from lookalike.catalog import Product
from lookalike.config import Settings
from lookalike.ports import free_port
from lookalike.store import MilvusStore, StoredProduct
from lookalike.store.lite_server import LiteServer
from lookalike.store.milvus import CONSISTENCY
from lookalike.store.schema import PRODUCT_FIELDS


def one_call(store: MilvusStore, query: dict[str, np.ndarray]) -> Any:
    """The store's old read: one search or hybrid_search returning every product field."""
    from pymilvus import AnnSearchRequest, WeightedRanker

    common = {"limit": 10, "output_fields": PRODUCT_FIELDS, "group_by_field": "product_id",
              "consistency_level": CONSISTENCY}
    params = store._search_params
    if len(query) == 2:
        reqs = [AnnSearchRequest([query["image_vector"].tolist()], "image_vector", params, limit=10),
                AnnSearchRequest([query["text_vector"].tolist()], "text_vector", params, limit=10)]
        return store.client.hybrid_search(store.collection, reqs, WeightedRanker(0.5, 0.5), **common)
    field, vec = next(iter(query.items()))
    return store.client.search(store.collection, data=[vec.tolist()], anns_field=field,
                               search_params=params, **common)

IMG, TXT = 1280, 384


def unit(rng: np.random.Generator, *shape: int) -> np.ndarray:
    v = rng.standard_normal(shape).astype(np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def items(rng: np.random.Generator, n: int, start: int = 0) -> list[StoredProduct]:
    out = []
    for i in range(start, start + n):
        k = 2 if i % 4 == 0 else 1
        out.append(StoredProduct(Product(f"p{i}", title=f"t{i}", color=["red", "blue"][i % 2],
                                         price=float(i % 90), images=tuple(f"/i/{i}-{j}.jpg" for j in range(k))),
                                 unit(rng, k, IMG), unit(rng, TXT), f"h{i}", "v"))
    return out


def pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(xs, q)), 3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--products", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        server = LiteServer(Path(tmp), free_port())
        server.ensure_running()
        try:
            settings = Settings(data_dir=Path(tmp), lite_port=server.port, collection="p6",
                                admin_key="bench-admin-key-0123")
            store = MilvusStore.from_settings(settings, image_dim=IMG, text_dim=TXT)
            store.ensure_collection()
            t0 = time.perf_counter()
            for start in range(0, args.products, 500):
                store.upsert(items(rng, min(500, args.products - start), start))
            batch_s = time.perf_counter() - t0
            store.flush()
            store.wait_index_ready(timeout_s=900)
            kinds = {"text": lambda: {"text_vector": unit(rng, TXT)},
                     "image": lambda: {"image_vector": unit(rng, IMG)},
                     "hybrid": lambda: {"image_vector": unit(rng, IMG), "text_vector": unit(rng, TXT)}}
            timings: dict[str, dict[str, list[float]]] = {k: {"shipped": [], "one_call": []}
                                                          for k in kinds}
            for _ in range(args.queries):
                for kind, make in kinds.items():
                    query = make()
                    t = time.perf_counter()
                    store.search(**query, top_k=10)
                    timings[kind]["shipped"].append((time.perf_counter() - t) * 1000)
                    t = time.perf_counter()
                    one_call(store, query)
                    timings[kind]["one_call"].append((time.perf_counter() - t) * 1000)
            one = []
            for i in range(50):
                t = time.perf_counter()
                store.upsert(items(rng, 1, i))  # replaces an existing product: insert + cleanup
                one.append((time.perf_counter() - t) * 1000)
            store.drop()
            store.close()
        finally:
            server.stop()
    result: dict[str, Any] = {
        "host": host(), "products": args.products, "queries": args.queries,
        "search_ms": {k: {m: {"p50": pct(v, 50), "p99": pct(v, 99)} for m, v in modes.items()}
                      for k, modes in timings.items()},
        "upsert_one_replacing_ms": {"p50": pct(one, 50), "p99": pct(one, 99)},
        "bulk_upsert_products_per_s": round(args.products / batch_s, 1),
    }
    print(f"P6 read/write path, {args.products} products, {args.queries} queries per kind, {host()}")
    print("| kind | p50 shipped | p50 one call (old) | p99 shipped | p99 one call (old) |")
    print("|---|---|---|---|---|")
    for kind, modes in result["search_ms"].items():
        print(f"| {kind} | {modes['shipped']['p50']} ms | {modes['one_call']['p50']} ms | "
              f"{modes['shipped']['p99']} ms | {modes['one_call']['p99']} ms |")
    print(f"upsert of one product replacing itself: p50 {result['upsert_one_replacing_ms']['p50']} ms;"
          f" bulk: {result['bulk_upsert_products_per_s']} products/s")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "p6_read_path.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
