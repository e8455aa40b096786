"""The front proxy (launch/front_proxy.py): the real HAProxy binary over real loopback HTTP, in
front of a small HTTP server that fails the way Serve's proxy does when a router replica dies
(a plain-text 500, or a connection closed without an answer). The whole app behind it is
tests/e2e/test_replica_faults.py's router-kill case."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lookalike.launch.front_proxy import BUFFER_BYTES, FrontProxy
from lookalike.ports import free_port
from tests.integration.http_backend import Backend, serving


@pytest.fixture
def backend() -> Iterator[Backend]:
    with serving() as server:
        yield server


@pytest.fixture
def front(backend: Backend, tmp_path: Path) -> Iterator[FrontProxy]:
    proxy = FrontProxy(host="127.0.0.1", port=free_port(), backend_port=backend.server_address[1],
                       work_dir=tmp_path)
    proxy.start()
    yield proxy
    proxy.stop()


def test_a_request_whose_replica_died_is_sent_again_with_its_whole_body(
        front: FrontProxy, backend: Backend) -> None:
    body = os.urandom(BUFFER_BYTES - 64 * 1024)  # the largest upload it holds whole
    with httpx.Client(base_url=front.url, timeout=10) as client:
        resp = client.post("/hangup/1", content=body)  # closed without an answer
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"attempt": 2, "bytes": len(body), "port": backend.server_address[1]}
    assert backend.attempts["/hangup/1"] == 2


def test_an_answer_is_never_sent_again_and_what_fails_is_a_json_503_with_retry_after(
        front: FrontProxy, backend: Backend) -> None:
    with httpx.Client(base_url=front.url, timeout=10) as client:
        dead = client.get("/dead/1")  # Serve's plain-text 500: an answer, so no retry
        busy = client.get("/busy/1")
        app_error = client.get("/apperror/1")
    assert backend.attempts["/dead/1"] == 1
    for resp, code in ((dead, "unavailable"), (busy, "overloaded")):
        assert resp.status_code == 503
        assert resp.headers["content-type"].startswith("application/json")
        assert resp.json()["error"]["code"] == code
        assert resp.headers["retry-after"] == "1"
    assert app_error.status_code == 422
    assert app_error.json() == {"error": {"code": "invalid", "message": "no"}}
    assert backend.attempts["/apperror/1"] == 1  # a 4xx is never sent twice


def test_no_backend_is_a_json_503(front: FrontProxy, backend: Backend) -> None:
    backend.shutdown()
    backend.server_close()
    resp = httpx.get(front.url + "/anything", timeout=15)
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "unavailable"
    assert resp.headers["retry-after"] == "1"


def test_a_killed_front_proxy_is_restarted(front: FrontProxy) -> None:
    first = front.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if httpx.get(front.url + "/ok/1", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    else:
        pytest.fail("the front proxy did not come back within 10 s")
    assert front.pid not in (None, first)
    assert front.restarts == 1
