"""Start and supervise the embedded milvus-lite gRPC server on loopback.

milvus-lite locks its data directory to one process, so lookalike runs it as one server process
that every other process (Serve replicas, Ray Data writers, tests) reaches over gRPC. A
supervisor process restarts it if it dies (the original design's Docker restart policy).

`LiteServer.ensure_running` is the one function that starts it; the CLI, router replicas, the
ingest job, bench and tests all go through it. Every call must carry the token generated into
data_dir/milvus-lite.token (mode 0600; `token()`, `Settings.resolved_milvus_token()`): loopback
is open to every local user, the token file only to its owner.

It listens on loopback, so it serves one host:
when the Ray cluster this process belongs to spans several hosts, every host would start a
store of its own and they would diverge, so `ensure_running` refuses (`check_one_host`) and
says to set LOOKALIKE_MILVUS_URI. Several Ray nodes on ONE host (the multi-node test) share
the loopback, so they all reach the one server.

    python -m lookalike.store.lite_server start|stop|status   (uses LOOKALIKE_* settings)
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from lookalike.config import LITE_TOKEN_FILE, Settings, secret_file

log = logging.getLogger(__name__)
HOST = "127.0.0.1"


def port_open(port: int, host: str = HOST, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


class EmbeddedStoreRefused(RuntimeError):
    """The embedded store was asked for on a Ray cluster of several hosts."""


def ray_hosts() -> set[str]:
    """The addresses of the alive nodes of the Ray cluster this process is connected to (none
    when it is not connected). Core stays Ray-free: ray is only looked at if already imported."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return set()
    return {node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive")}


def check_one_host(hosts: set[str]) -> None:
    """The single-host rule of the embedded store (why: see the module docstring)."""
    if len(hosts) > 1:
        shown = ", ".join(sorted(hosts)[:4]) + (", ..." if len(hosts) > 4 else "")
        raise EmbeddedStoreRefused(
            f"LOOKALIKE_MILVUS_URI is 'embedded', but this Ray cluster spans {len(hosts)} hosts "
            f"({shown}): the embedded milvus-lite listens on one host's loopback, and each host "
            "would start a store of its own. Run Milvus (standalone or cluster, e.g. "
            "docker-compose.yml) and set LOOKALIKE_MILVUS_URI=http://<milvus-host>:19530 on "
            "every node (Serve's runtime_env or the node's environment) and for the ingest job.")


class LiteServer:
    """Handle on the supervised server for one data directory and port."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.db_dir = self.data_dir / "milvus"
        self.pidfile = self.data_dir / "milvus-lite.pid"
        self.logfile = self.data_dir / "milvus-lite.log"
        self.token_file = self.data_dir / LITE_TOKEN_FILE

    @classmethod
    def from_settings(cls, settings: Settings) -> LiteServer:
        return cls(settings.data_dir, settings.lite_port)

    @property
    def uri(self) -> str:
        return f"http://{HOST}:{self.port}"

    def token(self) -> str:
        """What clients send (`MilvusClient(uri, token=...)`); made once, mode 0600."""
        return secret_file(self.token_file, "milvus-lite token file")

    def supervisor_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, 0)
            return pid
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return None

    def is_serving(self) -> bool:
        return port_open(self.port)

    def ensure_running(self, timeout_s: float = 60.0) -> bool:
        """Idempotent and safe to call from many processes at once; the one place the server is
        started. Refuses (EmbeddedStoreRefused) inside a Ray cluster of several hosts.

        Returns whether this call started the server, so that a caller which owns its lifetime
        (the ingest job run on its own) stops only a server it started, never one it found.
        """
        check_one_host(ray_hosts())
        if self.is_serving():
            return False
        self.token()  # the data directory (0700) and the token the server will require
        started = False
        with open(self.data_dir / "milvus-lite.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.is_serving():
                return False
            if self.supervisor_pid() is None:
                started = True
                self._spawn_supervisor()
            _wait_until(self.is_serving, timeout_s, f"milvus-lite on port {self.port}")
        return started

    def _spawn_supervisor(self) -> None:
        log.info("starting milvus-lite on %s (data %s)", self.uri, self.db_dir)
        subprocess.Popen(
            [sys.executable, "-m", "lookalike.store.lite_server", "supervise",
             "--data-dir", str(self.data_dir), "--port", str(self.port)],
            start_new_session=True,  # survives the caller; `stop` ends it
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=True)

    def stop(self, timeout_s: float = 20.0) -> None:
        pid = self.supervisor_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            _wait_until(lambda: self.supervisor_pid() is None, timeout_s, "the supervisor to exit")
        _wait_until(lambda: not self.is_serving(), timeout_s, "the server port to close")

    def kill_server(self) -> None:
        """Kill the server process only (tests of the restart policy)."""
        out = subprocess.run(["pgrep", "-f", f"lite_launcher --data-dir {self.db_dir} "],
                             capture_output=True, text=True)
        for pid in out.stdout.split():
            os.kill(int(pid), signal.SIGKILL)

    # -- the supervisor process --------------------------------------------------------------

    def supervise(self, max_restarts_per_min: int = 5) -> int:
        self.token()  # made by ensure_running already; here for `supervise` run by hand
        self.db_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.pidfile.write_text(str(os.getpid()))
        stopping = False
        child: subprocess.Popen[bytes] | None = None

        def on_term(*_: object) -> None:
            nonlocal stopping
            stopping = True
            if child and child.poll() is None:
                child.terminate()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        restarts: list[float] = []
        try:
            with open(self.logfile, "ab") as logf:
                while not stopping:
                    child = subprocess.Popen(
                        [sys.executable, "-m", "lookalike.store.lite_launcher",
                         "--data-dir", str(self.db_dir), "--host", HOST, "--port", str(self.port),
                         "--token-file", str(self.token_file)],
                        stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                    code = child.wait()
                    if stopping:
                        break
                    now = time.monotonic()
                    restarts = [t for t in restarts if now - t < 60] + [now]
                    logf.write(f"[supervisor] server exited with {code}; restarting\n".encode())
                    logf.flush()
                    if len(restarts) > max_restarts_per_min:
                        logf.write(b"[supervisor] restarting too often; giving up\n")
                        return 1
                    time.sleep(0.5)
                if child.poll() is None:
                    try:
                        child.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        child.kill()
        finally:
            self.pidfile.unlink(missing_ok=True)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "status", "supervise"])
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    settings = Settings()
    server = LiteServer(args.data_dir or settings.data_dir, args.port or settings.lite_port)
    if args.command == "supervise":
        return server.supervise()
    if args.command == "start":
        server.ensure_running()
        print(f"milvus-lite serving at {server.uri} (data {server.db_dir})")
    elif args.command == "stop":
        server.stop()
        print("milvus-lite stopped")
    else:
        print(f"{server.uri}: {'serving' if server.is_serving() else 'not serving'}")
        return 0 if server.is_serving() else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
