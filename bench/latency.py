"""One client's latency (issue 29): lookalike's text and photo search against their raw parts,
measured in one run on this machine.

    .venv/bin/python bench/p9_floor.py --one-client 200       # the floor, first (optional)
    .venv/bin/python bench/latency.py [--products 500] [--requests 200]

In order, so that nothing competes: the demo catalogue in milvus-lite (flushed and indexed),
then the raw parts in this process on torch with the app's threads per replica (one text
encode, one image forward at batch 1 with the model's own preprocessing, one plain store
search: the top 10 grouped by product with their fields, bench/one_client.py), then the app
as serve_config.yaml deploys it, with N photo and N distinct-text searches from one client.

Targets (bench/one_client.py verdicts):
  text p50  <= 1.5 x (encode + store search), or the floor + 2 ms where that is higher
  photo p50 <= 1.3 x (forward + store search), or the floor + 2 ms where that is higher
  photo CPU above the floor <= 5 ms per request: the CPU of the app's request path (router,
      embedder replicas, proxies, milvus-lite) per photo search, less the forward's own CPU
      and less the floor's request-path CPU per photo search
"The floor" is bench/p9_floor.py --one-client's p50 (the fixed shape with no model and no app
logic, read from bench/results/p9_floor_one_client.json) plus this run's raw model part; that
file comes from its own run, so its figures are only as comparable as the two runs' load.
Writes bench/results/latency_one_client.json.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, host, summary_ms, write_result
from bench.one_client import (
    distinct_queries,
    photo_call,
    plain_search,
    series,
    text_call,
    verdicts,
)


def timed_parts(fn: Any, items: list[Any], n: int) -> dict[str, Any]:
    """fn(item) n times in a row: wall-clock summary and mean CPU of this process per call."""
    took: list[float] = []
    cpu0 = time.process_time()
    for i in range(n):
        t = time.perf_counter()
        fn(items[i % len(items)])
        took.append(time.perf_counter() - t)
    return {**summary_ms(took), "cpu_ms": round((time.process_time() - cpu0) * 1000 / n, 3)}


def load_floor(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    floor = json.loads(path.read_text())
    return floor if "photo" in floor and "text" in floor else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--products", type=int, default=500)
    ap.add_argument("--requests", type=int, default=200, help="per series (<= 200: distinct texts)")
    ap.add_argument("--model-threads", type=int, default=1,
                    help="torch threads for the raw parts (serve_config.yaml's per replica: 1)")
    ap.add_argument("--floor", type=Path, default=RESULTS / "p9_floor_one_client.json")
    ap.add_argument("--config", type=Path, default=ROOT / "serve_config.yaml")
    args = ap.parse_args()

    import torch
    from pymilvus import MilvusClient

    from lookalike.catalog import demo, load_manifest
    from lookalike.config import Settings
    from lookalike.embedding import ImageEmbedder, TextEmbedder
    from lookalike.images import decode_image, resize_short_side
    from lookalike.indexing import batched, embed_products
    from lookalike.ports import free_port
    from lookalike.store import MilvusStore
    from lookalike.store.lite_server import LiteServer

    load_before = [round(x, 2) for x in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="lookalike-latency-"))
    products, _ = load_manifest(demo.build(work / "catalogue", args.products))
    payloads = [Path(p.images[0]).read_bytes() for p in products]
    queries = distinct_queries()

    # 1. The catalogue, on every core.
    server = LiteServer(work / "data", free_port())
    server.ensure_running()
    atexit.register(server.stop)  # also on a failed set-up (p9_floor.py says why)
    settings = Settings(data_dir=work / "data", lite_port=server.port, port=free_port(),
                        collection="latency", admin_key="bench-admin-key-0123")
    cores = os.cpu_count() or 2
    ie, te = ImageEmbedder(num_threads=cores), TextEmbedder(num_threads=cores)
    store = MilvusStore.from_settings(settings, image_dim=ie.dim, text_dim=te.dim)
    store.ensure_collection()
    for chunk in batched(products, 64):
        store.upsert(embed_products(chunk, image_embedder=ie, text_embedder=te))
    store.flush()
    if not store.wait_index_ready(timeout_s=300):
        print("warning: indexes still building after 300 s; the store's figures include it")
    store.close()

    # 2. The raw parts, with the replicas' threads, nothing else running.
    torch.set_num_threads(args.model_threads)
    n = args.requests
    # The photo as the router hands it to the embedder: decoded and resized.
    images = [resize_short_side(decode_image(b, min_short_side=256), 256) for b in payloads[:50]]
    te.embed(["warm up"])
    ie.embed(images[:1])
    encode = timed_parts(lambda q: te.embed([q]), queries, n)
    forward = timed_parts(lambda img: ie.embed([img]), images, n)
    text_vecs = te.embed(queries[:50])
    image_vecs = ie.embed(images[:50])
    client = MilvusClient(uri=f"http://127.0.0.1:{server.port}",
                          token=server.token_file.read_text().strip())
    plain_search(client, "latency", text_vecs[0], "text_vector")
    text_search = timed_parts(lambda v: plain_search(client, "latency", v, "text_vector"),
                              list(text_vecs), n)
    photo_search = timed_parts(lambda v: plain_search(client, "latency", v, "image_vector"),
                               list(image_vecs), n)
    client.close()
    print(f"raw: encode p50 {encode['p50_ms']} ms, forward p50 {forward['p50_ms']} ms "
          f"({forward['cpu_ms']} ms CPU), store search p50 text {text_search['p50_ms']} / "
          f"image {photo_search['p50_ms']} ms", flush=True)

    # 3. The app, one client.
    import httpx
    import ray
    from ray import serve

    from lookalike.launch.local_ray import init_local
    from lookalike.launch.serving import deploy, load_config, wait_ready

    init_local(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    app_settings = {**settings.model_dump(mode="json"),
                    "admin_key": settings.admin_key.get_secret_value()}
    front = deploy(load_config(args.config, settings, app_args={"settings": app_settings}),
                   settings)
    url = f"http://127.0.0.1:{settings.port}"
    try:
        wait_ready(url)
        with httpx.Client(base_url=url, timeout=60) as c:
            for i in range(10):  # texts outside the measured series: their vectors get cached
                c.get("/v1/search", params={"q": f"warm up {i}"}).raise_for_status()
                photo_call(c, payloads[-10:])(i)
            photo = series(photo_call(c, payloads), n, [os.getpid()])
            text = series(text_call(c, queries), n, [os.getpid()])
    finally:
        if front is not None:
            front.stop()
        serve.shutdown()
        ray.shutdown()
        server.stop()

    floor = load_floor(args.floor)
    cpu_above = None
    if floor is not None:
        cpu_above = round(photo["request_path_cpu_ms"] - forward["cpu_ms"]
                          - floor["photo"]["request_path_cpu_ms"], 3)
    judged = verdicts(
        text_p50=text["p50_ms"], photo_p50=photo["p50_ms"], encode=encode["p50_ms"],
        forward=forward["p50_ms"], text_search=text_search["p50_ms"],
        photo_search=photo_search["p50_ms"],
        floor_text=floor["text"]["p50_ms"] if floor else None,
        floor_photo=floor["photo"]["p50_ms"] if floor else None, cpu_above_floor=cpu_above)
    result = {
        "machine": host(), "command": " ".join(["python", *sys.argv]),
        "load_avg_before": load_before, "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "products": args.products, "requests": n, "model_threads": args.model_threads,
        "raw": {"text_encode": encode, "image_forward": forward,
                "store_search_text": text_search, "store_search_image": photo_search},
        "app": {"photo": photo, "text": text},
        "floor": None if floor is None else {
            "file": str(args.floor), "machine": floor.get("machine"),
            "load_avg": floor.get("load_avg"), "photo_p50_ms": floor["photo"]["p50_ms"],
            "text_p50_ms": floor["text"]["p50_ms"],
            "photo_request_path_cpu_ms": floor["photo"]["request_path_cpu_ms"]},
        "targets": judged,
    }
    print(table(result))
    print("wrote", write_result("latency_one_client", result))
    return 0


def table(r: dict[str, Any]) -> str:
    t, raw = r["targets"], r["raw"]
    rows = [
        f"machine {r['machine']}; load average {r['load_avg_before']} -> {r['load_avg_after']}",
        f"$ {r['command']}", "",
        "| figure | measured | limit | met |", "|---|---|---|---|",
        (f"| text p50 (encode {raw['text_encode']['p50_ms']} + search "
         f"{raw['store_search_text']['p50_ms']} ms; x{t['text']['over_parts']}) "
         f"| {t['text']['p50_ms']} ms | {t['text']['limit_ms']} ms | {t['text']['met']} |"),
        (f"| photo p50 (forward {raw['image_forward']['p50_ms']} + search "
         f"{raw['store_search_image']['p50_ms']} ms; x{t['photo']['over_parts']}) "
         f"| {t['photo']['p50_ms']} ms | {t['photo']['limit_ms']} ms | {t['photo']['met']} |"),
        (f"| text p99 / photo p99 | {r['app']['text']['p99_ms']} / "
         f"{r['app']['photo']['p99_ms']} ms | | |")]
    if "photo_cpu_above_floor" in t:
        c = t["photo_cpu_above_floor"]
        rows.append(f"| photo search CPU above the floor, per request | {c['ms']} ms "
                    f"| {c['limit_ms']} ms | {c['met']} |")
    else:
        rows.append("| photo search CPU above the floor | no floor file: run "
                    "bench/p9_floor.py --one-client first | | |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
