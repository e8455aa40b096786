"""Request logs and Prometheus metrics from the running app (real Serve, real Ray metrics agent).

Logs are read where the router really writes them: the JSON-lines files in the Serve log
directory of the shared app's Ray session. Metrics are scraped from the Ray metrics export port
`lookalike serve` opened (LOOKALIKE_METRICS_PORT); Ray exports about every 10 s, so both checks
wait for what they need with a deadline.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from lookalike.catalog.product import Product
from lookalike.observability import FIELDS
from tests.e2e.served import App, wait_until


def read_request_logs(log_dir: Path, ids: set[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in log_dir.glob("lookalike_requests_*.jsonl*"):
        for line in path.read_text(errors="replace").splitlines():
            if any(i in line for i in ids):
                rec = json.loads(line)  # every line must be one JSON object
                found[rec["request_id"]] = rec
    return found


@pytest.fixture(scope="module")
def traffic(app_url: str, catalogue: tuple[Path, list[Product]]) -> dict[str, str]:
    """A few requests of each kind, each with a known request id; name -> request id."""
    with httpx.Client(base_url=app_url, timeout=60) as client:
        return send_traffic(client, catalogue[1])


def send_traffic(client: httpx.Client, products: list[Product]) -> dict[str, str]:
    photo = Path(products[3].images[0]).read_bytes()
    tag = uuid.uuid4().hex[:8]
    calls: dict[str, tuple[str, str, dict[str, Any], int]] = {
        "text": ("GET", "/v1/search",
                 {"params": {"q": "red dress", "top_k": "4", "color": "red"}}, 200),
        "image": ("POST", "/v1/search",
                  {"files": {"image": ("q.jpg", photo, "image/jpeg")},
                   "data": {"top_k": "3"}}, 200),
        "hybrid": ("POST", "/v1/search",
                   {"json": {"text": "bag", "image_base64": base64.b64encode(photo).decode(),
                             "filters": {"price": {"lte": 500}}}}, 200),
        "similar": ("GET", f"/v1/products/{products[5].product_id}/similar",
                    {"params": {"top_k": "2"}}, 200),
        "missing": ("GET", "/v1/products/no-such-product", {}, 404),
        "unauthorized": ("DELETE", f"/v1/products/{products[0].product_id}", {}, 401),
        "bad": ("GET", "/v1/search", {}, 422),
    }
    out = {}
    for name, (method, url, kwargs, status) in calls.items():
        rid = f"obs-{tag}-{name}"
        resp = client.request(method, url, headers={"x-request-id": rid}, **kwargs)
        assert resp.status_code == status, (name, resp.text)
        assert resp.headers["x-request-id"] == rid  # once: not "rid, rid"
        out[name] = rid
    # Without a client id, the id Serve generated is the one answered and logged.
    resp = client.get("/healthz")
    assert resp.status_code == 200 and "," not in resp.headers["x-request-id"]
    out["generated"] = resp.headers["x-request-id"]
    return out


def test_every_request_logs_one_json_line_with_the_fields(app: App,
                                                          traffic: dict[str, str]) -> None:
    want = set(traffic.values())
    log_dir = app.session_dir() / "logs" / "serve"

    def complete() -> dict[str, dict[str, Any]] | None:
        found = read_request_logs(log_dir, want)
        return found if len(found) == len(want) else None

    logs = wait_until(complete, timeout_s=30, what=f"request log lines in {log_dir}",
                      seen=lambda: sorted(read_request_logs(log_dir, want)))
    by = {name: logs[rid] for name, rid in traffic.items()}
    for rec in by.values():
        assert set(FIELDS) <= set(rec) and rec["logger"] == "lookalike.requests"
        assert rec["total_ms"] > 0 and rec["ts"].endswith("Z")

    t = by["text"]
    assert (t["type"], t["method"], t["endpoint"], t["status"], t["top_k"]) == \
        ("text", "GET", "/v1/search", 200, 4)
    assert t["filters"] == {"colors": ["red"]} and t["error_code"] is None
    assert t["embed_ms"] > 0 and t["search_ms"] > 0 and t["total_ms"] >= t["embed_ms"]
    assert (by["image"]["type"], by["image"]["top_k"], by["image"]["filters"]) == ("image", 3, {})
    assert by["hybrid"]["type"] == "hybrid" and by["hybrid"]["filters"] == {"max_price": 500.0}
    s = by["similar"]
    assert (s["type"], s["endpoint"], s["top_k"]) == \
        ("similar", "/v1/products/{product_id}/similar", 2)
    assert s["search_ms"] > 0 and s["embed_ms"] == 0
    assert (by["missing"]["status"], by["missing"]["error_code"], by["missing"]["type"]) == \
        (404, "not_found", "other")
    assert (by["unauthorized"]["status"], by["unauthorized"]["error_code"],
            by["unauthorized"]["type"]) == (401, "unauthorized", "delete")
    assert (by["bad"]["error_code"], by["bad"]["type"]) == ("missing_query", "text")
    assert (by["generated"]["endpoint"], by["generated"]["type"]) == ("/healthz", "other")


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Minimal exposition-format parser: (name, labels, value) for each sample."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels = {}
        for part in rest.rstrip("}").split('",'):
            if "=" in part:
                k, _, v = part.partition("=")
                labels[k.strip(",")] = v.strip('"')
        samples.append((name, labels, float(value)))
    return samples


def test_metrics_reach_the_prometheus_endpoint(app: App, traffic: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{app.env['LOOKALIKE_METRICS_PORT']}/metrics"

    def total(samples: list, name: str, **labels: str) -> float:
        return sum(v for n, lab, v in samples
                   if n == name and all(lab.get(k) == x for k, x in labels.items()))

    def scrape() -> list | None:
        try:
            samples = parse_prometheus(httpx.get(url, timeout=5).text)
        except httpx.HTTPError:
            return None
        ready = all(total(samples, *spec[:1], **spec[1]) > 0 for spec in [
            ("ray_lookalike_requests_total", {"type": "image", "status": "200"}),
            ("ray_lookalike_embed_batch_size_count", {"deployment": "image"}),
            ("ray_lookalike_embed_batch_size_count", {"deployment": "text"}),
            ("ray_lookalike_milvus_search_latency_ms_count", {"type": "similar"}),
            # Each replica reports on its own ~10 s clock: wait for every series asserted below.
            ("ray_lookalike_requests_total", {"type": "delete", "status": "401"}),
            ("ray_lookalike_requests_total", {"endpoint": "/v1/products/{product_id}", "status": "404"}),
            ("ray_lookalike_embed_latency_ms_count", {"type": "hybrid"}),
        ])
        return samples if ready else None

    # Ray's report interval is ~10 s per replica.
    samples = wait_until(scrape, timeout_s=120, every_s=2,
                         what="every lookalike series on the Ray metrics endpoint")
    assert total(samples, "ray_lookalike_requests_total", endpoint="/v1/search", type="text",
                 status="200") >= 1
    assert total(samples, "ray_lookalike_requests_total", endpoint="/v1/products/{product_id}",
                 status="404") >= 1
    assert total(samples, "ray_lookalike_requests_total", type="delete", status="401") >= 1
    assert total(samples, "ray_lookalike_request_latency_ms_count", endpoint="/v1/search") >= 3
    assert total(samples, "ray_lookalike_embed_latency_ms_count", type="hybrid") >= 1
    buckets = [(float(lab["le"]), v) for n, lab, v in samples
               if n == "ray_lookalike_request_latency_ms_bucket" and lab.get("type") == "image"]
    assert buckets and max(v for _, v in buckets) >= 1  # the +Inf bucket holds every request
    # No raw request path becomes a label value (bounded series).
    assert not any(lab.get("endpoint", "").startswith("/v1/products/no-such")
                   for _, lab, _ in samples)
