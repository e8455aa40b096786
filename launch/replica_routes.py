"""The front proxy's direct routes: HAProxy sends each request straight to a router replica's
own HTTP port (Serve's direct ingress), not through Serve's proxy.

Why: Serve's proxy is a Python process that re-sends every request to a replica over Ray. On
2 cores, under 16 clients of image search, it took ~7 ms of CPU per request and the router
~4 ms more to take the request from it (docs/benchmarks.md, "Where the CPU goes"). With
RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (launch/local_ray.py) every router replica also listens for
HTTP itself, on a port the Serve controller hands out; HAProxy can reach it directly.

How: the front proxy's config holds SLOTS server lines, all in maintenance, with Serve's proxy
as the backup server, which serves while no slot is up (at start, before the first sync, or
when the controller cannot be asked). A thread asks the controller for the router replicas'
ports every POLL_S and sets the slots through HAProxy's admin socket: a replica that Serve
stops keeps answering for 30 s after it leaves the list (Serve's drain period for direct
ingress), and one that dies leaves it within a poll; a connection refused in between is sent
again to another slot (the front proxy's retry-on, `option redispatch`).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)
SLOTS = 16  # router replicas one front proxy can route to; more are reached through the backup
POLL_S = 1.0
# The front proxy's backends (launch/front_proxy.py): everything, and photo searches in line.
BACKEND, PHOTOS = "serve", "photos"

Ports = Callable[[], Sequence[int]]


def slot_name(i: int) -> str:
    return f"replica{i}"


def assign(current: Sequence[int | None], ports: Sequence[int]) -> list[int | None]:
    """Which port each slot routes to: a port keeps its slot (its connections and counts stay),
    a gone port frees its slot, a new one takes the first free slot; more ports than slots:
    the extra ones get none."""
    wanted = list(dict.fromkeys(ports))
    out = [p if p in wanted else None for p in current]
    for port in wanted:
        if port not in out and None in out:
            out[out.index(None)] = port
    return out


class AdminSocket:
    """HAProxy's runtime API (`stats socket ... level admin`): one command per connection."""

    def __init__(self, path: Path, timeout_s: float = 2.0) -> None:
        self.path, self.timeout_s = path, timeout_s

    def send(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(self.timeout_s)
            s.connect(str(self.path))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace").strip()


class RouteSync:
    """Keeps the front proxy's slots equal to the router replicas' ports on `host`."""

    def __init__(self, *, ports: Ports, admin: AdminSocket, host: str, slots: int = SLOTS,
                 poll_s: float = POLL_S, backends: Sequence[str] = (BACKEND,)) -> None:
        self.ports, self.admin, self.host, self.poll_s = ports, admin, host, poll_s
        self.backends = tuple(backends)  # each has the same slots
        self.applied: list[int | None] = [None] * slots  # what HAProxy has now
        # A reset never lands in the middle of a round, which could then mark a slot set on
        # the HAProxy that just died.
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reset(self) -> None:
        """HAProxy was (re)started from its config: every slot is in maintenance again."""
        with self._lock:
            self.applied = [None] * len(self.applied)

    def sync(self) -> bool:
        """One round: ask for the ports, apply what changed. False when either side failed (the
        routes stay as they were; the next round tries again)."""
        try:
            ports = list(self.ports())
        except Exception as exc:  # noqa: BLE001 - the controller restarting, Ray shutting down
            log.debug("router replica ports unknown this round: %s", exc)
            return False
        with self._lock:
            return self._apply(ports)

    def _apply(self, ports: Sequence[int]) -> bool:
        target = assign(self.applied, ports)
        try:
            for i, (old, new) in enumerate(zip(self.applied, target)):
                if old == new:
                    continue
                for backend in self.backends:
                    server = f"{backend}/{slot_name(i)}"
                    if new is None:
                        self._command(f"set server {server} state maint")
                    else:
                        self._command(f"set server {server} addr {self.host} port {new}")
                        self._command(f"set server {server} state ready")
                self.applied[i] = new
        except OSError as exc:  # HAProxy restarting: its supervisor resets us when it is back
            log.debug("front proxy admin socket: %s", exc)
            return False
        return True

    def _command(self, command: str) -> None:
        answer = self.admin.send(command)
        # Success is an empty answer or HAProxy's note on the address: "... changed from ...",
        # or "no need to change ..." when a slot gets back the port it had (the controller may
        # give a replacement its predecessor's). Anything else is a refusal ("No such
        # server."), which would leave a slot half set.
        if answer and "changed" not in answer and "no need to change" not in answer:
            raise OSError(f"HAProxy refused {command!r}: {answer}")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="front-proxy-routes", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sync()
            self._stop.wait(self.poll_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll_s + 5)
