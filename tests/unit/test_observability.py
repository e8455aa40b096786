"""Request log records, the JSON formatter and the metrics sink, without a running Ray."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from lookalike.deployments.observability import RayMetrics, bounded_endpoint
from lookalike.logs import JsonFormatter, json_logger
from lookalike.observability import (
    FIELDS,
    REQUEST_LOGGER,
    NoopMetrics,
    RequestObserver,
    request_fields,
    request_observer,
)

SEARCH_RECORD = {
    "request_id": "abc123", "method": "POST", "endpoint": "/v1/search", "status": 200,
    "total_ms": 12.34567, "error_code": None, "type": "hybrid", "top_k": 5,
    "filters": {"colors": ["red"], "max_price": 50.0}, "embed_ms": 8.1, "search_ms": 2.2,
}


def make_record(msg: str = "hello", fields: object = None, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("lookalike.x", logging.INFO, __file__, 1, msg, None, exc_info)
    if fields is not None:
        rec.fields = fields
    return rec


# -- formatter ---------------------------------------------------------------------------------

def test_formatter_emits_one_json_object_with_base_keys_first() -> None:
    line = JsonFormatter().format(make_record("rows done", {"rows": 3, "rows_per_s": 1.5}))
    assert "\n" not in line
    out = json.loads(line)
    assert list(out)[:4] == ["ts", "level", "logger", "message"]
    assert (out["level"], out["logger"], out["message"]) == ("INFO", "lookalike.x", "rows done")
    assert out["ts"].endswith("Z") and "T" in out["ts"]
    assert out["rows"] == 3 and out["rows_per_s"] == 1.5


def test_formatter_fields_cannot_overwrite_base_keys() -> None:
    out = json.loads(JsonFormatter().format(make_record("m", {"level": "FAKE", "message": "x"})))
    assert out["level"] == "INFO" and out["message"] == "m"


def test_formatter_keeps_odd_values_valid_json() -> None:
    out = json.loads(JsonFormatter().format(make_record("m", {
        "nan": float("nan"), "inf": float("inf"), "path": Path("/a/b"), "tup": (1, 2),
        "nested": {"x": float("-inf")}, "text": "héllo \"quoted\"\nnewline"})))
    assert out["nan"] is None and out["inf"] is None and out["nested"] == {"x": None}
    assert out["path"] == "/a/b" and out["tup"] == [1, 2]
    assert out["text"] == "héllo \"quoted\"\nnewline"


def test_formatter_includes_the_exception() -> None:
    out = json.loads(JsonFormatter().format(make_record("failed", exc=True)))
    assert "ValueError: boom" in out["exc"]


def test_json_logger_is_idempotent_and_does_not_propagate() -> None:
    first, second = io.StringIO(), io.StringIO()
    json_logger("lookalike.test_idem", stream=first)
    log = json_logger("lookalike.test_idem", stream=second)
    log.info("once", extra={"fields": {"k": 1}})
    assert first.getvalue() == ""
    assert [json.loads(x)["k"] for x in second.getvalue().splitlines()] == [1]
    assert log.propagate is False


def test_json_logger_reusable_for_the_ingest_summary(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "ingest.jsonl"
    json_logger("lookalike.ingest_test", path=path).info(
        "ingest finished", extra={"fields": {"rows": 1000, "failed": 2, "rows_per_s": 250.0}})
    logging.getLogger("lookalike.ingest_test").handlers[0].flush()
    out = json.loads(path.read_text().splitlines()[-1])
    assert out["logger"] == "lookalike.ingest_test" and out["rows"] == 1000


# -- request records ---------------------------------------------------------------------------

def test_request_fields_for_a_search() -> None:
    f = request_fields(SEARCH_RECORD)
    assert tuple(f) == FIELDS
    assert f == {"event": "request", "request_id": "abc123", "method": "POST",
                 "endpoint": "/v1/search", "type": "hybrid", "top_k": 5,
                 "filters": {"colors": ["red"], "max_price": 50.0}, "status": 200,
                 "error_code": None, "embed_ms": 8.1, "search_ms": 2.2, "total_ms": 12.346}


def test_request_fields_keep_every_key_for_plain_requests() -> None:
    f = request_fields({"request_id": "r", "method": "GET", "endpoint": "/healthz", "status": 200,
                        "total_ms": 0.5, "error_code": None})
    assert tuple(f) == FIELDS
    assert f["type"] == "other" and f["top_k"] is None and f["filters"] is None
    assert f["embed_ms"] is None and f["search_ms"] is None


@pytest.mark.parametrize(("method", "endpoint", "kind"), [
    ("PUT", "/v1/products/{product_id}", "upsert"),
    ("DELETE", "/v1/products/{product_id}", "delete"),
    ("GET", "/v1/products/{product_id}/similar", "similar"),
    ("GET", "/v1/search", "text"),
    ("POST", "/v1/search", "other"),  # failed before the body said what kind it was
    ("GET", "/v1/products/{product_id}", "other"),
])
def test_failed_requests_take_their_type_from_the_route(method: str, endpoint: str,
                                                        kind: str) -> None:
    f = request_fields({"method": method, "endpoint": endpoint, "status": 401,
                        "error_code": "unauthorized", "total_ms": 1})
    assert f["type"] == kind


def test_an_unknown_type_is_other() -> None:
    assert request_fields({"type": "weird", "method": "GET", "endpoint": "/x"})["type"] == "other"


class FakeSink(NoopMetrics):
    def __init__(self) -> None:
        self.seen: list[dict] = []

    def observe_request(self, fields: dict) -> None:
        self.seen.append(fields)


def test_observer_logs_one_json_line_and_feeds_the_sink() -> None:
    stream, sink = io.StringIO(), FakeSink()
    observer = RequestObserver(json_logger("lookalike.test_obs", stream=stream), sink)
    observer(SEARCH_RECORD)
    observer({**SEARCH_RECORD, "request_id": "r2", "status": 503,
              "error_code": "store_unavailable"})
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [x["request_id"] for x in lines] == ["abc123", "r2"]
    assert lines[0]["level"] == "INFO" and lines[1]["level"] == "WARNING"
    assert lines[0]["message"] == "request" and lines[0]["search_ms"] == 2.2
    assert all(set(FIELDS) <= set(x) for x in lines)
    assert [s["status"] for s in sink.seen] == [200, 503]


def test_request_observer_outside_ray_writes_where_told(tmp_path: Path) -> None:
    path = tmp_path / "req.jsonl"
    observer = request_observer(path=path)
    assert observer.logger.name == REQUEST_LOGGER
    observer(SEARCH_RECORD)
    for h in observer.logger.handlers:
        h.flush()
    assert json.loads(path.read_text())["request_id"] == "abc123"


# -- metrics -----------------------------------------------------------------------------------

def test_metrics_are_a_noop_without_ray() -> None:
    # In a fresh interpreter: this one may have started Ray for other tests, and skipping then
    # would fail a CI run (tests/prerequisites.py) or, worse, test nothing.
    code = ("import json, sys; from lookalike.deployments.observability import metrics, observe_batch, "
            "observe_ingest; from lookalike.observability import NoopMetrics, request_fields;"
            "sink = metrics(); assert type(sink) is NoopMetrics and not sink.enabled;"
            "observe_batch('image', 4); observe_ingest(100, 2.0, job='unit');"
            "sink.observe_request(request_fields(json.loads(sys.argv[1])))")
    subprocess.run([sys.executable, "-c", code, json.dumps(SEARCH_RECORD)], check=True, timeout=60)


def test_the_router_observer_outside_ray_logs_to_stderr_with_no_metrics() -> None:
    # A fresh interpreter, as above: once this one has started Ray, metrics() is Ray's.
    code = ("import logging; from lookalike.deployments.observability import metrics, router_observer; "
            "from lookalike.observability import NoopMetrics; observer = router_observer(); "
            "assert type(observer.sink) is NoopMetrics and metrics() is observer.sink; "
            "assert not any(isinstance(h, logging.FileHandler) for h in observer.logger.handlers)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# The label is the template of the route that matched (or the mount's prefix), else
# "unmatched": a made-up path, even one that looks like a template, never becomes a label.
@pytest.mark.parametrize(("method", "path", "label"), [
    ("GET", "/v1/search", "/v1/search"), ("GET", "/v1/products/p1", "/v1/products/{product_id}"),
    ("GET", "/v1/products/p1/similar", "/v1/products/{product_id}/similar"),
    ("POST", "/readyz", "/readyz"),  # a 405 still matched its route
    ("GET", "/healthz", "/healthz"), ("GET", "/openapi.json", "/openapi.json"),
    ("GET", "/static/app.js", "/static"), ("GET", "/static/nope-{x}.js", "/static"),
    ("GET", "/wp-admin/x.php", "unmatched"), ("GET", "/wp-admin/{x}", "unmatched"),
    ("GET", "/v1/products/p1/{made-up}", "unmatched"), ("GET", "/{a}/{b}", "unmatched"),
    ("GET", "/v1/search/", "unmatched"),
])
def test_metric_endpoint_labels_come_only_from_matched_routes(
        tmp_path: Path, method: str, path: str, label: str) -> None:
    from tests.unit.test_api import OneProductStore, make_client

    records: list[dict] = []
    client = make_client(OneProductStore(), tmp_path, records)
    client.request(method, path, follow_redirects=False)
    assert len(records) == 1
    assert bounded_endpoint(request_fields(records[0])["endpoint"]) == label
    assert records[0]["endpoint"] == label  # the request log says the same


@pytest.mark.parametrize("endpoint", [None, "", 3])
def test_a_record_without_an_endpoint_is_unmatched(endpoint: object) -> None:
    assert bounded_endpoint(endpoint) == "unmatched"


class FakeMetric:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float, dict]] = []

    def inc(self, value: float = 1.0, tags: dict | None = None) -> None:
        self.calls.append(("inc", value, tags or {}))

    def observe(self, value: float, tags: dict | None = None) -> None:
        self.calls.append(("observe", value, tags or {}))

    def set(self, value: float, tags: dict | None = None) -> None:
        self.calls.append(("set", value, tags or {}))


def fake_ray_metrics() -> RayMetrics:
    m = RayMetrics.__new__(RayMetrics)  # skip ray.util.metrics: same mapping, fake instruments
    for name in ("requests", "latency", "embed_latency", "search_latency", "store_errors",
                 "batch_size", "ingest_rows", "ingest_rate"):
        setattr(m, name, FakeMetric())
    return m


def test_ray_metrics_map_a_request_to_tags() -> None:
    m = fake_ray_metrics()
    m.observe_request(request_fields(SEARCH_RECORD))
    assert m.requests.calls == [
        ("inc", 1, {"endpoint": "/v1/search", "type": "hybrid", "status": "200"})]
    assert m.latency.calls == [("observe", 12.346, {"endpoint": "/v1/search", "type": "hybrid"})]
    assert m.embed_latency.calls == [("observe", 8.1, {"type": "hybrid"})]
    assert m.search_latency.calls == [("observe", 2.2, {"type": "hybrid"})]
    assert m.store_errors.calls == []


def test_ray_metrics_count_store_errors_and_skip_missing_timings() -> None:
    m = fake_ray_metrics()
    m.observe_request(request_fields({
        "method": "GET", "endpoint": "/v1/products/{product_id}/similar", "status": 503,
        "error_code": "store_unavailable", "total_ms": 3.0}))
    assert m.store_errors.calls == [("inc", 1, {"endpoint": "/v1/products/{product_id}/similar"})]
    assert m.embed_latency.calls == [] and m.search_latency.calls == []
    assert m.requests.calls[0][2]["type"] == "similar"


def test_ray_metrics_batches_and_ingest() -> None:
    m = fake_ray_metrics()
    m.observe_batch("text", 7)
    m.observe_ingest(500, 2.0, job="catalog")
    m.observe_ingest(0, 0.0, job="catalog")  # no division by zero on an empty step
    assert m.batch_size.calls == [("observe", 7.0, {"deployment": "text"})]
    assert m.ingest_rows.calls[0] == ("inc", 500.0, {"job": "catalog"})
    assert m.ingest_rate.calls == [("set", 250.0, {"job": "catalog"})]
