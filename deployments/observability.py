"""The Serve side of lookalike/observability.py: Prometheus metrics through `ray.util.metrics`
(exported by Ray's metrics agent) and the request log file next to Serve's own logs.

Ray prefixes every name with `ray_` and counters get `_total`, so `lookalike_requests` is
scraped as `ray_lookalike_requests_total` (see docs/observability.md).

The metric objects are created on first use, and only inside a process where Ray is
initialised (a Serve replica, a Ray Data driver); anywhere else `metrics()` returns the core's
sink that does nothing.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import ray
from ray.util.metrics import Counter, Gauge, Histogram

from lookalike.observability import NoopMetrics, RequestObserver, request_log_path, request_observer

# Milliseconds; covers a cache-warm Milvus query (~1 ms) up to a cold, queued embed (seconds).
LATENCY_MS_BOUNDARIES = [1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000, 10000]
BATCH_SIZE_BOUNDARIES = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256]


def bounded_endpoint(endpoint: object) -> str:
    """The `endpoint` label: the request record's route template (lookalike/api/observe.py's
    route_template: a matched route's template or mount prefix, else "unmatched"), never a
    raw path, which would let any scanner mint new time series."""
    return endpoint if isinstance(endpoint, str) and endpoint else "unmatched"


class RayMetrics(NoopMetrics):
    enabled = True

    def __init__(self) -> None:
        self.requests = Counter(
            "lookalike_requests", description="HTTP requests by endpoint, type and status.",
            tag_keys=("endpoint", "type", "status"))
        self.latency = Histogram(
            "lookalike_request_latency_ms", description="Total request latency in the router (ms).",
            boundaries=LATENCY_MS_BOUNDARIES, tag_keys=("endpoint", "type"))
        self.embed_latency = Histogram(
            "lookalike_embed_latency_ms",
            description="Time a search waited for its query embedding(s), batching included (ms).",
            boundaries=LATENCY_MS_BOUNDARIES, tag_keys=("type",))
        self.search_latency = Histogram(
            "lookalike_milvus_search_latency_ms", description="Milvus search call latency (ms).",
            boundaries=LATENCY_MS_BOUNDARIES, tag_keys=("type",))
        self.store_errors = Counter(
            "lookalike_store_errors",
            description="Requests answered 503 store_unavailable (Milvus failed or unreachable).",
            tag_keys=("endpoint",))
        self.batch_size = Histogram(
            "lookalike_embed_batch_size", description="Inputs per @serve.batch forward pass.",
            boundaries=BATCH_SIZE_BOUNDARIES, tag_keys=("deployment",))
        self.ingest_rows = Counter(
            "lookalike_ingest_rows", description="Rows written by ingest jobs.", tag_keys=("job",))
        self.ingest_rate = Gauge(
            "lookalike_ingest_rows_per_second", description="Last reported ingest throughput.",
            tag_keys=("job",))

    def observe_request(self, fields: dict[str, Any]) -> None:
        endpoint = bounded_endpoint(fields.get("endpoint"))
        kind = str(fields.get("type") or "other")
        self.requests.inc(1, tags={"endpoint": endpoint, "type": kind,
                                   "status": str(fields.get("status"))})
        self.latency.observe(float(fields.get("total_ms") or 0.0),
                             tags={"endpoint": endpoint, "type": kind})
        # Only searches that reached the embedder / the store: zeros would drag the percentiles.
        if fields.get("embed_ms"):
            self.embed_latency.observe(float(fields["embed_ms"]), tags={"type": kind})
        if fields.get("search_ms"):
            self.search_latency.observe(float(fields["search_ms"]), tags={"type": kind})
        if fields.get("error_code") == "store_unavailable":
            self.store_errors.inc(1, tags={"endpoint": endpoint})

    def observe_batch(self, deployment: str, size: int) -> None:
        self.batch_size.observe(float(size), tags={"deployment": deployment})

    def observe_ingest(self, rows: int, seconds: float, *, job: str = "ingest") -> None:
        self.ingest_rows.inc(float(rows), tags={"job": job})
        if seconds > 0:
            self.ingest_rate.set(rows / seconds, tags={"job": job})


_NOOP = NoopMetrics()
_ray_metrics: RayMetrics | None = None
_lock = threading.Lock()


def metrics() -> NoopMetrics:
    """The process's metrics sink: Ray-backed inside Ray, a no-op elsewhere."""
    global _ray_metrics
    if _ray_metrics is not None:
        return _ray_metrics
    if not ray.is_initialized():
        return _NOOP
    with _lock:
        if _ray_metrics is None:
            _ray_metrics = RayMetrics()
    return _ray_metrics


def observe_batch(deployment: str, size: int) -> None:
    """Called from a @serve.batch method with len(batch)."""
    metrics().observe_batch(deployment, size)


def observe_ingest(rows: int, seconds: float, *, job: str = "ingest") -> None:
    """For the ingest job: `rows` written in `seconds` (a run, or each progress step).

    Adds `rows` to ray_lookalike_ingest_rows_total and sets
    ray_lookalike_ingest_rows_per_second to rows/seconds. Ray exports every ~10 s, so a job
    that exits right after its last call may not have that last value scraped.
    """
    metrics().observe_ingest(rows, seconds, job=job)


def serve_log_dir() -> Path | None:
    """Ray's Serve log directory (<session>/logs/serve) inside a Ray process, else None."""
    if not ray.is_initialized():
        return None
    try:
        from ray.serve._private.logging_utils import get_serve_logs_dir

        return Path(get_serve_logs_dir())
    except Exception:  # noqa: BLE001 - a private helper; fall back to stderr if it moves
        return None


def router_observer() -> RequestObserver:
    """The router replica's request observer: a rotated JSON-lines file next to Serve's own
    logs (<session>/logs/serve/lookalike_requests_<pid>.jsonl), where Ray's log tooling and
    shippers already look, and the Ray metrics."""
    return request_observer(path=request_log_path(serve_log_dir()), sink=metrics())
