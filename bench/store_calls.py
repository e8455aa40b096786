"""The store calls one search makes, each timed alone (client wall time, median of 40);
with --count, how many store round trips each kind of request makes.

    .venv/bin/python bench/store_calls.py [--products 500] [--count]

On a lookalike-launched milvus-lite server holding the demo catalogue (real embeddings,
flushed and indexed), one client, sequential: a gRPC round trip with no work
(get_load_state), a read of one product by id, the newest rows of 30 products (what a search
reads for its winners), an unfiltered and a filtered grouped vector search of 30 (what a
search ranks with), and the variant groups of 30 products. Run with
LOOKALIKE_LITE_PATCH=0 in the environment for milvus-lite's own code paths.

--count: the gRPC calls (by method) that one SearchService request makes against that server,
counted by a client interceptor (lookalike/store/call_count.py), for text, photo, hybrid and
similar requests with inference off and on; "before" is the path that reads each search's
winners in a query of its own (skipped for winners in the read cache, read_cache_ttl_s, so the
same request again is shown too) and the variant groups in another (the store's
newest_with_groups hidden), "after" the path with fields from the searches and one read per
page. Also what runs beside the searches: one facets scan
(in the background, once per facets_ttl_s per replica) and one alias resolve (at start and on
refresh, live.py).

--skip: SearchService's store time (the query vectors embedded beforehand, so store calls,
ranking and the page read only) for text and photo searches with inferred attributes, the
full-match search skipped where the pool suffices (lookalike/rank/retrieval.py) against always
made, interleaved request by request in one run; median of 40 each, with the calls each made.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import host
from lookalike.catalog import demo, load_manifest
from lookalike.catalog.product import Product
from lookalike.config import Settings
from lookalike.embedding import ImageEmbedder, TextEmbedder
from lookalike.images import decode_image
from lookalike.indexing import batched, embed_products
from lookalike.live import ALIAS_RECHECK_S
from lookalike.ports import free_port
from lookalike.rank import retrieval
from lookalike.search import SearchQuery, SearchService
from lookalike.store import Filters, MilvusStore, aliases
from lookalike.store.call_count import count_calls
from lookalike.store.lite_server import LiteServer


def median_ms(call: Callable[[], object], n: int = 40) -> float:
    call()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        times.append((time.perf_counter() - t) * 1000.0)
    return round(statistics.median(times), 2)


class _Before:
    """The store without newest_with_groups: SearchService takes the path it had before."""

    def __init__(self, store: MilvusStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name == "newest_with_groups":
            raise AttributeError(name)
        return getattr(self._store, name)


def _calls(store: MilvusStore, call: Callable[[], object]) -> Counter[str]:
    with count_calls(store) as calls:
        call()
    return Counter(calls)


def _show(calls: Counter[str]) -> str:
    return f"{sum(calls.values())} ({', '.join(f'{k} {v}' for k, v in sorted(calls.items()))})"


def count_table(store: MilvusStore, products: list[Product], ie: ImageEmbedder,
                te: TextEmbedder) -> None:
    async def embed_image(img: Image.Image) -> np.ndarray:
        return ie.embed([img])[0]

    async def embed_text(text: str) -> np.ndarray:
        return te.embed([text])[0]

    def service(s: Any) -> SearchService:
        svc = SearchService(store=s, embed_image=embed_image, embed_text=embed_text,
                            media_dir=Path(tempfile.mkdtemp()), facets_ttl_s=3600)
        asyncio.run(svc.facets())  # counted on its own below
        return svc

    before, after = service(_Before(store)), service(store)
    photo = decode_image(Path(products[0].images[0]).read_bytes())
    requests = {}
    for infer, text in (("off", "dress"), ("boost", "red dress")):
        requests[f"text, infer {infer}"] = SearchQuery(text=text, top_k=10, infer=infer)
        requests[f"photo, infer {infer}"] = SearchQuery(image=photo, top_k=10, infer=infer)
        requests[f"hybrid, infer {infer}"] = SearchQuery(text=text, image=photo, top_k=10,
                                                         infer=infer)
    def cold(svc: SearchService, call: Callable[[SearchService], object]) -> Counter[str]:
        store._cache.clear()  # before: the winners' rows read cache (read_cache_ttl_s) empty
        return _calls(store, lambda: call(svc))

    def row(name: str, call: Callable[[SearchService], object]) -> None:
        got = [cold(before, call), _calls(store, lambda: call(before)), cold(after, call)]
        print(f"| {name} | {' | '.join(_show(c) for c in got)} |")

    print("| request | before, read cache cold | before, the same again (cache warm) | after |")
    print("|---|---|---|---|")
    for name, q in requests.items():
        row(name, lambda s, q=q: asyncio.run(s.search(q)))
    pid = products[1].product_id
    row("similar", lambda s: asyncio.run(s.similar(pid, top_k=10, filters=Filters())))
    scan = _calls(store, after._facets.refresh)  # the background rescan, waited for
    print(f"| facets scan (background, every facets_ttl_s: default "
          f"{Settings.model_fields['facets_ttl_s'].default:g} s per replica) | {_show(scan)} | | |")
    resolve = _calls(store, lambda: aliases.resolve(store.client, store.collection))
    print(f"| alias resolve (at start and on refresh; the background re-check is one "
          f"describe_alias per {ALIAS_RECHECK_S:g} s per replica) | {_show(resolve)} | | |")


def skip_table(store: MilvusStore, products: list[Product], ie: ImageEmbedder,
               te: TextEmbedder) -> None:
    photo = decode_image(Path(products[0].images[0]).read_bytes())
    texts = ("red dress", "black sneakers", "blue jeans")
    vectors = {t: te.embed([t])[0] for t in texts}
    photo_vec = ie.embed([photo])[0]

    async def embed_image(img: Image.Image) -> np.ndarray:
        return photo_vec

    async def embed_text(text: str) -> np.ndarray:
        return vectors[text] if text in vectors else te.embed([text])[0]

    svc = SearchService(store=store, embed_image=embed_image, embed_text=embed_text,
                        media_dir=Path(tempfile.mkdtemp()), facets_ttl_s=3600)
    asyncio.run(svc.facets())
    requests = {f"text {t!r}": SearchQuery(text=t, top_k=10) for t in texts}
    requests["photo"] = SearchQuery(image=photo, top_k=10)
    skipped = retrieval.pool_suffices

    def timed(q: SearchQuery, skip: bool) -> tuple[float, int]:
        retrieval.pool_suffices = skipped if skip else (lambda *a, **k: False)  # type: ignore
        try:
            with count_calls(store) as calls:
                t = time.perf_counter()
                asyncio.run(svc.search(q))
                return (time.perf_counter() - t) * 1000.0, sum(calls.values())
        finally:
            retrieval.pool_suffices = skipped

    print("| request (top_k 10) | skipped where the pool suffices: p50 ms, calls "
          "| always made: p50 ms, calls |")
    print("|---|---|---|")
    for name, q in requests.items():
        got: dict[bool, list[float]] = {True: [], False: []}
        calls = {}
        for i in range(43):
            for skip in (True, False):
                ms, calls[skip] = timed(q, skip)
                if i >= 3:  # warm-up
                    got[skip].append(ms)
        print(f"| {name} | {statistics.median(got[True]):.1f}, {calls[True]} "
              f"| {statistics.median(got[False]):.1f}, {calls[False]} |")
    svc.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--products", type=int, default=500)
    ap.add_argument("--count", action="store_true", help="count round trips per request")
    ap.add_argument("--skip", action="store_true",
                    help="time the full-match search skipped against always made")
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
        if args.count:
            print(f"{args.products} products, store round trips per request, {host()}")
            count_table(store, products, ie, te)
            return 0
        if args.skip:
            print(f"{args.products} products, SearchService store time per request, {host()}")
            skip_table(store, products, ie, te)
            return 0
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
