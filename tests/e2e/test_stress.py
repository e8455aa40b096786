"""A short, bounded stress profile against the real app: mixed reads and writes, no 5xx."""

from __future__ import annotations

import asyncio

import httpx

from bench.stress import LoadConfig, parse_mix, run_load
from tests.e2e.conftest import ADMIN_KEY


def test_mixed_traffic_has_no_server_errors(app_url: str, client: httpx.Client) -> None:
    cfg = LoadConfig(url=app_url, concurrency=4, duration_s=5.0, max_requests=2000,
                     mix=parse_mix("image=3,text=3,hybrid=1,similar=2,write=2"),
                     admin_key=ADMIN_KEY, timeout_s=30.0, seed=11)
    report = asyncio.run(run_load(cfg))
    assert report["status_5xx"] == 0 and report["transport_errors"] == 0, report["errors"]
    assert report["errors"] == {}, report["errors"]  # the generator sends only valid requests
    for kind in ("image", "text", "hybrid", "similar", "upsert"):
        assert report["by_type"].get(kind, {}).get("ok", 0) > 0, (kind, report["by_type"])
    assert report["qps"] > 0 and report["latency_ms"]["p99"] is not None
    # It removed every product it created, so the shared catalogue is unchanged.
    leftover = client.get("/v1/search", params={"q": "Stress test bag", "top_k": "50"}).json()
    assert not [r for r in leftover["results"] if r["product_id"].startswith("stress-")]
