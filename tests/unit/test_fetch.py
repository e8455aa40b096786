"""The SSRF guard, with a local resolver stub and a loopback HTTP server (no real DNS)."""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import ClassVar

import pytest

from lookalike.fetch import (
    OPERATOR,
    SHOPPER,
    FetchError,
    FetchTimeout,
    SyncFetcher,
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


# IPv6 spellings of an IPv4 address, each with a public IPv4 inside (so unwrapping and checking
# the IPv4 part passes them) and with a private one: all refused, whatever they carry.
TRANSITION = [
    "::8.8.8.8", "::127.0.0.1", "::a9fe:a9fe",  # IPv4-compatible, ::/96
    "::ffff:8.8.8.8", "::ffff:0808:0808",  # IPv4-mapped, ::ffff:0:0/96
    "::ffff:0:8.8.8.8", "::ffff:0:127.0.0.1", "::ffff:0:a9fe:a9fe",  # IPv4-translated
    "64:ff9b::8.8.8.8", "64:ff9b::808:808",  # NAT64, 64:ff9b::/96
    "64:ff9b:1::8.8.8.8", "64:ff9b:1::7f00:1", "64:ff9b:1:ffff::a9fe:a9fe",  # 64:ff9b:1::/48
    "2002:808:808::1", "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # 6to4, Teredo
    "3fff::1", "5f00::1", "fec0::1", "4000::1", "ff0e::1",  # not global unicast
]


@pytest.mark.parametrize("address", TRANSITION)
def test_ipv4_in_ipv6_spellings_and_non_unicast_ranges_are_refused(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))
    with pytest.raises(FetchError, match="non-public"):
        asyncio.run(resolve_target("http://images.example/a.jpg", SHOPPER, StubResolver([address])))
    with pytest.raises(FetchError, match="non-public"):  # and as a URL's literal
        asyncio.run(resolve_target(f"http://[{address}]/a.jpg", SHOPPER, StubResolver([])))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946",
                                     "2a00:1450:4001:81c::200e"])
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
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse can be seen
    hosts: ClassVar[list[str]] = []
    calls: ClassVar[dict[str, int]] = {}
    peers: ClassVar[set[int]] = set()  # client ports: one per connection

    def log_message(self, *args: object) -> None:
        pass

    def plain(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        Handler.hosts.append(self.headers.get("Host", ""))
        Handler.peers.add(self.client_address[1])
        n = Handler.calls[self.path] = Handler.calls.get(self.path, 0) + 1
        port = self.server.server_address[1]
        if self.path.startswith("/flaky") and n == 1:
            self.plain(503)
        elif self.path == "/gone":
            self.plain(404)
        elif self.path == "/hop":  # relative, then absolute to another name: two hops
            self.plain(302, Location="/hop2")
        elif self.path == "/hop2":
            self.plain(302, Location=f"http://other.example:{port}/a.jpg")
        elif self.path == "/loop":
            self.plain(302, Location="/loop")
        elif self.path == "/redirect":
            self.plain(302, Location="http://169.254.169.254/latest/meta-data/")
        elif self.path == "/slow":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(100):  # dribbles: each read is quick, the whole is not
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        elif self.path == "/endless":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()  # no Content-Length
            for _ in range(64):
                self.wfile.write(b"x" * 65536)
        else:
            self.plain(200, b"image")


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
    assert OPERATOR.retries > 0 and OPERATOR.deadline_s > SHOPPER.deadline_s
    assert not SHOPPER.allow_private and SHOPPER.ports == {80, 443}
    assert not SHOPPER.follow_redirects and SHOPPER.retries == 0


# The trusted policy against the same loopback server: same code, only the policy differs.
TRUSTED = replace(OPERATOR, deadline_s=5.0, backoff_s=0.01)


def test_shopper_refuses_to_fetch_private_addresses_the_operator_may(server: int) -> None:
    url = f"http://images.example:{server}/a.jpg"
    with pytest.raises(FetchError, match="non-public"):
        asyncio.run(fetch_url(url, replace(SHOPPER, ports=None),
                              resolver=StubResolver(["127.0.0.1"])))
    with pytest.raises(FetchError, match="port"):
        asyncio.run(fetch_url(url, replace(SHOPPER, allow_private=True),
                              resolver=StubResolver(["127.0.0.1"])))
    assert asyncio.run(fetch_url(url, TRUSTED, resolver=StubResolver(["127.0.0.1"]))) == b"image"


def test_the_operator_policy_follows_redirects_resolving_each_hop_once(server: int) -> None:
    resolver = StubResolver(["127.0.0.1"])
    data = asyncio.run(fetch_url(f"http://images.example:{server}/hop", TRUSTED,
                                 resolver=resolver))
    # /hop, /hop2 (images.example), /a.jpg (other.example): three hops, one lookup each, and
    # each hop checked and pinned like a first request.
    assert data == b"image" and resolver.calls == 3
    assert Handler.hosts[-1] == f"other.example:{server}"
    with pytest.raises(FetchError, match="redirected more than 2 times"):
        asyncio.run(fetch_url(f"http://images.example:{server}/loop",
                              replace(TRUSTED, max_redirects=2), resolver=resolver))


def test_retries_only_what_can_succeed_later(server: int) -> None:
    resolver = StubResolver(["127.0.0.1"])
    # 503 then 200: the trusted policy retries; the shopper's (no retries) reports the 503.
    assert asyncio.run(fetch_url(f"http://i.example:{server}/flaky-a", TRUSTED,
                                 resolver=resolver)) == b"image"
    assert Handler.calls["/flaky-a"] == 2
    with pytest.raises(FetchError, match="HTTP 503") as shopper:
        asyncio.run(fetch_url(f"http://i.example:{server}/flaky-b", LOCAL, resolver=resolver))
    assert shopper.value.attempts == 1 and Handler.calls["/flaky-b"] == 1
    # A 404 will not change: never retried, whatever the policy allows.
    with pytest.raises(FetchError, match="HTTP 404") as gone:
        asyncio.run(fetch_url(f"http://i.example:{server}/gone", TRUSTED, resolver=resolver))
    assert gone.value.attempts == 1 and Handler.calls["/gone"] == 1


@pytest.mark.parametrize("loops", [1, 4])
def test_the_sync_fetcher_serves_many_threads_on_kept_alive_connections(
        server: int, loops: int) -> None:
    # The ingest's face of the same code: 8 worker threads, 64 images, one fetcher.
    Handler.peers.clear()
    urls = [f"http://images.example:{server}/img/{i}.jpg" for i in range(64)]
    with SyncFetcher(TRUSTED, resolver=StubResolver(["127.0.0.1"]), max_connections=8,
                     loops=loops) as f, ThreadPoolExecutor(8) as pool:
        assert list(pool.map(f.fetch, urls)) == [b"image"] * 64
    # Kept alive: far fewer connections than fetches (each loop's pool holds at most 8).
    assert 1 <= len(Handler.peers) <= 8 * loops < 64
    with pytest.raises(RuntimeError, match="closed"):
        f.fetch(urls[0])


def test_the_fetcher_keeps_a_bounded_number_of_pools(server: int, monkeypatch) -> None:
    from lookalike.fetch import Fetcher

    async def many_hosts() -> int:
        async with Fetcher(TRUSTED, resolver=StubResolver(["127.0.0.1"])) as fetcher:
            monkeypatch.setattr(fetcher, "MAX_POOLS", 3)
            for i in range(6):  # six host names: six pinned pools, the idle oldest closed
                assert await fetcher.fetch(f"http://h{i}.example:{server}/a.jpg") == b"image"
            return len(fetcher._pools)

    assert asyncio.run(many_hosts()) == 3
