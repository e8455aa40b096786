"""Issue 31's hostile inputs against the real app over HTTP (Ray Serve routers, milvus-lite, the
packaged models, the front proxy): each class is a 4xx JSON error with a code, answered within
10 s, and while it is handled the same router replica keeps answering /healthz and a text
search without delay. The hostile bytes are built by tests/hostile.py.

The probes go to the same replica as the hostile request: its own port (the front proxy's
direct route, launch/replica_routes.py), so a replica that stalled its event loop or its store
threads would show here even with another replica free.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from tests import hostile
from tests.e2e.conftest import ADMIN_KEY
from tests.e2e.served import App, wait_until

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is 3.11+; only the checker reads it

ANSWER_WITHIN_S = 10.0
HEALTHZ_DELAY_S = 1.0  # the most a /healthz may take while a hostile request is handled
SEARCH_DELAY_S = 1.0  # ... and the most a text search may take beyond its idle time (~1 s)
SEARCH = {"q": "red dress", "top_k": 3}


@pytest.fixture(scope="module")
def replica(app: App) -> str:
    """One router replica's own URL: its direct route's port in the front proxy."""
    ports = wait_until(app.routed_ports, timeout_s=15, what="a direct route to a router replica")
    return f"http://127.0.0.1:{ports[0]}"


@pytest.fixture(scope="module")
def idle_search_s(replica: str) -> float:
    """How long a text search takes on that replica with nothing else going on."""
    with httpx.Client(base_url=replica, timeout=30) as c:
        c.get("/v1/search", params=SEARCH).raise_for_status()  # warm
        times = []
        for _ in range(5):
            start = time.perf_counter()
            c.get("/v1/search", params=SEARCH).raise_for_status()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


class Probe:
    """/healthz and a text search, one after the other, in a thread, until stopped (after at
    least one round), each with a deadline: one that answers later, or not at all, is an
    error (a deadline that fails the test, not a timing to assert on)."""

    def __init__(self, url: str, *, healthz_within_s: float, search_within_s: float) -> None:
        self.url = url
        self.deadlines = {"/healthz": healthz_within_s, "/v1/search": search_within_s}
        self.rounds = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url) as c:
            while True:
                for path, params in (("/healthz", None), ("/v1/search", SEARCH)):
                    within = self.deadlines[path]
                    try:
                        resp = c.get(path, params=params, timeout=within)
                        if resp.status_code != 200:
                            self.errors.append(f"{path}: {resp.status_code}")
                    except httpx.TimeoutException:
                        self.errors.append(f"{path}: no answer within {within:.1f} s")
                    except httpx.HTTPError as exc:
                        self.errors.append(f"{path}: {exc!r}")
                self.rounds += 1
                if self._stop.is_set():
                    return

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


@pytest.fixture
def hostile_client(replica: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=replica, timeout=60) as c:
        yield c


@pytest.mark.parametrize("case", list(hostile.CASES))
def test_a_hostile_input_is_a_quick_4xx_and_stalls_nothing(
        case: str, replica: str, hostile_client: httpx.Client, idle_search_s: float) -> None:
    method, path, kwargs = hostile.request_of(case)  # built before the clock starts
    if method == "PUT":
        kwargs = {**kwargs, "headers": {"Authorization": f"Bearer {ADMIN_KEY}"}}
    with Probe(replica, healthz_within_s=HEALTHZ_DELAY_S,
               search_within_s=idle_search_s + SEARCH_DELAY_S) as probe:
        try:
            resp = hostile_client.request(method, path, timeout=ANSWER_WITHIN_S, **kwargs)
        except httpx.TimeoutException:
            pytest.fail(f"{case}: no answer within {ANSWER_WITHIN_S:.0f} s")
    status, code = hostile.EXPECTED[case]
    assert resp.status_code == status, resp.text[:300]
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json()["error"]["code"] == code
    assert probe.rounds >= 1
    assert not probe.errors, (probe.errors, idle_search_s)


def test_through_the_front_proxy_too(app_url: str) -> None:
    """The same inputs as a shopper sends them (HAProxy in front): never a 5xx."""
    with httpx.Client(base_url=app_url, timeout=60) as c:
        got = {case: hostile.send(c, case, admin_key=ADMIN_KEY) for case in hostile.CASES}
    assert {case: (r.status_code, r.json()["error"]["code"]) for case, r in got.items()} == \
        hostile.EXPECTED


def test_recommend_takes_a_real_photo_as_base64(app_url: str) -> None:
    import base64

    photo = hostile.noise_jpeg((800, 600))
    assert len(photo) > 64 * 1024  # over the old limit of every JSON body but /v1/search's
    with httpx.Client(base_url=app_url, timeout=60) as c:
        resp = c.post("/v1/recommend", json={"image_base64": base64.b64encode(photo).decode(),
                                             "top_k": 3})
    assert resp.status_code == 200, resp.text[:300]
    assert resp.json()["results"]
