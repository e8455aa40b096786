"""Mixed-traffic load generator for the lookalike HTTP API (async httpx, loopback only).

    python -m bench.stress --url http://127.0.0.1:8000 --concurrency 8 --duration 30 \
        --mix image=4,text=3,hybrid=1,similar=1,write=1 --admin-key KEY

Closed loop: `concurrency` clients each send the next request when the last one answered,
optionally paced to `--rate` requests/s in total. Every run is bounded by --duration and
--max-requests and stops by itself. Query images and product ids are discovered through the API
itself (a text search, then the hits' images), so it needs nothing but the URL. Writes PUT new
`stress-<run>-<n>` products and DELETE only those, so the catalogue is left as it was.

Reports QPS, p50/p95/p99 (overall and per type), errors by "status:code", and downtime: the
longest stretch of the run with no successful response.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import itertools
import json
import math
import random
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

TYPES = ("image", "text", "hybrid", "similar", "write")
QUERIES = ["red dress", "black sneaker", "blue coat", "leather bag", "green t-shirt",
           "ankle boot", "slim trousers", "yellow pullover", "pink sandal", "grey shirt"]
MAX_DURATION_S = 3600.0
MAX_CONCURRENCY = 256


def require_loopback(url: str) -> str:
    """Load only ever targets this machine: refuse any other host (no DNS lookups)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return url.rstrip("/")
    try:
        if ipaddress.ip_address(host).is_loopback:
            return url.rstrip("/")
    except ValueError:
        pass
    raise ValueError(f"refusing non-loopback target {host!r}: use 127.0.0.1, ::1 or localhost")


def parse_mix(text: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        if name not in TYPES:
            raise ValueError(f"unknown request type {name!r}; use {', '.join(TYPES)}")
        mix[name] = float(weight or 1)
        if mix[name] < 0:
            raise ValueError("mix weights must be >= 0")
    if not mix or sum(mix.values()) <= 0:
        raise ValueError("the mix needs at least one positive weight")
    return mix


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values) - 1e-9)))
    return sorted_values[rank - 1]


def latency_summary(values: list[float]) -> dict[str, float | None]:
    v = sorted(values)
    return {"p50": percentile(v, 50), "p95": percentile(v, 95), "p99": percentile(v, 99),
            "max": v[-1] if v else None,
            "mean": round(sum(v) / len(v), 3) if v else None}


def longest_gap(success_times: list[float], start: float, end: float) -> float:
    """Longest interval in [start, end] without a success (the whole run if none succeeded)."""
    edges = [start, *sorted(t for t in success_times if start <= t <= end), end]
    return max(b - a for a, b in itertools.pairwise(edges))


@dataclass
class LoadConfig:
    url: str
    concurrency: int = 4
    duration_s: float = 10.0
    max_requests: int = 100_000
    mix: dict[str, float] = field(default_factory=lambda: {"image": 1.0})
    admin_key: str | None = None
    rate: float | None = None  # total requests/s; None: as fast as the server answers
    warmup_s: float = 0.0  # traffic before the measured window, not counted
    top_k: int = 10
    timeout_s: float = 30.0
    seed: int = 7

    def check(self) -> None:
        self.url = require_loopback(self.url)
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be 1..{MAX_CONCURRENCY}")
        if not 0 < self.duration_s <= MAX_DURATION_S or not 0 <= self.warmup_s <= MAX_DURATION_S:
            raise ValueError(f"duration must be in (0, {MAX_DURATION_S}] s")
        if self.max_requests < 1:
            raise ValueError("max_requests must be >= 1")
        if self.mix.get("write") and not self.admin_key:
            raise ValueError("writes in the mix need --admin-key")


@dataclass
class Sample:
    kind: str
    status: int  # 0: no HTTP answer (connection error, timeout)
    code: str | None
    latency_ms: float
    done_at: float

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class Fixtures:
    """What the requests are made of, discovered through the API."""

    images: list[bytes]
    product_ids: list[str]


async def discover(client: httpx.AsyncClient, n_images: int = 8) -> Fixtures:
    ids: list[str] = []
    image_urls: list[str] = []
    for q in QUERIES:
        resp = await client.get("/v1/search", params={"q": q, "top_k": "20"})
        resp.raise_for_status()
        for hit in resp.json()["results"]:
            if hit["product_id"] not in ids and not hit["product_id"].startswith("stress-"):
                ids.append(hit["product_id"])
                image_urls.append(hit["image_url"])
    images = []
    for url in image_urls[:n_images]:
        resp = await client.get(url)
        resp.raise_for_status()
        images.append(resp.content)
    if not ids or not images:
        raise RuntimeError("the catalogue looks empty: no products to query with")
    return Fixtures(images, ids)


class Load:
    def __init__(self, cfg: LoadConfig, client: httpx.AsyncClient, fx: Fixtures) -> None:
        self.cfg, self.client, self.fx = cfg, client, fx
        self.rng = random.Random(cfg.seed)
        self.kinds, self.weights = zip(*cfg.mix.items())
        self.run_id = uuid.uuid4().hex[:8]
        self.created: list[str] = []  # stress products now in the store (only these are deleted)
        self.n_created = 0
        self.auth = {"Authorization": f"Bearer {cfg.admin_key}"} if cfg.admin_key else {}

    def request(self, kind: str) -> tuple[str, str, dict[str, Any]]:
        """(type as logged, method, url and httpx kwargs) for one request of `kind`."""
        rng, fx, top_k = self.rng, self.fx, str(self.cfg.top_k)
        if kind == "image":
            photo = ("q.jpg", rng.choice(fx.images), "image/jpeg")
            return "image", "POST", {"url": "/v1/search", "data": {"top_k": top_k},
                                     "files": {"image": photo}}
        if kind == "text":
            return "text", "GET", {"url": "/v1/search",
                                   "params": {"q": rng.choice(QUERIES), "top_k": top_k}}
        if kind == "hybrid":
            photo = ("q.jpg", rng.choice(fx.images), "image/jpeg")
            return "hybrid", "POST", {"url": "/v1/search",
                                      "data": {"text": rng.choice(QUERIES), "top_k": top_k},
                                      "files": {"image": photo}}
        if kind == "similar":
            return "similar", "GET", {"url": f"/v1/products/{rng.choice(fx.product_ids)}/similar",
                                      "params": {"top_k": top_k}}
        # A write: half PUTs of new stress products, half DELETEs of ones this run made.
        if self.created and rng.random() < 0.5:
            pid = self.created.pop(rng.randrange(len(self.created)))
            return "delete", "DELETE", {"url": f"/v1/products/{pid}", "headers": self.auth}
        self.n_created += 1
        pid = f"stress-{self.run_id}-{self.n_created}"
        meta = {"title": f"Stress test bag {self.n_created}", "description": "load test item",
                "category": "bag", "color": "red", "size": "one size", "price": 10.0}
        return "upsert", "PUT", {
            "url": f"/v1/products/{pid}", "headers": self.auth,
            "data": {"metadata": json.dumps(meta)},
            "files": {"image": ("p.jpg", rng.choice(fx.images), "image/jpeg")}}

    async def one(self, kind: str) -> Sample:
        logged, method, kwargs = self.request(kind)
        url = kwargs.pop("url")
        start = time.perf_counter()
        try:
            resp = await self.client.request(method, url, **kwargs)
            status = resp.status_code
            code = resp.headers.get("x-error-code")
        except httpx.HTTPError as exc:
            status, code = 0, f"transport:{type(exc).__name__}"
        done = time.perf_counter()
        if logged == "upsert" and 200 <= status < 300:
            self.created.append(url.rsplit("/", 1)[-1])
        return Sample(logged, status, code, (done - start) * 1000.0, done)

    async def run(self, duration_s: float, max_requests: int) -> tuple[list[Sample], float, float]:
        samples: list[Sample] = []
        start = time.perf_counter()
        deadline = start + duration_s
        issued = 0

        async def worker() -> None:
            nonlocal issued
            while issued < max_requests and time.perf_counter() < deadline:
                n = issued
                issued += 1
                if self.cfg.rate:
                    delay = start + n / self.cfg.rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                        if time.perf_counter() >= deadline:
                            return
                kind = self.rng.choices(self.kinds, self.weights)[0]
                samples.append(await self.one(kind))

        await asyncio.gather(*(worker() for _ in range(self.cfg.concurrency)))
        return samples, start, max(time.perf_counter(), start + 1e-9)

    async def cleanup(self, budget_s: float = 30.0) -> int:
        """Delete what this run created (not measured); bounded in time."""
        deadline, removed = time.perf_counter() + budget_s, 0
        while self.created and time.perf_counter() < deadline:
            pid = self.created.pop()
            try:
                resp = await self.client.delete(f"/v1/products/{pid}", headers=self.auth)
                removed += resp.status_code == 204
            except httpx.HTTPError:
                pass
        return removed


def summarise(cfg: LoadConfig, samples: list[Sample], start: float, end: float) -> dict[str, Any]:
    elapsed = end - start
    ok = [s for s in samples if s.ok]
    errors: dict[str, int] = {}
    for s in samples:
        if not s.ok:
            key = f"{s.status}:{s.code or '-'}"
            errors[key] = errors.get(key, 0) + 1
    by_type = {}
    for kind in sorted({s.kind for s in samples}):
        mine = [s for s in samples if s.kind == kind]
        good = [s.latency_ms for s in mine if s.ok]
        by_type[kind] = {"requests": len(mine), "ok": len(good),
                         "qps": round(len(good) / elapsed, 2), **latency_summary(good)}
    report_cfg = asdict(cfg)
    report_cfg.pop("admin_key")
    return {
        "config": report_cfg,
        "elapsed_s": round(elapsed, 3),
        "requests": len(samples),
        "ok": len(ok),
        "qps": round(len(ok) / elapsed, 2),  # successful responses per second
        "latency_ms": latency_summary([s.latency_ms for s in ok]),
        "by_type": by_type,
        "errors": dict(sorted(errors.items())),
        "status_5xx": sum(1 for s in samples if s.status >= 500),
        "transport_errors": sum(1 for s in samples if s.status == 0),
        "downtime_s": round(longest_gap([s.done_at for s in ok], start, end), 3),
    }


async def run_load(cfg: LoadConfig) -> dict[str, Any]:
    cfg.check()
    limits = httpx.Limits(max_connections=cfg.concurrency + 2,
                          max_keepalive_connections=cfg.concurrency + 2)
    async with httpx.AsyncClient(base_url=cfg.url, timeout=cfg.timeout_s, limits=limits,
                                 trust_env=False) as client:
        load = Load(cfg, client, await discover(client))
        if cfg.warmup_s > 0:
            await load.run(cfg.warmup_s, cfg.max_requests)
        try:
            samples, start, end = await load.run(cfg.duration_s, cfg.max_requests)
        finally:
            cleaned = await load.cleanup()
    report = summarise(cfg, samples, start, end)
    report["stress_products_removed"] = cleaned
    return report


def format_table(report: dict[str, Any]) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    lines = [(f"{report['requests']} requests in {report['elapsed_s']:.1f} s: "
              f"{report['qps']:.1f} ok/s, 5xx {report['status_5xx']}, "
              f"downtime {report['downtime_s']:.2f} s"),
             f"{'type':<8} {'reqs':>6} {'ok':>6} {'qps':>7} {'p50':>7} {'p95':>7} {'p99':>7}"]
    rows = [("all", {"requests": report["requests"], "ok": report["ok"], "qps": report["qps"],
                     **report["latency_ms"]})] + list(report["by_type"].items())
    for kind, r in rows:
        lines.append(f"{kind:<8} {r['requests']:>6} {r['ok']:>6} {r['qps']:>7.1f} "
                     f"{ms(r['p50']):>7} {ms(r['p95']):>7} {ms(r['p99']):>7}")
    if report["errors"]:
        lines.append("errors: " + ", ".join(f"{k} x{v}" for k, v in report["errors"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    p.add_argument("--warmup", type=float, default=0.0, help="seconds of unmeasured traffic first")
    p.add_argument("--max-requests", type=int, default=100_000)
    p.add_argument("--mix", default="image=4,text=3,hybrid=1,similar=1,write=1")
    p.add_argument("--rate", type=float, default=None, help="pace to this many requests/s")
    p.add_argument("--admin-key", default=None, help="needed for writes")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--json", dest="json_out", default=None, help="also write the report here")
    args = p.parse_args(argv)
    cfg = LoadConfig(url=args.url, concurrency=args.concurrency, duration_s=args.duration,
                     max_requests=args.max_requests, mix=parse_mix(args.mix),
                     admin_key=args.admin_key, rate=args.rate, warmup_s=args.warmup,
                     top_k=args.top_k)
    report = asyncio.run(run_load(cfg))
    print(format_table(report))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=2)
    return 0 if report["status_5xx"] == 0 and report["transport_errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
