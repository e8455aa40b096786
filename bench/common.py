"""Bench helpers: machine description, loopback-only targets, latency stats, a demo catalogue
loaded in-process (the same embedders as the app)."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def host() -> dict[str, Any]:
    """CPU model, cores and RAM (no heavy imports)."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(mem, 1)}


def machine() -> dict[str, Any]:
    import torch

    return {**host(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "host": socket.gethostname()}


def require_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
        raise SystemExit(f"refusing to load a non-loopback target: {url}")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summary_ms(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {"p50_ms": round(pct(ms, 50), 3), "p95_ms": round(pct(ms, 95), 3),
            "p99_ms": round(pct(ms, 99), 3), "mean_ms": round(statistics.fmean(ms), 3) if ms else 0.0,
            "n": len(ms)}


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def _one_thread_worker(paths: list[str], batch: int, seconds: float, start, out) -> None:
    """A child process: one torch thread, embeds `batch` images at a time for `seconds`."""
    import torch

    from lookalike.embedding import ImageEmbedder
    from lookalike.images import decode_image

    torch.set_num_threads(1)
    embedder = ImageEmbedder()
    images = [decode_image(Path(p).read_bytes()) for p in paths]
    embedder.embed(images[:batch])  # warm-up
    start.wait()  # every child loaded: they run side by side
    done, stop = 0, time.perf_counter() + seconds
    while time.perf_counter() < stop:
        embedder.embed([images[(done + i) % len(images)] for i in range(batch)])
        done += batch
    out.put(done / seconds)


def raw_image_processes(paths: list[str], processes: int, batch: int, seconds: float = 15.0) -> float:
    """img/s summed over `processes` one-thread processes running at once (how the app's
    one-thread replicas use the cores)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_one_thread_worker, args=(paths, batch, seconds, start, out))
             for _ in range(processes)]
    for proc in procs:
        proc.start()
    rates = [out.get(timeout=seconds + 300) for _ in procs]
    for proc in procs:
        proc.join()
    return round(sum(rates), 2)
