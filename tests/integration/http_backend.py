"""A small HTTP server that answers the way Serve's proxy and replicas do, failures included (a
plain-text 500, a connection closed without an answer, a back-pressure 503), for the front
proxy's tests: what it does depends on the path's first part; each answer names its port. An
`X-Work-S` header makes it take that long; it counts the requests it works on at once and keeps
the headers each path got last."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lookalike.ports import free_port


class Backend(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.attempts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.working = self.most_at_once = 0
        self.seen: dict[str, Message] = {}  # the headers of the last request on each path


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
            self.server.seen[self.path] = self.headers
            attempt = self.server.attempts[self.path]
            self.server.working += 1
            self.server.most_at_once = max(self.server.most_at_once, self.server.working)
        try:
            time.sleep(float(self.headers.get("X-Work-S") or 0))
        finally:
            # Done working before the answer goes out: the proxy may send the next request
            # the moment it has the answer, and it must not count as two at once.
            with self.server.lock:
                self.server.working -= 1
        self._reply(attempt, body)

    def _reply(self, attempt: int, body: bytes) -> None:
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
        elif kind == "junk":  # not HTTP at all
            self.close_connection = True
            self.wfile.write(b"garbage\r\n\r\n")
            self.wfile.flush()
            self.connection.shutdown(2)
        elif kind == "redirect":  # Starlette's trailing-slash redirect, built from Host, to
            # the rest of the path (/redirect/a/ -> http://HOST/a)
            self.send_response(307)
            rest = self.path[len("/redirect"):].rstrip("/")
            self.send_header("Location", f"http://{self.headers['Host']}{rest}")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif kind == "bug":  # the app's own 500 (a bug it answers in JSON): never sent again
            self._answer(500, b'{"error":{"code":"internal","message":"internal error"}}',
                         "application/json")
        elif kind == "apperror":  # the app's JSON errors pass unchanged
            self._answer(422, b'{"error":{"code":"invalid","message":"no"}}', "application/json")
        else:
            self._answer(200, json.dumps({"attempt": attempt, "bytes": len(body),
                                          "port": self.server.server_address[1]}).encode(),
                         "application/json")

    do_GET = do_POST = do_PUT = _handle


@contextmanager
def serving(port: int | None = None) -> Iterator[Backend]:
    """A Backend on `port` (a free loopback port if none), answering from a thread until the
    block ends."""
    server = Backend(port or free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
