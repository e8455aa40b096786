"""One-client latency helpers (issue 29): sequential requests over HTTP, the CPU that this
bench's own process tree spent on them by role, one plain store search, and the targets.

A lone client sees the latency of one request's path, with nothing queued in front of it;
the CPU figures count only this bench's descendants (its Ray, its milvus-lite, its front
proxy), so the other work of a shared machine is left out of them, though not out of the
latencies.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from bench.common import ROLES, summary_ms

# The roles a search request passes through. Ray's own processes (controller, raylet, GCS)
# tick on a clock, not per request: with one client they would bill idle time per request.
REQUEST_PATH = ("router (ingress) replicas", "image embedder replicas", "text embedder replica",
                "Serve proxy", "front proxy (HAProxy)", "milvus-lite server")
# Issue 29's targets for one client.
TEXT_OVER_PARTS = 1.5
PHOTO_OVER_PARTS = 1.3
FLOOR_SLACK_MS = 2.0
CPU_ABOVE_FLOOR_MS = 5.0
PLAIN_FIELDS = ["product_id", "title", "category", "color", "size", "price", "images"]


def role_of(cmdline: str) -> str:
    return next((role for key, role in ROLES if key in cmdline), "other")


def tree_cpu_by_role(roots: Iterable[int]) -> dict[str, float]:
    """CPU seconds so far of `roots`' descendants (not the roots: the load client), by role."""
    import psutil

    out: dict[str, float] = {}
    seen: set[int] = set()
    for root in roots:
        try:
            procs = psutil.Process(root).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            try:
                role = role_of(" ".join(proc.cmdline()) or proc.name())
                t = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            out[role] = out.get(role, 0.0) + t.user + t.system
    return out


def cpu_ms_per_request(before: dict[str, float], after: dict[str, float],
                       requests: int) -> dict[str, float]:
    """Each role's CPU between two `tree_cpu_by_role` readings, in ms per request (a process
    that exited in between counts from zero: its CPU is lost, never negative)."""
    if requests <= 0:
        raise ValueError("requests must be positive")
    return {role: round(max(0.0, after[role] - before.get(role, 0.0)) * 1000 / requests, 3)
            for role in sorted(after)}


def path_cpu_ms(by_role: dict[str, float]) -> float:
    return round(sum(v for k, v in by_role.items() if k in REQUEST_PATH), 3)


def series(call: Callable[[int], Any], n: int, roots: Iterable[int]) -> dict[str, Any]:
    """`call(i)` n times, one after the other: latency summary and CPU per request by role."""
    roots = list(roots)
    took: list[float] = []
    before = tree_cpu_by_role(roots)
    for i in range(n):
        t = time.perf_counter()
        call(i)
        took.append(time.perf_counter() - t)
    by_role = cpu_ms_per_request(before, tree_cpu_by_role(roots), n)
    return {**summary_ms(took), "cpu_ms_per_request": by_role,
            "request_path_cpu_ms": path_cpu_ms(by_role)}


def photo_call(client: Any, payloads: list[bytes]) -> Callable[[int], None]:
    def call(i: int) -> None:
        r = client.post("/v1/search", files={"image": ("q.jpg", payloads[i % len(payloads)],
                                                       "image/jpeg")}, data={"top_k": "10"})
        r.raise_for_status()
    return call


def text_call(client: Any, queries: list[str]) -> Callable[[int], None]:
    def call(i: int) -> None:
        r = client.get("/v1/search", params={"q": queries[i % len(queries)], "top_k": 10})
        r.raise_for_status()
    return call


def distinct_queries() -> list[str]:
    """200 distinct texts (5 x 5 x 8), as bench/p1_p2_serve.py asks them: the router caches
    recent query vectors, so a series of n <= 200 never meets a cached one."""
    return [f"{c} {a} {k}" for c in ("red", "blue", "black", "green", "yellow")
            for a in ("summer", "classic", "casual", "warm", "light")
            for k in ("dress", "sneaker", "bag", "coat", "shirt", "boots", "t-shirt", "sandal")]


def plain_search(client: Any, collection: str, vector: Any, field: str) -> list[dict[str, Any]]:
    """One store call: the top 10 products (grouped by product) with their fields, as a shop
    without lookalike would ask Milvus; the floor's router makes the same call."""
    hits = client.search(collection, data=[[float(x) for x in vector]], anns_field=field,
                         limit=10, output_fields=PLAIN_FIELDS, group_by_field="product_id",
                         search_params={"metric_type": "COSINE"})
    return [h["entity"] for h in hits[0]]


def latency_limit_ms(*, parts_ms: float, factor: float, floor_ms: float | None) -> float:
    """Issue 29: p50 <= factor x the raw parts, or the shape's floor + 2 ms where that is
    higher. `floor_ms` is the floor with this model: the no-model floor's p50 plus the raw
    model part (None: no floor measured, the ratio alone)."""
    limit = factor * parts_ms
    if floor_ms is not None:
        limit = max(limit, floor_ms + FLOOR_SLACK_MS)
    return round(limit, 3)


def verdicts(*, text_p50: float, photo_p50: float, encode: float, forward: float,
             text_search: float, photo_search: float, floor_text: float | None, floor_photo: float | None,
             cpu_above_floor: float | None) -> dict[str, Any]:
    """The one-client targets as numbers: each limit, the measured value and whether it holds
    (all in ms; floors are the no-model floor's p50, without the model)."""
    text_limit = latency_limit_ms(parts_ms=encode + text_search, factor=TEXT_OVER_PARTS,
                                  floor_ms=None if floor_text is None else floor_text + encode)
    photo_limit = latency_limit_ms(parts_ms=forward + photo_search, factor=PHOTO_OVER_PARTS,
                                   floor_ms=None if floor_photo is None else floor_photo + forward)
    out: dict[str, Any] = {
        "text": {"p50_ms": text_p50, "limit_ms": text_limit, "met": text_p50 <= text_limit,
                 "over_parts": round(text_p50 / (encode + text_search), 3)},
        "photo": {"p50_ms": photo_p50, "limit_ms": photo_limit, "met": photo_p50 <= photo_limit,
                  "over_parts": round(photo_p50 / (forward + photo_search), 3)},
    }
    if cpu_above_floor is not None:
        out["photo_cpu_above_floor"] = {"ms": cpu_above_floor, "limit_ms": CPU_ABOVE_FLOOR_MS,
                                        "met": cpu_above_floor <= CPU_ABOVE_FLOOR_MS}
    return out
