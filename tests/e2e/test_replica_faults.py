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


# A killed router replica: Serve 2.60's proxy answers the requests that were in flight on it
# with a plain-text 500 (measured without a front proxy: 4 of 189, then 2 of 333 and 2 of 360);
# its router retries a request only until a replica accepts it. The front proxy in front of it
# (launch/front_proxy.py, on the app's port here as under `lookalike serve`) holds each body
# and sends those requests again, so this case passes like the others.
@pytest.mark.parametrize("deployment", ["ImageEmbedderDeployment", "TextEmbedderDeployment",
                                        "SearchRouter"])
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
