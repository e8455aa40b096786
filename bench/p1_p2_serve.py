"""P1/P2: the Serve app against the raw models, measured in one run on this machine.

    .venv/bin/python bench/p1_p2_serve.py [--products 500] [--duration 20]

P1 = image-search saturation QPS / raw image embedder best-batch images/s   (target >= 0.85)
P2 = text-search p50 - (one-query text encode p50 + one store search p50)  (target <= 5 ms)
     over texts each asked once (the router keeps recent queries' vectors: a repeated text
     skips the encode, reported on its own as "repeated")
Order matters on 2 cores: raw models are measured before Ray starts, so nothing competes.
Writes bench/results/p1_p2.json.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx
import torch
from PIL import Image

from bench.common import (
    machine,
    raw_image_processes,
    saturation,
    summary_ms,
    write_result,
)
from lookalike.catalog import demo, load_manifest
from lookalike.config import Settings
from lookalike.embedding import ImageEmbedder, TextEmbedder
from lookalike.images import decode_image
from lookalike.indexing import batched, embed_products
from lookalike.ports import free_port
from lookalike.store import MilvusStore
from lookalike.store.lite_server import LiteServer


def raw_image_throughput(embedder: ImageEmbedder, images: list[Image.Image]) -> dict[int, float]:
    """img/s per batch size, preprocessing included (the app does it too), all cores."""
    out: dict[int, float] = {}
    embedder.embed(images[:4])  # warm-up
    for bs in (1, 2, 4, 8, 16, 32):
        n = max(64, bs * 4)
        start = time.perf_counter()
        done = 0
        while done < n:
            chunk = [images[(done + i) % len(images)] for i in range(bs)]
            embedder.embed(chunk)
            done += bs
        out[bs] = round(done / (time.perf_counter() - start), 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--products", type=int, default=500)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--text-queries", type=int, default=200)
    ap.add_argument("--config", type=Path, default=ROOT / "serve_config.yaml",
                    help="the Serve config (replicas, batching, the app's environment)")
    ap.add_argument("--proxy", choices=["optimized", "default"], default="optimized",
                    help="optimized: RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (direct ingress)")
    args = ap.parse_args()
    # init_local turns it on unless told otherwise (launch/local_ray.py).
    os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1" if args.proxy == "optimized" else "0"

    work = Path(tempfile.mkdtemp(prefix="lookalike-bench-"))
    manifest = demo.build(work / "catalogue", args.products)
    products, _ = load_manifest(manifest)
    images = [decode_image(Path(p.images[0]).read_bytes()) for p in products[:64]]
    payloads = [Path(p.images[0]).read_bytes() for p in products]

    # 1. Raw models, nothing else running.
    torch.set_num_threads(os.cpu_count() or 2)
    ie, te = ImageEmbedder(), TextEmbedder()
    raw = raw_image_throughput(ie, images)
    # The ceiling on these cores: the best of one process with every thread (by batch) and one
    # one-thread process per core (batch 1 and 2), measured with nothing else running.
    cores = os.cpu_count() or 2
    paths = [p.images[0] for p in products[:64]]
    raw_procs = {f"{cores}x1 thread, batch {bs}": raw_image_processes(paths, cores, bs)
                 for bs in (1, 2)}
    configs = {f"1x{cores} threads, batch {bs}": ips for bs, ips in raw.items()} | raw_procs
    best_config, best_ips = max(configs.items(), key=lambda kv: kv[1])
    print(f"raw image embedder img/s: {configs} -> best {best_ips} ({best_config})")

    # 2. Store + catalogue.
    server = LiteServer(work / "data", free_port())
    server.ensure_running()
    atexit.register(server.stop)  # also on a failed set-up (p9_floor.py says why)
    settings = Settings(data_dir=work / "data", lite_port=server.port, port=free_port(),
                        collection="bench", admin_key="bench-admin-key-0123")
    store = MilvusStore.from_settings(settings, image_dim=ie.dim, text_dim=te.dim)
    store.ensure_collection()
    for chunk in batched(products, 64):
        store.upsert(embed_products(chunk, image_embedder=ie, text_embedder=te))
    # As the ingest job leaves it: flushed and indexed. Rows left in the write buffer cost the
    # store ~5x the CPU per search (bench/p8_write_flush.py) and would be billed to the app.
    store.flush()
    if not store.wait_index_ready(timeout_s=300):
        print("warning: indexes still building after 300 s; the store's figures include it")

    # 3. P2's parts in-process: one text encode, one store search (sequential, warm).
    # Distinct texts (5 x 5 x 8 = 200), so P2's HTTP series never meets a cached vector.
    queries = [f"{c} {a} {k}" for c in ("red", "blue", "black", "green", "yellow")
               for a in ("summer", "classic", "casual", "warm", "light")
               for k in ("dress", "sneaker", "bag", "coat", "shirt", "boots", "t-shirt", "sandal")]
    te.embed(queries[:1])
    encode_s, search_s = [], []
    for i in range(args.text_queries):
        q = queries[i % len(queries)]
        t = time.perf_counter()
        v = te.embed([q])[0]
        encode_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        store.search(text_vector=v, top_k=10)
        search_s.append(time.perf_counter() - t)
    del ie, te

    # 4. The app.
    import ray
    from ray import serve

    from lookalike.launch.local_ray import init_local
    from lookalike.launch.serving import deploy, load_config, wait_ready

    init_local(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False)
    # The app as serve_config.yaml deploys it: the replicas and batching measured are the YAML's.
    app_settings = {**settings.model_dump(mode="json"),
                    "admin_key": settings.admin_key.get_secret_value()}
    front = deploy(load_config(args.config, settings,
                               app_args={"settings": app_settings}), settings)
    url = f"http://127.0.0.1:{settings.port}"
    wait_ready(url)
    with httpx.Client(base_url=url, timeout=60) as c:
        for i in range(10):
            c.get("/v1/search", params={"q": f"warm up {i}"})

        def text_series() -> list[float]:
            took = []
            for i in range(args.text_queries):
                t = time.perf_counter()
                r = c.get("/v1/search", params={"q": queries[i % len(queries)], "top_k": 10})
                took.append(time.perf_counter() - t)
                r.raise_for_status()
            return took

        text_s = text_series()  # first time each (with --text-queries <= 200)
        repeat_s = text_series()  # the same texts again: their vectors are cached
        c.post("/v1/search", files={"image": ("q.jpg", payloads[0], "image/jpeg")}).raise_for_status()
    sat = []
    for conc in args.concurrency:
        print(f"image searches from {conc} clients for {args.duration:.0f} s", flush=True)
        run = saturation(url, payloads, conc, args.duration)
        print(f"c={conc}: {run['qps']} QPS; cores used by {run['cores_used_by']}; "
              f"CPU outside the model {run['cpu_ms_outside_model']} ms/request")
        sat.append(run)
    if front is not None:
        front.stop()
    serve.shutdown()
    ray.shutdown()
    server.stop()

    best = max(sat, key=lambda s: s["qps"])
    text, repeated = summary_ms(text_s), summary_ms(repeat_s)
    enc, srch = summary_ms(encode_s), summary_ms(search_s)
    p1 = best["qps"] / best_ips
    p2 = text["p50_ms"] - (enc["p50_ms"] + srch["p50_ms"])
    result = {
        "machine": machine(), "products": args.products, "proxy": args.proxy,
        "config": str(args.config), "direct_routes": settings.direct_routes,
        "serve_control_loop_interval_s": os.environ.get("RAY_SERVE_CONTROL_LOOP_INTERVAL_S"),
        "raw_image_img_per_s": configs, "raw_best_img_per_s": best_ips,
        "raw_best_config": best_config,
        "image_saturation": sat, "P1": round(p1, 3), "P1_target": ">= 0.85",
        "text_search_http": text, "text_search_http_repeated": repeated,
        "query_vector_cache_size": settings.query_vector_cache_size,
        "text_encode_one": enc, "store_search_one": srch,
        "P2_ms": round(p2, 3), "P2_target": "<= 5 ms",
    }
    print(f"\n| metric | value | target |\n|---|---|---|\n"
          f"| raw image embedder ceiling ({best_config}) | {best_ips} img/s | |\n"
          f"| image search saturation (c={best['concurrency']}) | {best['qps']} QPS, p99 {best['p99_ms']} ms | |\n"
          f"| CPU per image search outside the model (c={best['concurrency']}) | {best['cpu_ms_outside_model']} ms | <= 8 ms |\n"
          f"| **P1** | **{p1:.3f}** | >= 0.85 |\n"
          f"| text search p50 over HTTP | {text['p50_ms']} ms | |\n"
          f"| … the same texts again (query_vector_cache_size {settings.query_vector_cache_size}) "
          f"| {repeated['p50_ms']} ms | |\n"
          f"| one text encode p50 + one store search p50 | {enc['p50_ms']} + {srch['p50_ms']} ms | |\n"
          f"| **P2** | **{p2:.2f} ms** | <= 5 ms |")
    print("wrote", write_result("p1_p2", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
