"""The request observer handed to `create_api`: one JSON log line and the metrics per request.

The API middleware builds a raw record per request; `request_fields` turns it into the fixed
log schema (every key always present, so queries never have to guess), the observer logs it on
"lookalike.requests" and feeds a metrics sink. The sink here does nothing; the Serve side
(deployments/observability.py) passes its Ray-backed one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, TextIO

from lookalike.logs import json_logger

REQUEST_LOGGER = "lookalike.requests"
REQUEST_TYPES = ("text", "image", "hybrid", "similar", "upsert", "delete", "other")
FIELDS = ("event", "request_id", "method", "endpoint", "type", "top_k", "filters", "status",
          "error_code", "embed_ms", "search_ms", "total_ms")

# The type a route implies when the handler failed before it could say (a 401 on a PUT is
# still a write attempt; a 404 on "similar" still a similar-search).
_ROUTE_TYPES = {
    ("GET", "/v1/search"): "text",
    ("GET", "/v1/products/{product_id}/similar"): "similar",
    ("PUT", "/v1/products/{product_id}"): "upsert",
    ("DELETE", "/v1/products/{product_id}"): "delete",
}


class NoopMetrics:
    """The metrics sink's methods, doing nothing (the sink outside Ray)."""

    enabled = False

    def observe_request(self, fields: dict[str, Any]) -> None:
        pass

    def observe_batch(self, deployment: str, size: int) -> None:
        pass

    def observe_ingest(self, rows: int, seconds: float, *, job: str = "ingest") -> None:
        pass


def request_type(record: dict[str, Any]) -> str:
    kind = record.get("type")
    if kind in REQUEST_TYPES:
        return str(kind)
    return _ROUTE_TYPES.get((str(record.get("method")), str(record.get("endpoint"))), "other")


def request_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The middleware's record -> the log schema (FIELDS, in that order)."""
    def ms(key: str) -> float | None:
        v = record.get(key)
        return round(float(v), 3) if isinstance(v, (int, float)) else None

    return {
        "event": "request",
        "request_id": record.get("request_id"),
        "method": record.get("method"),
        "endpoint": record.get("endpoint"),
        "type": request_type(record),
        "top_k": record.get("top_k"),
        "filters": record.get("filters"),
        "status": record.get("status"),
        "error_code": record.get("error_code"),
        "embed_ms": ms("embed_ms"),
        "search_ms": ms("search_ms"),
        "total_ms": ms("total_ms"),
    }


class RequestObserver:
    """Callable given to `create_api(observer=...)`."""

    def __init__(self, logger: logging.Logger | None = None,
                 sink: NoopMetrics | None = None) -> None:
        self.logger = logger or logging.getLogger(REQUEST_LOGGER)
        self.sink = sink or NoopMetrics()

    def __call__(self, record: dict[str, Any]) -> None:
        fields = request_fields(record)
        status = fields["status"] if isinstance(fields["status"], int) else 0
        # 5xx at WARNING: an alert on level>=WARNING catches server faults, not client mistakes.
        self.logger.log(logging.WARNING if status >= 500 else logging.INFO, "request",
                        extra={"fields": fields})
        self.sink.observe_request(fields)


def request_log_path(log_dir: Path | None) -> Path | None:
    # One file per process: two router replicas must not interleave writes in one file.
    return None if log_dir is None else log_dir / f"lookalike_requests_{os.getpid()}.jsonl"


def request_observer(*, path: Path | str | None = None, stream: TextIO | None = None,
                     sink: NoopMetrics | None = None) -> RequestObserver:
    """Set up the "lookalike.requests" JSON logger (to `path`, a rotated JSON-lines file, or
    `stream`; stderr when neither is given) and return the observer."""
    return RequestObserver(json_logger(REQUEST_LOGGER, stream=stream, path=path), sink)
