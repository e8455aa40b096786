"""Soak: the Serve app under moderate mixed load for 10 minutes; memory must stay flat.

    python -m bench.soak --minutes 10 --rate 12 --concurrency 4

Starts the app on a private local Ray (bench/serve_local.py) over the demo catalogue, runs a
paced mix of reads and writes (bench/stress.py), and samples the resident memory of every
process of that Ray session (psutil: the launcher and all its descendants - GCS, raylet, the
Serve controller, proxy and replicas) every --sample seconds. Pass: RSS growth from the start
of the measured window to its end < 10 % and not one failed request. A warm-up comes first,
so model loading and first-request allocations are not counted as growth. Not run in CI.
Writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

try:
    import psutil
except ImportError:  # not a project dependency; Ray vendors it and puts it on sys.path
    import psutil
    import ray  # noqa: F401

from bench.p5_compare import RESULTS, ROOT, prepare_store, stop, wait_ready
from bench.stress import LoadConfig, format_table, parse_mix, run_load
from lookalike.ports import free_port

ADMIN_KEY = "soak-admin-key-0123"


def ray_rss(root_pid: int) -> tuple[int, int]:
    """(sum of RSS in bytes, number of processes) over root_pid and all its descendants."""
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    total = n = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
            n += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total, n


async def sample_rss(root_pid: int, every_s: float, out: list[dict[str, float]],
                     stop_event: asyncio.Event) -> None:
    start = time.monotonic()
    while not stop_event.is_set():
        rss, n = ray_rss(root_pid)
        out.append({"t_s": round(time.monotonic() - start, 1), "rss_mb": round(rss / 2**20, 1),
                    "processes": n})
        try:
            await asyncio.wait_for(stop_event.wait(), every_s)
        except asyncio.TimeoutError:
            pass


async def soak(cfg: LoadConfig, root_pid: int, every_s: float) -> tuple[dict, list[dict]]:
    samples: list[dict[str, float]] = []
    done = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(root_pid, every_s, samples, done))
    try:
        report = await run_load(cfg)
    finally:
        done.set()
        await sampler
    return report, samples


def verdict(report: dict[str, Any], samples: list[dict[str, float]], warmup_s: float,
            max_growth: float) -> dict[str, Any]:
    window = [s for s in samples if s["t_s"] >= warmup_s] or samples
    first, last = window[0], window[-1]
    growth = (last["rss_mb"] - first["rss_mb"]) / first["rss_mb"] if first["rss_mb"] else None
    failed = report["requests"] - report["ok"]
    return {"rss_start_mb": first["rss_mb"], "rss_end_mb": last["rss_mb"],
            "rss_max_mb": max(s["rss_mb"] for s in window),
            "processes_start": first["processes"], "processes_end": last["processes"],
            "rss_growth": None if growth is None else round(growth, 4),
            "failed_requests": failed,
            "pass": growth is not None and growth < max_growth and failed == 0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before the window")
    p.add_argument("--rate", type=float, default=12.0, help="requests/s (moderate: ~1/4 of P5)")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--mix", default="image=4,text=3,hybrid=1,similar=1,write=1")
    p.add_argument("--products", type=int, default=1000)
    p.add_argument("--sample", type=float, default=10.0, help="seconds between RSS samples")
    p.add_argument("--max-growth", type=float, default=0.10)
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/lookalike-p5"))
    p.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = p.parse_args(argv)
    if not 0 < args.minutes <= 60:
        raise SystemExit("--minutes must be in (0, 60]")

    from lookalike.store.lite_server import LiteServer

    RESULTS.mkdir(parents=True, exist_ok=True)
    data_dir, lite_port, port = args.data_dir.resolve(), free_port(), free_port()
    collection = f"p5_{args.products}"
    prepare_store(data_dir, lite_port, args.products, collection)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "LOOKALIKE_DATA_DIR": str(data_dir), "LOOKALIKE_LITE_PORT": str(lite_port),
           "LOOKALIKE_COLLECTION": collection, "LOOKALIKE_ADMIN_KEY": ADMIN_KEY,
           "PYTHONPATH": str(ROOT)}
    url = f"http://127.0.0.1:{port}"
    # Warm-up and window are one continuous run, so the load never pauses between them.
    cfg = LoadConfig(url=url, concurrency=args.concurrency,
                     duration_s=args.warmup + args.minutes * 60, mix=parse_mix(args.mix),
                     admin_key=ADMIN_KEY, rate=args.rate, max_requests=10_000_000)
    log_path = RESULTS / "soak_server.log"
    try:
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.serve_local", "--port", str(port),
                 "--num-cpus", str(os.cpu_count() or 2),
                 "--max-lifetime", str(args.warmup + args.minutes * 60 + 600)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                wait_ready(url, proc, timeout_s=300)
                report, samples = asyncio.run(soak(cfg, proc.pid, args.sample))
            finally:
                stop(proc)
    finally:
        LiteServer(data_dir, lite_port).stop()
    result = {"config": {k: v for k, v in vars(args).items() if k not in ("out", "data_dir")},
              **verdict(report, samples, args.warmup, args.max_growth),
              "load": report, "rss_samples": samples}
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(format_table(report))
    print(json.dumps({k: v for k, v in result.items() if k not in ("load", "rss_samples")},
                     indent=2, default=str))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
