"""The front proxy's direct routes (launch/replica_routes.py) with the real HAProxy binary over
real loopback HTTP: two small servers stand for the router replicas' own ports, a third for
Serve's proxy, the backup. The whole app behind it: tests/e2e/test_deploy_path.py."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from lookalike.launch.front_proxy import FrontProxy
from lookalike.ports import free_port
from tests.integration.http_backend import Backend, serving


class Listed:
    """The ports the controller would name, changed by the test (or failing)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports, self.fail = ports, False

    def __call__(self) -> list[int]:
        if self.fail:
            raise TimeoutError("the controller did not answer")
        return list(self.ports)


@pytest.fixture
def servers() -> Iterator[tuple[Backend, Backend, Backend]]:
    with ExitStack() as stack:
        yield tuple(stack.enter_context(serving()) for _ in range(3))  # type: ignore[misc]


def port(server: Backend) -> int:
    return server.server_address[1]


@pytest.fixture
def routed(servers: tuple[Backend, Backend, Backend], tmp_path: Path) -> Iterator[tuple[FrontProxy, Listed]]:
    a, b, serve_proxy = servers
    listed = Listed([port(a), port(b)])
    proxy = FrontProxy(host="127.0.0.1", port=free_port(), backend_port=port(serve_proxy),
                       work_dir=tmp_path, replica_ports=listed)
    proxy.start()
    yield proxy, listed
    proxy.stop()


def answered_by(front: FrontProxy, n: int = 20) -> Counter[int]:
    with httpx.Client(base_url=front.url, timeout=10) as client:
        got: Counter[int] = Counter()
        for i in range(n):
            resp = client.get(f"/ok/{i}-{time.monotonic()}")
            assert resp.status_code == 200, resp.text
            got[resp.json()["port"]] += 1
    return got


def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s:.0f} s")
        time.sleep(0.1)


def routes_are(front: FrontProxy, ports: set[int]) -> Callable[[], bool]:
    assert front.routes is not None
    routes = front.routes
    return lambda: {p for p in routes.applied if p is not None} == ports


def test_requests_go_to_the_listed_replicas_and_not_to_serve_proxy(
        routed: tuple[FrontProxy, Listed], servers: tuple[Backend, Backend, Backend]) -> None:
    front, _ = routed
    a, b, _serve_proxy = servers
    eventually(routes_are(front, {port(a), port(b)}))
    got = answered_by(front)
    assert set(got) == {port(a), port(b)}, got  # both replicas, never Serve's proxy


def test_a_replica_that_leaves_the_list_gets_no_more_requests_until_it_is_back(
        routed: tuple[FrontProxy, Listed], servers: tuple[Backend, Backend, Backend]) -> None:
    front, listed = routed
    a, b, _ = servers
    eventually(routes_are(front, {port(a), port(b)}))
    listed.ports = [port(b)]
    eventually(routes_are(front, {port(b)}))
    assert answered_by(front) == {port(b): 20}
    # A replacement replica often gets the port its predecessor had, so the same slot
    # takes the same address again (which HAProxy answers with "no need to change").
    listed.ports = [port(a), port(b)]
    eventually(routes_are(front, {port(a), port(b)}))
    assert set(answered_by(front)) == {port(a), port(b)}


def test_serve_proxy_answers_while_no_replica_is_listed_and_routes_hold_when_unknown(
        routed: tuple[FrontProxy, Listed], servers: tuple[Backend, Backend, Backend]) -> None:
    front, listed = routed
    a, b, serve_proxy = servers
    eventually(routes_are(front, {port(a), port(b)}))
    listed.fail = True  # the controller unreachable: keep routing as before
    time.sleep(2.5)
    assert set(answered_by(front)) == {port(a), port(b)}
    listed.fail, listed.ports = False, []
    eventually(routes_are(front, set()))
    assert answered_by(front) == {port(serve_proxy): 20}


def test_a_listed_replica_that_is_gone_costs_no_request(
        routed: tuple[FrontProxy, Listed], servers: tuple[Backend, Backend, Backend]) -> None:
    front, listed = routed
    a, _, _ = servers
    gone = free_port()  # nothing listens there: a replica that died since the last poll
    listed.ports = [gone, port(a)]
    eventually(routes_are(front, {gone, port(a)}))
    # Each request refused by the dead port is sent again to the other slot.
    assert answered_by(front, 40) == {port(a): 40}


def test_routes_are_set_again_after_the_front_proxy_restarts(
        routed: tuple[FrontProxy, Listed], servers: tuple[Backend, Backend, Backend]) -> None:
    front, _ = routed
    a, b, _ = servers
    eventually(routes_are(front, {port(a), port(b)}))
    first = front.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    eventually(lambda: front.pid not in (None, first))
    # A new HAProxy starts from its config (Serve's proxy only) until the next sync.
    eventually(lambda: set(answered_by(front, 10)) == {port(a), port(b)})
    assert front.restarts == 1


@pytest.fixture
def in_line(servers: tuple[Backend, Backend, Backend],
            tmp_path: Path) -> Iterator[tuple[FrontProxy, Listed]]:
    """Photo searches one at a time per replica, in line for at most 1 s."""
    a, b, serve_proxy = servers
    listed = Listed([port(a), port(b)])
    proxy = FrontProxy(host="127.0.0.1", port=free_port(), backend_port=port(serve_proxy),
                       work_dir=tmp_path, replica_ports=listed, photo_searches=1, queue_s=1.0)
    proxy.start()
    eventually(routes_are(proxy, {port(a), port(b)}))
    yield proxy, listed
    proxy.stop()


def at_once(front: FrontProxy, n: int, *, photo: bool, work_s: float) -> list[httpx.Response]:
    """n searches sent together, each taking the server work_s."""
    def one(i: int) -> httpx.Response:
        headers = {"X-Work-S": str(work_s)}
        with httpx.Client(base_url=front.url, timeout=30) as client:
            if photo:
                return client.post("/v1/search", headers=headers,
                                   files={"image": ("q.jpg", b"\xff\xd8 not really", "image/jpeg")})
            return client.get("/v1/search", params={"q": f"red {i}"}, headers=headers)
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_photo_searches_wait_in_line_and_others_do_not(
        in_line: tuple[FrontProxy, Listed], servers: tuple[Backend, Backend, Backend]) -> None:
    front, _ = in_line
    a, b, serve_proxy = servers
    photos = at_once(front, 6, photo=True, work_s=0.1)
    assert [r.status_code for r in photos] == [200] * 6
    assert a.most_at_once == b.most_at_once == 1  # one photo search per replica at a time
    assert {r.json()["port"] for r in photos} == {port(a), port(b)}
    texts = at_once(front, 6, photo=False, work_s=0.3)
    assert [r.status_code for r in texts] == [200] * 6
    assert a.most_at_once + b.most_at_once > 2  # a text search is never held in line
    assert serve_proxy.most_at_once == 0


def test_a_photo_search_in_line_too_long_is_a_json_503_overloaded(
        in_line: tuple[FrontProxy, Listed]) -> None:
    front, _ = in_line
    answers = at_once(front, 4, photo=True, work_s=2.5)  # two work, two wait past 1 s
    late = [r for r in answers if r.status_code != 200]
    assert len(late) == 2, [r.status_code for r in answers]
    for r in late:
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "overloaded"


def test_a_replica_killed_costs_no_photo_search_while_the_live_one_is_full_and_its_port_comes_back(
        in_line: tuple[FrontProxy, Listed], servers: tuple[Backend, Backend, Backend]) -> None:
    front, listed = in_line
    a, _, serve_proxy = servers
    with serving() as doomed:
        listed.ports = [port(doomed), port(a)]
        eventually(routes_are(front, {port(doomed), port(a)}))
        eventually(lambda: set(answered_by(front, 10)) == {port(doomed), port(a)})
    # Killed, still listed (the controller has not noticed yet), its slot up, and the live
    # slot at its one photo search: a retry must wait in line for the live one, not go back
    # to the dead port (refused in a millisecond) until its tries run out.
    photos = at_once(front, 3, photo=True, work_s=0.2)
    assert [r.status_code for r in photos] == [200] * 3, [r.text for r in photos]
    assert {r.json()["port"] for r in photos} == {port(a)}
    # The replacement replica listens on the port its predecessor had: the slot's checks
    # bring it back without a change of routes.
    with serving(port(doomed)) as replacement:
        eventually(lambda: set(answered_by(front, 10)) == {port(doomed), port(a)})
        assert replacement.most_at_once >= 1
    assert serve_proxy.most_at_once == 0
