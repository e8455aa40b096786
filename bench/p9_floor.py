"""P9: the floor of the fixed shape. What one image search costs outside the model on this
machine when the model costs nothing, measured as bench/p1_p2_serve.py measures the app.

    .venv/bin/python bench/p9_floor.py [--products 500] [--duration 20] [--concurrency 16]
    .venv/bin/python bench/p9_floor.py --one-client 200 [--products 500]

The app's topology with its work taken out: serve_config.yaml's SearchRouter and
ImageEmbedderDeployment (their replicas, CPUs, queue bounds and batching), the front proxy
routing to the ingress replicas' own ports, Ray tuned as `lookalike serve` runs it
(launch/local_ray.py). The "model" answers a stored product vector picked by the photo's bytes,
so it costs nothing but its call. Three levels, each adding one part every image search of
that shape needs:

  http    the upload parsed (multipart), a JSON answer
  handle  + the photo decoded and resized as the router does it, and sent through a
          DeploymentHandle to the batched embedder deployment
  store   + one grouped vector search of milvus-lite with the top 10's product fields (the
          demo catalogue, flushed and indexed)

Issue 16 asks for <= 8 ms of CPU per image search outside the model, and for P1 >= 0.85, which
leaves the non-model parts 0.18 x the model's CPU per image. This bench shows what the shape
itself costs before the app does anything of its own. Writes bench/results/p9_floor.json.

--one-client N: the "store" level's latency for one client instead of its throughput (issue 29):
N photo searches and N text searches (GET /v1/search?q=, the text through a no-model
TextEmbedderDeployment, one store search of the text vectors), one after the other; p50/p99
and the CPU of this bench's own processes per request by role (bench/one_client.py). That is
the floor lookalike's one-client latency is held to (bench/latency.py). Writes
bench/results/p9_floor_one_client.json.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import zlib

import numpy as np
import yaml
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from bench.common import host, saturation, write_result
from bench.one_client import distinct_queries, photo_call, series, text_call

LEVELS = ("http", "handle", "store")
FIELDS = ["product_id", "title", "category", "color", "size", "price", "images"]


@serve.deployment(name="ImageEmbedderDeployment")
class NoModel:
    """The image deployment's call (batched, as the real one) without the model."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors

    def reconfigure(self, config: dict[str, Any]) -> None:
        self.embed.set_max_batch_size(int(config["max_batch_size"]))
        self.embed.set_batch_wait_timeout_s(float(config["batch_wait_timeout_s"]))

    @serve.batch
    async def embed(self, images: list[Any]) -> list[np.ndarray]:
        return [self.vectors[int(np.asarray(img)[0, :8].sum()) % len(self.vectors)]
                for img in images]


@serve.deployment(name="TextEmbedderDeployment")
class NoTextModel:
    """The text deployment's call (batched, as the real one) without the model."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors

    def reconfigure(self, config: dict[str, Any]) -> None:
        self.embed.set_max_batch_size(int(config["max_batch_size"]))
        self.embed.set_batch_wait_timeout_s(float(config["batch_wait_timeout_s"]))

    @serve.batch
    async def embed(self, texts: list[str]) -> list[np.ndarray]:
        return [self.vectors[zlib.crc32(t.encode()) % len(self.vectors)] for t in texts]


@serve.deployment(name="SearchRouter")
class FloorRouter:
    """Serve's plain HTTP handler (`__call__` gets the request): no web framework at all."""

    def __init__(self, model: Any, level: str, lite_uri: str, collection: str,
                 token_file: str = "", text_model: Any = None) -> None:
        from pymilvus import MilvusClient

        from lookalike.images import decode_image, resize_short_side

        self.model, self.level, self.collection = model, level, collection
        self.text_model = text_model
        self.decode, self.resize = decode_image, resize_short_side
        # The server's token, read from its file here: Serve prints deployment arguments.
        token = Path(token_file).read_text().strip() if token_file else ""
        self.client = MilvusClient(uri=lite_uri, token=token) if level == "store" else None

    def _prepare(self, data: bytes) -> Any:
        return self.resize(self.decode(data, min_short_side=256), 256)

    async def __call__(self, request: Request) -> JSONResponse:
        if request.method == "GET" and self.text_model is not None:
            vector = await self.text_model.embed.remote(request.query_params["q"])
            return JSONResponse({"results": await self._search(vector, "text_vector")})
        form = await request.form()
        data = await form["image"].read()  # type: ignore[union-attr]
        if self.level == "http":
            return JSONResponse({"results": [], "bytes": len(data)})
        image = await asyncio.to_thread(self._prepare, data)
        vector = await self.model.embed.remote(image)
        if self.level == "handle":
            return JSONResponse({"results": [], "dim": len(vector)})
        return JSONResponse({"results": await self._search(vector, "image_vector")})

    async def _search(self, vector: np.ndarray, field: str) -> list[dict[str, Any]]:
        hits = await asyncio.to_thread(
            self.client.search, self.collection, data=[vector.tolist()],
            anns_field=field, limit=10, output_fields=FIELDS,
            group_by_field="product_id", search_params={"metric_type": "COSINE"})
        return [h["entity"] for h in hits[0]]


def deployment_options(name: str) -> dict[str, Any]:
    """serve_config.yaml's options for one deployment, as Serve applies them (the app's
    runtime_env included: it sets how Ray passes the image to the embedder)."""
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    (app,) = config["applications"]
    dep = next(d for d in app["deployments"] if d["name"] == name)
    scaling = dep.get("autoscaling_config") or {}
    out = {k: dep[k] for k in ("max_ongoing_requests", "max_queued_requests", "user_config")
           if k in dep}
    out["ray_actor_options"] = {**dep.get("ray_actor_options", {}),
                                "runtime_env": app.get("runtime_env", {})}
    out["num_replicas"] = scaling.get("min_replicas", dep.get("num_replicas", 1))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--products", type=int, default=500)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--levels", nargs="+", choices=LEVELS, default=list(LEVELS))
    ap.add_argument("--one-client", type=int, default=0, metavar="N",
                    help="one client, N photo and N text searches at the store level")
    args = ap.parse_args()
    if args.one_client:
        args.levels = ["store"]

    from ray.serve.context import _get_global_client

    from lookalike.catalog import demo, load_manifest
    from lookalike.config import Settings
    from lookalike.embedding import ImageEmbedder, TextEmbedder
    from lookalike.indexing import batched, embed_products
    from lookalike.launch.front_proxy import FrontProxy
    from lookalike.launch.local_ray import init_local
    from lookalike.launch.serving import APP_NAME, ingress_ports
    from lookalike.ports import free_port
    from lookalike.store import MilvusStore
    from lookalike.store.lite_server import LiteServer

    # The demo catalogue in milvus-lite, as bench/p1_p2_serve.py builds it.
    work = Path(tempfile.mkdtemp(prefix="lookalike-floor-"))
    manifest = demo.build(work / "catalogue", args.products)
    products, _ = load_manifest(manifest)
    payloads = [Path(p.images[0]).read_bytes() for p in products]
    server = LiteServer(work / "data", free_port())
    server.ensure_running()
    # The server outlives this process by design (a shared store): stop it on every exit, a
    # failed set-up included (a Ray start that timed out once left it running). stop() is
    # idempotent, so the normal path's stop below is harmless.
    atexit.register(server.stop)
    settings = Settings(data_dir=work / "data", lite_port=server.port, collection="floor")
    ie, te = ImageEmbedder(), TextEmbedder()
    store = MilvusStore.from_settings(settings, image_dim=ie.dim, text_dim=te.dim)
    store.ensure_collection()
    vectors, text_vectors = [], []
    for chunk in batched(products, 64):
        items = embed_products(chunk, image_embedder=ie, text_embedder=te)
        store.upsert(items)
        vectors.extend(item.image_vectors[0] for item in items)
        text_vectors.extend(item.text_vector for item in items)
    store.flush()
    store.wait_index_ready(timeout_s=300)
    store.close()
    del ie, te
    print(f"store: {args.products} products, flushed and indexed", flush=True)

    init_local(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False)
    serve_port, port = free_port(), free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
    client = _get_global_client()
    front = FrontProxy(host="127.0.0.1", port=port, backend_port=serve_port, work_dir=work,
                       replica_ports=ingress_ports(client))
    front.start()
    url = f"http://127.0.0.1:{port}"
    model = NoModel.options(**deployment_options("ImageEmbedderDeployment"))
    router = FloorRouter.options(**deployment_options("SearchRouter"))
    results: dict[str, Any] = {}
    try:
        if args.one_client:
            text = NoTextModel.options(**deployment_options("TextEmbedderDeployment"))
            serve.run(router.bind(model.bind(np.stack(vectors)), "store",
                                  f"http://127.0.0.1:{server.port}", "floor",
                                  str(server.token_file), text.bind(np.stack(text_vectors))),
                      name=APP_NAME, route_prefix="/")
            asyncio.run(_warm(url, payloads))
            results = one_client(url, payloads, args.one_client)
            command = " ".join(["python", *sys.argv])
            load = [round(x, 2) for x in os.getloadavg()]
            print(f"machine {host()}; load average {load}\n$ {command}")
            out = write_result("p9_floor_one_client", {
                "machine": host(), "command": command, "load_avg": load,
                "products": args.products, "requests": args.one_client, **results})
            print("wrote", out)
            return 0
        for level in args.levels:
            serve.run(router.bind(model.bind(np.stack(vectors)), level,
                                  f"http://127.0.0.1:{server.port}", "floor",
                                  str(server.token_file)),
                      name=APP_NAME, route_prefix="/")
            asyncio.run(_warm(url, payloads))
            run = saturation(url, payloads, args.concurrency, args.duration)
            print(f"{level}: {run['qps']} QPS, CPU outside the model "
                  f"{run['cpu_ms_outside_model']} ms/request, by role {run['cpu_ms_per_request']}",
                  flush=True)
            results[level] = run
            # Gone before the next level starts: a replaced ingress replica keeps answering
            # for Serve's 30 s drain, and would share the next level's load.
            serve.delete(APP_NAME)
    finally:
        front.stop()
        serve.shutdown()
        server.stop()

    print("\n| level | QPS | p50 | CPU per request outside the model | router | proxies | store | Ray |")
    print("|---|---|---|---|---|---|---|---|")
    for level, run in results.items():
        ms = run["cpu_ms_per_request"]
        proxies = ms.get("Serve proxy", 0) + ms.get("front proxy (HAProxy)", 0)
        ray_own = sum(ms.get(k, 0) for k in ("Serve controller", "Ray raylet/GCS", "other"))
        print(f"| {level} | {run['qps']} | {run['p50_ms']} ms | **{run['cpu_ms_outside_model']} ms** "
              f"| {ms.get('router (ingress) replicas', 0)} ms | {proxies:.2f} ms "
              f"| {ms.get('milvus-lite server', 0)} ms | {ray_own:.2f} ms |")
    out = write_result("p9_floor", {"machine": host(), "products": args.products,
                                    "concurrency": args.concurrency, "duration_s": args.duration,
                                    "levels": results})
    print("wrote", out)
    return 0


def one_client(url: str, payloads: list[bytes], n: int) -> dict[str, Any]:
    """N photo then N text searches from one client: p50/p99 and CPU per request by role."""
    import httpx

    queries = distinct_queries()
    out: dict[str, Any] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(10):
            client.get("/v1/search", params={"q": f"warm up {i}"}).raise_for_status()
        out["photo"] = series(photo_call(client, payloads), n, [os.getpid()])
        out["text"] = series(text_call(client, queries), n, [os.getpid()])
    for kind in ("photo", "text"):
        run = out[kind]
        print(f"floor, one client, {kind}: p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, "
              f"CPU on the request path {run['request_path_cpu_ms']} ms/request, by role "
              f"{run['cpu_ms_per_request']}", flush=True)
    return out


async def _warm(url: str, payloads: list[bytes]) -> None:
    """Until the new level answers (Serve swaps the app under the same route)."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for _ in range(600):
            r = await client.post("/v1/search", files={"image": ("q.jpg", payloads[0], "image/jpeg")})
            if r.status_code == 200:
                break
            await asyncio.sleep(0.2)
        for data in payloads[:20]:
            await client.post("/v1/search", files={"image": ("q.jpg", data, "image/jpeg")})


if __name__ == "__main__":
    sys.exit(main())
