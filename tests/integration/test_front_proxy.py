"""The front proxy (launch/front_proxy.py): the real HAProxy binary over real loopback HTTP, in
front of a small HTTP server that fails the way Serve's proxy does when a router replica dies
(a plain-text 500, or a connection closed without an answer). The whole app behind it is
tests/e2e/test_replica_faults.py's router-kill case."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from launch.front_proxy import BUFFER_BYTES, RETRIES, FrontProxy
from lookalike.ports import free_port



class Backend(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.attempts: Counter[str] = Counter()
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server: Backend

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.attempts[self.path] += 1
            attempt = self.server.attempts[self.path]
        kind = self.path.split("/")[1]
        if kind == "flaky" and attempt == 1:  # Serve's answer for a request on a dead replica
            self._answer(500, b"Internal Server Error", "text/plain")
        elif kind == "hangup" and attempt == 1:  # closed without an answer
            self.close_connection = True
            self.connection.shutdown(2)
        elif kind == "dead":
            self._answer(500, b"Internal Server Error", "text/plain")
        elif kind == "busy":  # Serve's own back-pressure answer
            self._answer(503, b"Service Unavailable", "text/plain")
        elif kind == "apperror":  # the app's JSON errors pass unchanged
            self._answer(422, b'{"error":{"code":"invalid","message":"no"}}', "application/json")
        else:
            self._answer(200, json.dumps({"attempt": attempt, "bytes": len(body)}).encode(),
                         "application/json")

    do_GET = do_POST = do_PUT = _handle


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend(free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


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
        for path in ("/flaky/1", "/hangup/1"):
            resp = client.post(path, content=body)
            assert resp.status_code == 200, (path, resp.text)
            assert resp.json() == {"attempt": 2, "bytes": len(body)}
            assert backend.attempts[path] == 2


def test_what_still_fails_is_a_json_503_with_retry_after(
        front: FrontProxy, backend: Backend) -> None:
    with httpx.Client(base_url=front.url, timeout=10) as client:
        dead = client.get("/dead/1")
        busy = client.get("/busy/1")
        app_error = client.get("/apperror/1")
    assert backend.attempts["/dead/1"] == 1 + RETRIES
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
