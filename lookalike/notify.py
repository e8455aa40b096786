"""Tell the running app's routers that the collection alias moved (`lookalike upgrade`) or
the catalogue changed (`lookalike ingest`).

POST /v1/admin/refresh reaches the one router replica the proxy picks, and names it. The call
is repeated until `quiet` calls in a row found no replica not seen before (at most `most`): with
two idle replicas that misses one with odds of 2 in 2^quiet. A replica it misses still switches
at its next alias re-check (LOOKALIKE_ALIAS_RECHECK_S) or at its first failed read; a replica
started later resolves the alias at its start.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

TIMEOUT_S = 60.0  # a replica rescans its facets before it answers


@dataclass
class Told:
    replicas: dict[str, str] = field(default_factory=dict)  # replica -> collection it serves
    error: str = ""  # why the app could not be told (not running, wrong key)


def tell_routers(app_url: str, admin_key: str, *, quiet: int = 6, most: int = 24,
                 client: Any = None) -> Told:
    """`client`: an httpx-style client to post with (tests pass the app's TestClient)."""
    told = Told()
    notice = uuid.uuid4().hex  # the replicas act on it once, however often it reaches them
    own = client is None
    http = client or httpx.Client(timeout=TIMEOUT_S)
    try:
        calm = 0
        for _ in range(most):
            try:
                r = http.post(f"{app_url.rstrip('/')}/v1/admin/refresh",
                              params={"notice": notice},
                              headers={"Authorization": f"Bearer {admin_key}"})
            except httpx.HTTPError as exc:
                told.error = f"{type(exc).__name__}: {exc}"
                return told
            if r.status_code != 200:
                told.error = f"HTTP {r.status_code}: {r.text[:200]}"
                return told
            body = r.json()
            calm = calm + 1 if body["replica"] in told.replicas else 0
            told.replicas[body["replica"]] = body["collection"]
            if calm >= quiet:
                break
    finally:
        if own:
            http.close()
    return told
