"""P4: the embedded store at scale, patched vs unpatched milvus-lite vs plain faiss HNSW.

    .venv/bin/python bench/p4_store.py                                # 200k x 1280 and 200k x 384
    .venv/bin/python bench/p4_store.py --sets 1280:50000,384:200000 --ef-construction 64

Per (dim, n) set: n clustered synthetic vectors (1,000 Gaussian centres + noise, normalised)
and 500 held-out queries from the same centres, written with MilvusClient.insert into a
minimal collection (VARCHAR pk + one vector, HNSW, COSINE) on a lookalike-launched
milvus-lite server (LiteServer -> lite_launcher, i.e. patched). Flush, wait until
MilvusStore-style index progress says every row is indexed, then over gRPC: p50/p99 latency
of top-10 searches, recall@10 against exact numpy search, QPS with 1 and 4 client threads,
insert rate, time until the index is ready.

faiss side by side: the HNSW index files the server itself built are loaded with
faiss.read_index and searched in this process (same graphs, same ef; per-segment results
merged), so the gap is exactly what milvus-lite + gRPC add. --faiss-build also builds a fresh
faiss index in-process (slow on 2 cores at 1280-d). Then the server is restarted on the same
data directory with LOOKALIKE_LITE_PATCH=0 and fewer queries are timed unpatched.

Prints a markdown table and writes JSON to bench/results/ (gitignored). Not collected by
pytest (bench/ is outside testpaths).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient

from lookalike.config import Settings
from lookalike.ports import free_port
from lookalike.store.lite_server import LiteServer

K = 10




def clustered(rng: np.random.Generator, n: int, dim: int, centres: np.ndarray,
              noise: float) -> np.ndarray:
    """Points around random centres; noise is the expected norm of the offset."""
    x = centres[rng.integers(0, len(centres), size=n)]
    x = x + rng.standard_normal((n, dim)).astype(np.float32) * (noise / np.sqrt(dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_data(n: int, dim: int, n_queries: int, clusters: int, noise: float, seed: int
              ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + dim)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return clustered(rng, n, dim, centres, noise), clustered(rng, n_queries, dim, centres, noise)


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), 50):
        sims = queries[s:s + 50] @ base.T
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        out[s:s + 50] = np.take_along_axis(part, order, axis=1)
    return out


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k]) & set(t)) / k for f, t in zip(found, truth)]))


def latency(fn: Callable[[int], list[int]], n_queries: int) -> tuple[dict[str, float], list]:
    times, found = [], []
    for i in range(n_queries):
        t = time.perf_counter()
        found.append(fn(i))
        times.append((time.perf_counter() - t) * 1e3)
    a = np.asarray(times)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "n": n_queries}, found


def qps(make_fn: Callable[[], Callable[[int], Any]], n_queries: int, clients: int,
        seconds: float) -> float:
    """Queries per second with *clients* threads, each with its own connection."""
    fns = [make_fn() for _ in range(clients)]
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def run(c: int) -> None:
        i = c
        while time.monotonic() < stop:
            fns[c](i % n_queries)
            counts[c] += 1
            i += clients

    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - t0)


def create(client: MilvusClient, name: str, dim: int, settings: Settings) -> None:
    if client.has_collection(name):
        client.drop_collection(name)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=16)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=dim)
    index = client.prepare_index_params()
    # Nested params: the only form that reaches milvus-lite through pymilvus 3.0.2.
    index.add_index(field_name="v", index_type="HNSW", metric_type="COSINE",
                    params={"params": {"M": settings.hnsw_m,
                                       "efConstruction": settings.hnsw_ef_construction}})
    client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
    client.load_collection(name)


def ingest(client: MilvusClient, name: str, base: np.ndarray, batch: int) -> float:
    t0 = time.perf_counter()
    for s in range(0, len(base), batch):
        client.insert(name, [{"pk": str(i), "v": base[i].tolist()}
                             for i in range(s, min(len(base), s + batch))])
        if (s // batch) % 25 == 0:
            done = min(len(base), s + batch)
            print(f"  {name}: {done}/{len(base)} ({done / (time.perf_counter() - t0):.0f} rows/s)",
                  flush=True)
    return time.perf_counter() - t0


def wait_indexed(client: MilvusClient, name: str, timeout_s: float) -> bool:
    """The same check as MilvusStore.wait_index_ready, on the bench's own collection."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = client.describe_index(name, index_name="v") or {}
        if info.get("state") == "Finished" and int(info.get("pending_index_rows") or 0) == 0:
            return True
        time.sleep(1.0)
    return False


def searcher(uri: str, name: str, queries: np.ndarray, ef: int,
             token: str = "") -> Callable[[], Callable]:
    def make() -> Callable[[int], list[int]]:
        client = MilvusClient(uri=uri, token=token)
        params = {"metric_type": "COSINE", "params": {"ef": ef}}

        def run(i: int) -> list[int]:
            res = client.search(name, data=[queries[i].tolist()], anns_field="v", limit=K,
                                search_params=params, consistency_level="Strong")
            return [int(h["pk"]) for h in res[0]]
        return run
    return make


def server_faiss(db_dir: Path, name: str, queries: np.ndarray, truth: np.ndarray, ef: int,
                 n_queries: int) -> dict[str, Any]:
    """Search the HNSW files the server built, in this process: same graphs, no milvus-lite."""
    import faiss
    import pyarrow.parquet as pq

    parts = []
    for idx_file in sorted(db_dir.rglob("*.v.hnsw.idx")):
        if f"/{name}/" not in str(idx_file):
            continue
        stem = idx_file.name.split(".v.hnsw.idx")[0]
        data_file = next(idx_file.parent.parent.rglob(f"{stem}.parquet"), None)
        if data_file is None:
            continue  # sidecar of a compacted-away segment
        pk_col = pq.read_table(data_file, columns=["pk"])["pk"].to_pylist()
        pks = np.asarray([int(p) for p in pk_col])
        index = faiss.read_index(str(idx_file))
        index.hnsw.efSearch = ef
        parts.append((index, pks))
    faiss.omp_set_num_threads(1)  # one query, one thread: like one server request

    def run(i: int) -> list[int]:
        q = queries[i:i + 1]
        found = []
        for index, pks in parts:
            d, ids = index.search(q, K)
            found += [(-float(dd), int(pks[j])) for dd, j in zip(d[0], ids[0]) if j >= 0]
        return [pk for _, pk in sorted(found)[:K]]

    lat, found = latency(run, n_queries)
    out = {**lat, "recall@10": recall(found, truth[:n_queries]), "segments": len(parts),
           "qps_1": qps(lambda: run, n_queries, 1, 3.0)}
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    return out


def fresh_faiss(base: np.ndarray, queries: np.ndarray, truth: np.ndarray, settings: Settings,
                n_queries: int) -> dict[str, Any]:
    import faiss

    index = faiss.IndexHNSWFlat(base.shape[1], settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = settings.hnsw_ef_construction
    t = time.perf_counter()
    index.add(base)
    build_s = time.perf_counter() - t
    index.hnsw.efSearch = settings.search_ef
    faiss.omp_set_num_threads(1)

    def run(i: int) -> list[int]:
        return index.search(queries[i:i + 1], K)[1][0].tolist()

    lat, found = latency(run, n_queries)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    return {**lat, "recall@10": recall(found, truth[:n_queries]), "build_s": build_s}


def store_path(settings: Settings, n: int, n_queries: int, args: argparse.Namespace
               ) -> dict[str, Any]:
    """The product path: MilvusStore over the product schema (1280-d image + 384-d text per
    row, category partition key, group by product, product fields returned)."""
    from lookalike.catalog.product import Product
    from lookalike.store.base import StoredProduct
    from lookalike.store.milvus import MilvusStore

    img, img_q = make_data(n, 1280, n_queries, args.clusters, args.noise, args.seed + 1)
    txt, txt_q = make_data(n, 384, n_queries, args.clusters, args.noise, args.seed + 2)
    cats = ["tops", "dresses", "shoes", "bags", "coats", "trousers", "knitwear", "skirts"]
    store = MilvusStore.from_settings(settings.model_copy(update={"collection": "p4_products"}),
                                      image_dim=1280, text_dim=384)
    store.ensure_collection()
    t = time.perf_counter()
    for s in range(0, n, 500):
        store.upsert([StoredProduct(Product(product_id=str(i), title=f"product {i}",
                                            category=cats[i % len(cats)], price=10.0),
                                    img[i:i + 1], txt[i], content_hash="h", model_version="b")
                      for i in range(s, min(n, s + 500))])
    ingest_s = time.perf_counter() - t
    store.flush()
    t = time.perf_counter()
    ready = store.wait_index_ready(timeout_s=args.index_timeout, poll_s=1.0)
    out: dict[str, Any] = {"n": n, "insert_rows_per_s": n / ingest_s, "index_ready": ready,
                           "index_ready_after_flush_s": time.perf_counter() - t}
    for field, base, queries in (("image_vector", img, img_q), ("text_vector", txt, txt_q)):
        truth = exact_topk(base, queries, K)

        def run(i: int, field: str = field, queries: np.ndarray = queries) -> list[int]:
            hits = store.search(**{field: queries[i]}, top_k=K)
            return [int(h.product.product_id) for h in hits]

        for i in range(10):
            run(i)
        lat, found = latency(run, n_queries)
        out[field] = {**lat, "recall@10": recall(found, truth)}
        print(f"  store path {field}: {out[field]}", flush=True)
    store.drop()
    store.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sets", default="1280:200000,384:200000", help="dim:n,dim:n")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--unpatched-queries", type=int, default=30)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--noise", type=float, default=0.6, help="norm of the offset from a centre")
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--ef-construction", type=int, default=None,
                    help="override LOOKALIKE_HNSW_EF_CONSTRUCTION (build time on 2 cores)")
    ap.add_argument("--qps-seconds", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--faiss-build", action="store_true", help="also build a fresh faiss index")
    ap.add_argument("--index-timeout", type=float, default=1800)
    ap.add_argument("--store-n", type=int, default=0,
                    help="also time the product path (MilvusStore) on this many products")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()

    sets = [tuple(int(x) for x in item.split(":")) for item in args.sets.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="p4_store_"))
    overrides = {"hnsw_ef_construction": args.ef_construction} if args.ef_construction else {}
    settings = Settings(data_dir=workdir, lite_port=free_port(), port=free_port(),
                        admin_key="bench-admin-key-0123", **overrides)
    result: dict[str, Any] = {
        "queries": args.queries, "clusters": args.clusters, "noise": args.noise,
        "index": {"type": "HNSW", "M": settings.hnsw_m,
                  "efConstruction": settings.hnsw_ef_construction, "ef": settings.search_ef},
        "cpus": os.cpu_count(), "load_avg_start": os.getloadavg(), "sets": {}}
    data = {}
    for dim, n in sets:
        base, queries = make_data(n, dim, args.queries, args.clusters, args.noise, args.seed)
        t = time.perf_counter()
        data[dim] = (base, queries, exact_topk(base, queries, K))
        print(f"data {n} x {dim}: exact top-{K} in {time.perf_counter() - t:.1f}s", flush=True)

    server = LiteServer(workdir, settings.lite_port)
    uri = server.uri
    try:
        os.environ["LOOKALIKE_LITE_PATCH"] = "1"
        server.ensure_running()
        client = MilvusClient(uri=uri, token=server.token())
        for dim, n in sets:
            name = f"p4_{dim}_{n}"
            base, queries, truth = data[dim]
            create(client, name, dim, settings)
            ingest_s = ingest(client, name, base, args.batch)
            t = time.perf_counter()
            client.flush(name)
            flush_s = time.perf_counter() - t
            t = time.perf_counter()
            ready = wait_indexed(client, name, args.index_timeout)
            ready_s = time.perf_counter() - t
            r: dict[str, Any] = {"dim": dim, "n": n, "insert_rows_per_s": n / ingest_s,
                                 "ingest_s": ingest_s, "flush_s": flush_s, "index_ready": ready,
                                 "index_ready_after_flush_s": ready_s}
            print(f"{name}: insert {n / ingest_s:.0f} rows/s, index ready {ready} after "
                  f"{ready_s:.0f}s", flush=True)
            make = searcher(uri, name, queries, settings.search_ef, server.token())
            fn = make()
            for i in range(20):
                fn(i)  # warm connection and caches
            lat, found = latency(fn, args.queries)
            r["patched"] = {**lat, "recall@10": recall(found, truth),
                            "qps_1": qps(make, args.queries, 1, args.qps_seconds),
                            "qps_4": qps(make, args.queries, 4, args.qps_seconds)}
            print(f"  patched: {r['patched']}", flush=True)
            result["sets"][name] = r
        client.close()
        if args.store_n:
            result["store_path"] = store_path(settings, args.store_n, args.queries, args)
        server.stop()

        for dim, n in sets:
            name = f"p4_{dim}_{n}"
            base, queries, truth = data[dim]
            r = result["sets"][name]
            r["faiss_server_files"] = server_faiss(server.db_dir, name, queries, truth,
                                                   settings.search_ef, args.queries)
            print(f"  faiss on the server's files: {r['faiss_server_files']}", flush=True)
            if args.faiss_build:
                r["faiss_fresh"] = fresh_faiss(base, queries, truth, settings, args.queries)
                print(f"  fresh faiss: {r['faiss_fresh']}", flush=True)

        # Same data directory, unpatched (cold start loads the index files already built).
        os.environ["LOOKALIKE_LITE_PATCH"] = "0"
        server.ensure_running(timeout_s=600)
        client = MilvusClient(uri=uri, token=server.token())
        for dim, n in sets:
            name = f"p4_{dim}_{n}"
            base, queries, truth = data[dim]
            client.load_collection(name)
            fn = searcher(uri, name, queries, settings.search_ef, server.token())()
            fn(0)
            lat, found = latency(fn, args.unpatched_queries)
            result["sets"][name]["unpatched"] = {
                **lat, "recall@10": recall(found, truth[:args.unpatched_queries])}
            print(f"  {name} unpatched: {result['sets'][name]['unpatched']}", flush=True)
        client.close()
    finally:
        server.stop()
        os.environ.pop("LOOKALIKE_LITE_PATCH", None)
        shutil.rmtree(workdir, ignore_errors=True)

    result["load_avg_end"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"p4_store_{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"\nJSON: {path}")
    return 0


def table(r: dict[str, Any]) -> str:
    ix = r["index"]
    lines = [(f"\nP4 store: {r['queries']} queries, HNSW M={ix['M']} efC={ix['efConstruction']} "
              f"ef={ix['ef']}, {r['cpus']} CPUs, load avg {r['load_avg_start'][0]:.1f} at start\n"),
             ("| set | insert rows/s | index ready after flush s | path | p50 ms | p99 ms | "
              "recall@10 | QPS 1 | QPS 4 |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for s in r["sets"].values():
        for path in ("patched", "unpatched", "faiss_server_files", "faiss_fresh"):
            m = s.get(path)
            if not m:
                continue
            lines.append(
                f"| {s['n']:,} x {s['dim']} | {s['insert_rows_per_s']:.0f} | "
                f"{s['index_ready_after_flush_s']:.0f} | {path} (n={m['n']}) | {m['p50_ms']:.2f} | "
                f"{m['p99_ms']:.2f} | {m['recall@10']:.3f} | {m.get('qps_1', float('nan')):.0f} | "
                f"{m.get('qps_4', float('nan')):.0f} |")
    sp = r.get("store_path")
    if sp:
        lines.append(f"\nProduct path (MilvusStore.search, group by product, 16 partition-key "
                     f"partitions), {sp['n']:,} products, insert {sp['insert_rows_per_s']:.0f} "
                     f"products/s, index ready {sp['index_ready_after_flush_s']:.0f} s after flush:")
        for field in ("image_vector", "text_vector"):
            m = sp[field]
            lines.append(f"- {field}: p50 {m['p50_ms']:.2f} ms, p99 {m['p99_ms']:.2f} ms, "
                         f"recall@10 {m['recall@10']:.3f} (n={m['n']})")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
