"""P8: milvus-lite server CPU per search after API-style writes, with and without the
write-flush policy (lookalike/store/flush_policy.py), against the same data settled.

    .venv/bin/python bench/p8_write_flush.py [--base 2000] [--writes 25x25] [--searches 200]

Per round, on a lookalike-launched milvus-lite server (its own data dir, loopback port):
a product collection (1280-d image + 384-d text, the app's schema) with --base products,
flushed and indexed; then --writes products written as API writes do (one small upsert after
another: 25 upserts of 25 products = the issue's 625 rows), through

  * no_policy   : a plain store (what the router did before): the rows stay in the buffer;
  * policy      : the router's store (auto_flush, default write_flush_rows/idle_s); measured
                  once the policy's idle flush has run (about write_flush_idle_s after the
                  last write): the new segment's index is then still building, and
                  the server's CPU for that build counts too (see server_idle_cpu_rate);
  * policy_indexed: the same store once that index is built (seconds after the last write
                  in indexed_s_after_last_write);
  * settled     : the same collection as no_policy, then flushed and indexed.

Each figure: server CPU-seconds (user + system of the lite_launcher process, from
/proc/PID/stat) over --searches app-style searches (MilvusStore.search: grouped by product, product
fields returned), per search, in ms; plus the server's CPU rate while idle just before, so
background index building shows. Rounds repeat the whole thing (--rounds, default 2).
Writes bench/results/p8_write_flush.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.common import host, write_result
from lookalike.catalog.product import Product
from lookalike.config import Settings
from lookalike.ports import free_port
from lookalike.store.base import StoredProduct
from lookalike.store.lite_server import LiteServer
from lookalike.store.milvus import MilvusStore

IMG, TXT = 1280, 384
CATS = ["tops", "dresses", "shoes", "bags", "coats", "trousers", "knitwear", "skirts"]


def server_process(lite: LiteServer) -> int:
    """PID of the lite_launcher process the supervisor runs (read from /proc, no psutil)."""
    sup = str(lite.supervisor_pid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if fields[1] == sup and "lite_launcher" in cmd:
            return int(stat.parent.name)
    raise RuntimeError("no lite_launcher process under the supervisor")


def cpu_s(pid: int) -> float:
    """user + system CPU seconds of the process and its threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def products(rng: np.random.Generator, start: int, n: int) -> list[StoredProduct]:
    img, txt = unit(rng, n, IMG), unit(rng, n, TXT)
    return [StoredProduct(Product(product_id=f"p{start + i}", title=f"product {start + i}",
                                  category=CATS[(start + i) % len(CATS)], price=10.0,
                                  images=(f"/img/{start + i}.jpg",)),
                          img[i:i + 1], txt[i], "h", "bench")
            for i in range(n)]


def measure(store: MilvusStore, proc: int, queries: np.ndarray) -> dict[str, float]:
    c0, t0 = cpu_s(proc), time.perf_counter()
    time.sleep(1.0)
    idle_rate = (cpu_s(proc) - c0) / (time.perf_counter() - t0)
    c0, t0 = cpu_s(proc), time.perf_counter()
    for q in queries:
        store.search(image_vector=q, top_k=10)
    wall = time.perf_counter() - t0
    used = cpu_s(proc) - c0
    return {"server_cpu_ms_per_search": round(used / len(queries) * 1000, 3),
            "wall_ms_per_search": round(wall / len(queries) * 1000, 3),
            "server_idle_cpu_rate": round(idle_rate, 3), "searches": len(queries)}


def fill_base(store: MilvusStore, rng: np.random.Generator, n: int) -> None:
    store.ensure_collection()
    for s in range(0, n, 500):
        store.upsert(products(rng, s, min(500, n - s)))
    store.flush()
    if not store.wait_index_ready(timeout_s=600):
        raise RuntimeError("base index not ready")


def api_writes(store: MilvusStore, rng: np.random.Generator, base: int, calls: int,
               per_call: int) -> None:
    for c in range(calls):
        store.upsert(products(rng, base + c * per_call, per_call))


def one_round(lite: LiteServer, args: argparse.Namespace, r: int) -> dict[str, Any]:
    proc = server_process(lite)
    settings = Settings(data_dir=lite.data_dir, lite_port=lite.port, port=free_port(),
                        admin_key="bench-admin-key-0123")
    rng = np.random.default_rng(r)
    queries = unit(rng, args.searches, IMG)
    calls, per_call = args.writes
    out: dict[str, Any] = {}

    plain = MilvusStore.from_settings(settings.model_copy(update={"collection": f"p8_plain_{r}"}),
                                      image_dim=IMG, text_dim=TXT)
    fill_base(plain, np.random.default_rng(100 + r), args.base)
    out["settled_base"] = measure(plain, proc, queries)
    api_writes(plain, np.random.default_rng(200 + r), args.base, calls, per_call)
    out["no_policy"] = measure(plain, proc, queries)
    plain.flush()
    plain.wait_index_ready(timeout_s=600)
    out["settled"] = measure(plain, proc, queries)
    plain.drop()
    plain.close()

    auto = MilvusStore.from_settings(settings.model_copy(update={"collection": f"p8_auto_{r}"}),
                                     image_dim=IMG, text_dim=TXT, auto_flush=True)
    fill_base(auto, np.random.default_rng(100 + r), args.base)
    api_writes(auto, np.random.default_rng(200 + r), args.base, calls, per_call)
    written = time.perf_counter()
    while auto.auto_flush.policy.pending or auto.auto_flush.flushes == 0:
        time.sleep(0.05)
    flushed_after = time.perf_counter() - written
    out["policy"] = {**measure(auto, proc, queries),
                     "flushed_s_after_last_write": round(flushed_after, 3),
                     "flushes": auto.auto_flush.flushes}
    auto.wait_index_ready(timeout_s=600)
    out["policy_indexed"] = {**measure(auto, proc, queries),
                             "indexed_s_after_last_write": round(time.perf_counter() - written, 3)}
    auto.drop()
    auto.close()
    settled = out["settled"]["server_cpu_ms_per_search"]
    out["ratio_to_settled"] = {k: round(out[k]["server_cpu_ms_per_search"] / settled, 2)
                               for k in ("no_policy", "policy", "policy_indexed", "settled_base")}
    return out


def parse_writes(value: str) -> tuple[int, int]:
    calls, per_call = value.lower().split("x")
    return int(calls), int(per_call)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--base", type=int, default=2000, help="settled products before the writes")
    ap.add_argument("--writes", type=parse_writes, default=(25, 25),
                    help="CALLSxPRODUCTS API-style upserts (default 25x25 = 625 rows)")
    ap.add_argument("--searches", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    defaults = Settings()
    result: dict[str, Any] = {"host": host(), "base": args.base, "writes": list(args.writes),
                              "write_flush_rows": defaults.write_flush_rows,
                              "write_flush_idle_s": defaults.write_flush_idle_s, "rounds": []}
    with tempfile.TemporaryDirectory(prefix="p8-") as tmp:
        lite = LiteServer(Path(tmp), free_port())
        lite.ensure_running()
        try:
            for r in range(args.rounds):
                res = one_round(lite, args, r)
                result["rounds"].append(res)
                print(f"round {r}: " + ", ".join(
                    f"{k} {res[k]['server_cpu_ms_per_search']:.2f} ms"
                    for k in ("settled_base", "no_policy", "policy", "policy_indexed", "settled"))
                    + f"  ratio to settled {res['ratio_to_settled']}", flush=True)
        finally:
            lite.stop()
    result["median_ratio_to_settled"] = {
        k: statistics.median(r["ratio_to_settled"][k] for r in result["rounds"])
        for k in ("no_policy", "policy", "policy_indexed", "settled_base")}
    path = write_result("p8_write_flush", result)
    print(f"median ratio to settled: {result['median_ratio_to_settled']}\nwrote {path}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    raise SystemExit(main())
