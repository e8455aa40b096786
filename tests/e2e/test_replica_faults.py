"""Fault tests (issue 8b-d): one replica killed under bounded loopback load.

Image, text and hybrid searches run against the shared app (concurrency 4, tests/e2e/fault_load.py
bounds the load by counts and events); once it serves, one RUNNING replica of a deployment is
killed with SIGKILL (its process dies, as on an OOM kill; Serve's controller starts a
replacement). The load ends once the controller lists a replacement and then HEALED_OK requests
in a row succeeded, at least MIN_REQUESTS in all. At most 0.5% of requests may fail, every
failure must be a JSON 503, and none may fail later than 15 s after the kill.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from lookalike.catalog.product import Product
from tests.e2e.fault_load import (
    HEAL_WITHIN_S,
    MIN_REQUESTS,
    Outcome,
    back_to_full_service,
    figures,
    run_with_fault,
)
from tests.e2e.served import App

pytestmark = pytest.mark.slow

MAX_FAILED_PCT = 0.5
QUERIES = ["red dress", "black sneaker", "blue coat", "leather bag", "ankle boot"]


class ReplicaKill:
    """SIGKILL one RUNNING replica of `deployment`; healed once the Serve controller lists as
    many replicas as before, the killed one not among them."""

    def __init__(self, app: App, deployment: str) -> None:
        self.app, self.deployment = app, deployment
        self.before = app.running_pids(deployment)
        assert self.before, f"no RUNNING replica of {deployment}: {app.replicas()}"

    def kill(self) -> None:
        os.kill(self.before[0], signal.SIGKILL)

    def healed(self) -> bool:
        try:
            replicas = self.app.replicas()[self.deployment]
        except (httpx.HTTPError, KeyError):  # the dashboard busy: ask again next poll
            return False
        pids = [r.get("pid") for r in replicas]
        return self.before[0] not in pids and len(replicas) >= len(self.before)


# A killed router replica: Serve 2.60's proxy answers the requests that were in flight on it
# with a plain-text 500 (measured without a front proxy: 4 of 189, then 2 of 333 and 2 of 360);
# its router retries a request only until a replica accepts it. The front proxy in front of it
# (launch/front_proxy.py, on the app's port here as under `lookalike serve`) holds each body
# and sends those requests again, so this case passes like the others.
@pytest.mark.parametrize("deployment", ["ImageEmbedderDeployment", "TextEmbedderDeployment",
                                        "SearchRouter"])
def test_a_killed_replica_costs_at_most_half_a_percent(
        app: App, catalogue: tuple[Path, list[Product]], deployment: str) -> None:
    photos = [Path(p.images[0]).read_bytes() for p in catalogue[1][:8]]

    def mixed(client: httpx.AsyncClient, n: int):
        q = QUERIES[n % len(QUERIES)]
        if n % 3 == 0:
            return client.get("/v1/search", params={"q": q, "top_k": 5}), Outcome("text")
        files = {"image": ("q.jpg", photos[n % len(photos)], "image/jpeg")}
        data = {"text": q, "top_k": "5"} if n % 3 == 2 else {"top_k": "5"}
        return client.post("/v1/search", files=files, data=data), Outcome("image")

    fault = ReplicaKill(app, deployment)
    run = run_with_fault(app.url, mixed, fault.kill, fault.healed)
    report = figures(run)
    print(f"{deployment} killed:", report)
    failed = [o for o in run.outcomes if o.status != 200]
    assert report["failed_pct"] <= MAX_FAILED_PCT, (
        report, [(o.kind, o.status, o.code, o.error, round(o.started, 2)) for o in failed])
    assert all(o.status == 503 and o.json_body for o in failed), \
        [(o.kind, o.status, o.code, o.json_body, o.error, round(o.started, 2)) for o in failed]
    assert report["requests"] >= MIN_REQUESTS, report
    assert run.healed_at is not None, f"no replacement listed within {HEAL_WITHIN_S} s: {report}"
    assert back_to_full_service(run), f"not back to full service within {HEAL_WITHIN_S} s: {report}"
