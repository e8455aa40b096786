"""Bench helpers: machine description, loopback-only targets, latency stats, a demo catalogue
loaded in-process (the same embedders as the app)."""

from __future__ import annotations

import asyncio
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


async def saturate(url: str, payloads: list[bytes], concurrency: int, duration: float) -> dict:
    """Closed-loop image searches (POST /v1/search, multipart) from `concurrency` clients."""
    import httpx

    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + duration
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(
            max_connections=concurrency, max_keepalive_connections=concurrency)) as client:
        async def worker(w: int) -> None:
            nonlocal errors
            i = w
            while time.perf_counter() < stop:
                data = payloads[i % len(payloads)]
                i += concurrency
                t = time.perf_counter()
                r = await client.post("/v1/search", files={"image": ("q.jpg", data, "image/jpeg")},
                                      data={"top_k": "10"})
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t)
                else:
                    errors += 1
        start = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"concurrency": concurrency, "qps": round(len(latencies) / elapsed, 2), "errors": errors,
            **summary_ms(latencies)}


ROLES = (("ImageEmbedderDeployment", "image embedder replicas"),
         ("TextEmbedderDeployment", "text embedder replica"),
         ("SearchRouter", "router (ingress) replicas"), ("ProxyActor", "Serve proxy"),
         ("lite_launcher", "milvus-lite server"), ("ServeController", "Serve controller"),
         ("raylet", "Ray raylet/GCS"), ("gcs_server", "Ray raylet/GCS"),
         ("front-proxy.cfg", "front proxy (HAProxy)"))
CLIENT = "load client (this process)"
INSIDE_MODEL = ("image embedder replicas", CLIENT)


def _role(pid: int, cmdline: str) -> str:
    if pid == os.getpid():
        return CLIENT
    return next((role for key, role in ROLES if key in cmdline), "other")


def cpu_by_role() -> dict[str, float]:
    """CPU seconds so far of every process on the machine, grouped by what it is."""
    import psutil

    out: dict[str, float] = {}
    for proc in psutil.process_iter(["cmdline", "cpu_times"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or []) or proc.name()
            t = proc.info["cpu_times"]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if t is None:
            continue
        role = _role(proc.pid, cmd)
        out[role] = out.get(role, 0.0) + t.user + t.system
    return out


def saturation(url: str, payloads: list[bytes], concurrency: int, duration: float) -> dict:
    """`saturate`, plus where the cores went meanwhile: CPU-seconds per wall-second by role,
    CPU ms per request, and the issue-16 figure: every role's but the image model's replicas
    and this load client's."""
    before, t0 = cpu_by_role(), time.perf_counter()
    run = asyncio.run(saturate(url, payloads, concurrency, duration))
    after, wall = cpu_by_role(), time.perf_counter() - t0
    run["cores_used_by"] = {k: round((after.get(k, 0) - before.get(k, 0)) / wall, 3)
                            for k in sorted(after) if after.get(k, 0) - before.get(k, 0) > 0.01 * wall}
    run["cpu_ms_per_request"] = {k: round(v * 1000 / max(run["qps"], 1e-9), 2)
                                 for k, v in run["cores_used_by"].items()}
    run["cpu_ms_outside_model"] = round(sum(
        v for k, v in run["cpu_ms_per_request"].items() if k not in INSIDE_MODEL), 2)
    return run
