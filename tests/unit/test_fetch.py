"""The SSRF guard, with a local resolver stub and a loopback HTTP server (no real DNS)."""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from lookalike.fetch import (
    OPERATOR,
    SHOPPER,
    FetchError,
    FetchTimeout,
    TooLargeError,
    fetch_url,
    is_public,
    resolve_target,
)


class StubResolver:
    """Answers from a table and counts lookups (a second lookup is what DNS rebinding needs)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        return self.answers[min(self.calls - 1, len(self.answers) - 1)]


NON_GLOBAL = ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
              "100.100.100.200", "100.64.0.1", "0.0.0.0", "224.0.0.1", "::1", "fd00::1",
              "fe80::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "2002:7f00:1::",
              "2002:a9fe:a9fe::1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "192.0.0.170"]


@pytest.mark.parametrize("address", NON_GLOBAL)
def test_every_non_global_form_is_refused(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))
    with pytest.raises(FetchError, match="non-public"):
        asyncio.run(resolve_target("http://images.example/a.jpg", SHOPPER, StubResolver([address])))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_global_addresses_pass(address: str) -> None:
    target = asyncio.run(resolve_target("http://images.example/a.jpg", SHOPPER,
                                        StubResolver([address])))
    assert target.address == address and target.host == "images.example"


def test_one_private_answer_among_public_ones_is_refused() -> None:
    with pytest.raises(FetchError, match="non-public"):
        asyncio.run(resolve_target("http://images.example/a.jpg", SHOPPER,
                                   StubResolver(["93.184.216.34", "127.0.0.1"])))


@pytest.mark.parametrize("url,match", [
    ("http://images.example:8080/a.jpg", "port"), ("https://images.example:22/a.jpg", "port"),
    ("ftp://images.example/a.jpg", "http"), ("http://" + "a" * 300 + "/a.jpg", "host"),
    ("http://" + "a" * 64 + ".example/a.jpg", "host"),
    ("http://u:p@images.example/a", "credentials"),
    ("http://images.example:99999/a.jpg", "port"), ("http://[::ffff:10.0.0.1]/a.jpg", "non-public"),
])
def test_malformed_or_forbidden_urls_are_refused(url: str, match: str) -> None:
    with pytest.raises(FetchError, match=match):
        asyncio.run(resolve_target(url, SHOPPER, StubResolver(["93.184.216.34"])))


class Handler(http.server.BaseHTTPRequestHandler):
    hosts: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        Handler.hosts.append(self.headers.get("Host", ""))
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
        elif self.path == "/slow":
            self.send_response(200)
            self.end_headers()
            for _ in range(100):  # dribbles: each read is quick, the whole is not
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        elif self.path == "/endless":
            self.send_response(200)
            self.end_headers()  # no Content-Length
            for _ in range(64):
                self.wfile.write(b"x" * 65536)
        else:
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"image")


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()


# Loopback stands in for "the pinned public address" here, so private addresses are allowed;
# the rest of the shopper policy (no redirects, deadline, size) is as in production.
LOCAL = replace(SHOPPER, allow_private=True, ports=None, deadline_s=2.0, max_bytes=1024 * 1024)


def test_the_connection_goes_to_the_one_resolved_address(server: int) -> None:
    # A rebinding resolver: the check's answer (loopback here) and then an address that would
    # reach something else. Only the first lookup ever happens; Host and SNI keep the name.
    resolver = StubResolver(["127.0.0.1"], ["10.255.255.1"])
    data = asyncio.run(fetch_url(f"http://images.example:{server}/a.jpg",
                                 replace(LOCAL, retries=1), resolver=resolver))
    assert data == b"image" and resolver.calls == 1
    assert Handler.hosts[-1] == f"images.example:{server}"


def test_redirects_are_not_followed(server: int) -> None:
    with pytest.raises(FetchError, match="redirect"):
        asyncio.run(fetch_url(f"http://images.example:{server}/redirect", LOCAL,
                              resolver=StubResolver(["127.0.0.1"])))


def test_a_total_deadline_bounds_a_dribbling_server(server: int) -> None:
    with pytest.raises(FetchTimeout):
        asyncio.run(fetch_url(f"http://images.example:{server}/slow", LOCAL,
                              resolver=StubResolver(["127.0.0.1"])))


def test_size_is_counted_while_streaming(server: int) -> None:
    with pytest.raises(TooLargeError):
        asyncio.run(fetch_url(f"http://images.example:{server}/endless", LOCAL,
                              resolver=StubResolver(["127.0.0.1"])))


def test_the_operator_policy_is_the_trusted_one() -> None:
    assert OPERATOR.allow_private and OPERATOR.ports is None and OPERATOR.follow_redirects
    assert not SHOPPER.allow_private and SHOPPER.ports == {80, 443}
    assert not SHOPPER.follow_redirects
