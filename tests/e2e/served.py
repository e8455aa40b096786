"""A `lookalike` command run as a user runs it, and what the tests read from outside it.

`App` is one `python -m lookalike.cli ...` (or an installed `lookalike`) in its own session;
the helpers below look at a running app the way an operator would, never through the app's
own objects: the process table (replicas, milvus-lite), the dashboard's Serve API, the front
proxy's HAProxy admin socket, the Ray session's log directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from lookalike import procs
from lookalike.dashboard import auth_headers
from lookalike.launch.replica_routes import BACKEND, AdminSocket

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 400
STOP_TIMEOUT_S = 60

T = TypeVar("T")


def wait_until(check: Callable[[], T], *, timeout_s: float, what: str,
               seen: Callable[[], object] | None = None, every_s: float = 0.5) -> T:
    """check()'s first truthy answer; past the deadline the test fails, saying what it waited
    for and what it saw last (`seen()`, else check's last answer)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s:.0f} s; last seen: "
                        f"{seen() if seen else result!r}"[:4000])
        time.sleep(every_s)


class App:
    """One `python -m lookalike.cli ...` (or another `lookalike` command: `command`, run in
    `cwd`) in its own session (a terminal's foreground group)."""

    def __init__(self, env: dict[str, str], args: list[str], log: Path, *,
                 command: tuple[str, ...] = (sys.executable, "-m", "lookalike.cli"),
                 cwd: Path = REPO) -> None:
        self.env, self.log = env, log
        self.out = log.open("w")
        self.proc = subprocess.Popen([*command, *args], cwd=cwd, env=env, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{env['LOOKALIKE_PORT']}"
        self.dashboard = f"http://127.0.0.1:{env['LOOKALIKE_DASHBOARD_PORT']}"
        self.data_dir = Path(env["LOOKALIKE_DATA_DIR"])
        self.tree: set[int] = set()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"lookalike exited with {self.proc.returncode}:\n{self.text()[-4000:]}")
            self.snapshot()
            return "lookalike is ready:" in self.text()

        wait_until(ready, timeout_s=READY_TIMEOUT_S, what="the ready banner",
                   seen=lambda: self.text()[-4000:], every_s=1)
        self.snapshot()

    def snapshot(self) -> None:
        """Everything the command has started so far (processes come and go: keep adding)."""
        self.tree.update(procs.descendants(self.proc.pid))

    def leftovers(self) -> list[str]:
        return [f"{p} {procs.command_line(p)[:160]}" for p in sorted(self.tree) if procs.alive(p)]

    def wait_exit(self) -> float:
        started = time.monotonic()
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        finally:
            self.out.close()
        return time.monotonic() - started

    def kill(self) -> None:
        """Teardown after a failed test: nothing may outlive the session, whatever happened."""
        if self.proc.poll() is None:
            self.snapshot()
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        procs.end([p for p in self.tree if procs.alive(p)], grace_s=1)

    # -- what an operator sees from outside ------------------------------------------------

    def processes(self, prefix: str) -> list[int]:
        """Live processes of the app whose command line starts with `prefix`."""
        return [p for p in procs.descendants(self.proc.pid)
                if procs.command_line(p).startswith(prefix)]

    def replicas(self) -> dict[str, list[dict[str, Any]]]:
        """{deployment: its replicas (state, pid, ...)} from the dashboard's Serve API."""
        resp = httpx.get(self.dashboard + "/api/serve/applications/", headers=auth_headers(),
                         timeout=10)
        resp.raise_for_status()
        deployments = resp.json()["applications"]["lookalike"]["deployments"]
        return {name: dep.get("replicas") or [] for name, dep in deployments.items()}

    def running_pids(self, deployment: str) -> list[int]:
        return sorted(r["pid"] for r in self.replicas()[deployment] if r.get("state") == "RUNNING")

    @property
    def admin_socket(self) -> AdminSocket:
        """The front proxy's HAProxy runtime API (launch/front_proxy.py puts it in data_dir)."""
        return AdminSocket(self.data_dir / "front-proxy.sock")

    def routed_ports(self) -> list[int]:
        """Ports of the front proxy's direct-route slots that are in service (not MAINT)."""
        rows = [line.split(",") for line in self.admin_socket.send("show stat").splitlines()]
        header = [h.lstrip("# ") for h in rows[0]]
        col = {name: header.index(name) for name in ("pxname", "svname", "status", "addr")}
        return [int(r[col["addr"]].rsplit(":", 1)[1]) for r in rows[1:]
                if len(r) > col["addr"] and r[col["pxname"]] == BACKEND
                and r[col["svname"]].startswith("replica") and r[col["status"]] != "MAINT"]

    def session_dir(self) -> Path:
        """The app's Ray session directory, from its GCS server's command line."""
        for pid in self.processes(""):
            for arg in procs.command_line(pid).split():
                if arg.startswith("--session-dir="):
                    return Path(arg.split("=", 1)[1])
        raise AssertionError("no Ray GCS server with --session-dir among the app's processes")


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lookalike.cli", *args], check=False, cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)


def port_open(port: str) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
        return True
    except httpx.HTTPError:
        return False
