"""The store calls one search makes, each timed alone (client wall time, median of 40).

    .venv/bin/python bench/store_calls.py [--products 500]

On a lookalike-launched milvus-lite server holding the demo catalogue (real embeddings,
flushed and indexed), one client, sequential: a gRPC round trip with no work
(get_load_state), a read of one product by id, the newest rows of 30 products (what a search
reads for its winners), an unfiltered and a filtered grouped vector search of 30 (what a
search ranks with), and the variant groups of 30 products. Run with
LOOKALIKE_LITE_PATCH=0 in the environment for milvus-lite's own code paths.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import host  # noqa: E402
from lookalike.catalog import demo, load_manifest  # noqa: E402
from lookalike.config import Settings  # noqa: E402
from lookalike.embedding import ImageEmbedder, TextEmbedder  # noqa: E402
from lookalike.images import decode_image  # noqa: E402
from lookalike.indexing import batched, embed_products  # noqa: E402
from lookalike.ports import free_port  # noqa: E402
from lookalike.store import MilvusStore  # noqa: E402
from lookalike.store.lite_server import LiteServer  # noqa: E402


def median_ms(call: Callable[[], object], n: int = 40) -> float:
    call()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        times.append((time.perf_counter() - t) * 1000.0)
    return round(statistics.median(times), 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--products", type=int, default=500)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lookalike-store-calls-"))
    products, _ = load_manifest(demo.build(work / "catalogue", args.products))
    ie, te = ImageEmbedder(), TextEmbedder()
    server = LiteServer(work / "data", free_port())
    server.ensure_running()
    try:
        settings = Settings(data_dir=work / "data", lite_port=server.port, collection="bench")
        store = MilvusStore.from_settings(settings, image_dim=ie.dim, text_dim=te.dim)
        store.ensure_collection()
        for chunk in batched(products, 64):
            store.upsert(embed_products(chunk, image_embedder=ie, text_embedder=te))
        store.flush()
        store.wait_index_ready(timeout_s=300)
        ids = [p.product_id for p in products[:30]]
        photo = decode_image(Path(products[0].images[0]).read_bytes())
        vec = ie.embed([photo])[0].tolist()
        c, col = store.client, store.collection
        calls = {
            "gRPC round trip (get_load_state)": lambda: c.get_load_state(col),
            "one product by id": lambda: c.query(col, filter=f'product_id in ["{ids[1]}"]',
                                                 output_fields=["product_id"]),
            "newest rows of 30 products": lambda: store._newest_rows(ids),
            "grouped search of 30, no filter": lambda: store._grouped("image_vector", [vec], "", 30),
            "grouped search of 30, category filter": lambda: store._grouped(
                "image_vector", [vec], f'category in ["{products[0].category}"]', 30),
            "variant groups of 30 products": lambda: store.group_members(ids),
        }
        patched = os.environ.get("LOOKALIKE_LITE_PATCH", "1") not in ("0", "false", "no", "off")
        print(f"{args.products} products, milvus-lite {'patched' if patched else 'unpatched'}, "
              f"{host()}")
        for name, call in calls.items():
            print(f"| {name} | {median_ms(call)} ms |")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
