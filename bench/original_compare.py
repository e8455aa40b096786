"""Issue 29: lookalike against the original design, photo search at 16 clients, in one run.

    python -m bench.original_compare [--products 500] [--concurrency 16] [--duration 20]

"The original design" is what a shop would build without lookalike (bench/original_app.py):
one synchronous WSGI process, the same image weights on torch, one plain store search per
request, the top 10 as JSON. Target: lookalike's QPS >= 2 x the original's, with a p99 no
worse.

How this differs from bench/p5_compare.py (P5, kept): P5's baseline is lookalike's own
FastAPI app and SearchService (the same ranking, variants and several store calls per search)
in one process without batching, so P5 measures the serving architecture alone. Here the
baseline does less work per request than lookalike (no ranking, one store call), as the
original did, so this measures what a user of lookalike gets over the simple design.

Both servers read the same milvus-lite collection (the demo catalogue, indexed once by
bench/p5_compare.prepare_store), are loaded by the same closed-loop client
(bench/common.saturate: the catalogue's photos, POST /v1/search), run one after the other as
child processes that are stopped before the next starts, and are warmed up first.
Writes bench/results/original_compare.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, host, saturate, write_result
from bench.p5_compare import prepare_store, stop, wait_ready
from lookalike.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
QPS_RATIO = 2.0


def judge(lookalike: dict[str, Any], original: dict[str, Any]) -> dict[str, Any]:
    """The target as numbers: the QPS ratio and both p99s (runs from bench.common.saturate)."""
    ratio = round(lookalike["qps"] / original["qps"], 3) if original["qps"] else None
    p99_ok = lookalike["p99_ms"] <= original["p99_ms"]
    return {"qps_ratio": ratio, "p99_ms": {"lookalike": lookalike["p99_ms"],
                                           "original": original["p99_ms"]},
            "target": f"lookalike QPS >= {QPS_RATIO} x the original's, p99 no worse",
            "met": bool(ratio is not None and ratio >= QPS_RATIO and p99_ok
                        and lookalike["errors"] == 0)}


def measure(name: str, cmd: list[str], env: dict[str, str], port: int,
            args: argparse.Namespace, payloads: list[bytes]) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}"
    log_path = RESULTS / f"original_compare_{name}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_ready(url, proc, timeout_s=300)
            asyncio.run(saturate(url, payloads, args.concurrency, args.warmup))
            load_before = [round(x, 2) for x in os.getloadavg()]
            run = asyncio.run(saturate(url, payloads, args.concurrency, args.duration))
        finally:
            stop(proc)
    run["load_avg_before"] = load_before
    run["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"{name}: {run['qps']} QPS, p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, "
          f"errors {run['errors']}", flush=True)
    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--products", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/lookalike-original"),
                   help="milvus-lite data and the demo catalogue (reused between runs)")
    p.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1,
                   help="the original's torch threads (default every core: its best on a calm "
                        "machine; on an oversubscribed one 2-thread torch collapses, ~9x slower "
                        "per request, so use 1 there and say so)")
    args = p.parse_args(argv)

    from lookalike.catalog import load_manifest
    from lookalike.store.lite_server import LiteServer

    RESULTS.mkdir(parents=True, exist_ok=True)
    data_dir, lite_port = args.data_dir.resolve(), free_port()
    collection = f"original_{args.products}"
    n = prepare_store(data_dir, lite_port, args.products, collection)
    products, _ = load_manifest(data_dir / "catalogue" / "manifest.jsonl")
    payloads = [Path(p.images[0]).read_bytes() for p in products]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "LOOKALIKE_DATA_DIR": str(data_dir), "LOOKALIKE_LITE_PORT": str(lite_port),
           "LOOKALIKE_COLLECTION": collection, "PYTHONPATH": str(ROOT)}
    started = time.time()
    out: dict[str, Any] = {"machine": host(), "command": " ".join(["python", "-m",
                                                                   "bench.original_compare",
                                                                   *(argv or sys.argv[1:])]),
                           "products": n, "concurrency": args.concurrency,
                           "duration_s": args.duration, "original_torch_threads": args.torch_threads}
    try:
        port = free_port()
        out["original"] = measure(
            "original", [sys.executable, "-m", "bench.original_app", "--port", str(port),
                         "--torch-threads", str(args.torch_threads)], env, port, args, payloads)
        port = free_port()
        out["lookalike"] = measure(
            "lookalike", [sys.executable, "-m", "bench.serve_local", "--port", str(port),
                          "--num-cpus", str(os.cpu_count() or 2), "--max-lifetime", "1800"],
            env, port, args, payloads)
    finally:
        LiteServer(data_dir, lite_port).stop()
    out["seconds"] = round(time.time() - started, 1)
    out.update(judge(out["lookalike"], out["original"]))
    print(f"machine {out['machine']}\n$ {out['command']}\n"
          f"QPS ratio {out['qps_ratio']} (target >= {QPS_RATIO}), p99 {out['p99_ms']}, "
          f"met: {out['met']}")
    print("wrote", write_result("original_compare", out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
