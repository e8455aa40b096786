"""A Ray cluster of a head and worker nodes on this machine, on loopback: what
tests/e2e/test_multi_node.py deploys the app on.

The head is `ray start --head --block`; each worker is tests/e2e/ray_worker_node.py (the same
node start, on 127.0.0.1: see there why not `ray start --address`). Each node runs in a
process group of its own, with every port it binds
chosen free (several Rays share this host), token auth on with a token of its own (clients get
it from `env`), and its logical CPUs given. A node is removed the way a machine is lost: its
whole process tree (raylet, workers, the replicas on it) is SIGKILLed at once. `stop` ends
exactly these trees, never by name (`ray stop` would end every Ray on a shared host).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lookalike import procs
from lookalike.ports import free_port

BIN = Path(sys.executable).parent  # this venv's ray, serve and python
START_TIMEOUT_S = 120
STOP_GRACE_S = 10
# A resource naming each node.
NODE_RESOURCE = "lookalikenode"


@dataclass
class Node:
    name: str
    proc: subprocess.Popen
    log: Path
    num_cpus: int

    def tree(self) -> set[int]:
        return {self.proc.pid, *procs.descendants(self.proc.pid)}


@dataclass
class LoopbackCluster:
    work: Path
    env: dict[str, str]
    nodes: dict[str, Node] = field(default_factory=dict)
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)

    @classmethod
    def create(cls, work: Path, env: dict[str, str]) -> LoopbackCluster:
        token = secrets.token_hex(16)
        env = {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
               "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
               # Nodes on 127.0.0.1, not the LAN address (tests/e2e/ray_worker_node.py).
               "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
               # The dashboard's own metrics port is fixed by default (44227).
               "DASHBOARD_METRIC_PORT": str(free_port()),
               # A lost node is declared dead after 3 missed 1 s health checks (Ray's default:
               # 5 of 3 s), so the test's wait for rescheduling stays short.
               "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
        return cls(work=work, env=env)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"}

    def _start(self, name: str, num_cpus: int, command: list[str]) -> Node:
        log = self.work / f"ray-{name}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(command, cwd=self.work, env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        node = Node(name, proc, log, num_cpus)
        self.nodes[name] = node
        return node

    def start(self, workers: dict[str, int], head_cpus: int = 0) -> None:
        self._start("head", head_cpus, [
            str(BIN / "ray"), "start", "--block", "--head", "--port", str(self.gcs_port),
            "--node-ip-address", "127.0.0.1", "--num-cpus", str(head_cpus),
            "--object-store-memory", str(100 * 1024 * 1024), "--include-dashboard", "true",
            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dashboard_port),
            "--dashboard-agent-listen-port", str(free_port()),
            "--dashboard-agent-grpc-port", str(free_port()),
            "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
            "--ray-client-server-port", str(free_port()),
            "--resources", json.dumps({NODE_RESOURCE + "head": 1}),
            "--disable-usage-stats"])
        self.wait_nodes({"head"})
        for name, cpus in workers.items():  # one at a time: a busy GCS times joins out
            self.add_worker(name, cpus)

    def add_worker(self, name: str, cpus: int) -> None:
        self._start(name, cpus, [sys.executable, "-m", "tests.e2e.ray_worker_node",
                                 "--address", self.address, "--num-cpus", str(cpus),
                                 "--resources", json.dumps({NODE_RESOURCE + name: 1})])
        self.wait_nodes(set(self.nodes))

    def alive_nodes(self) -> set[str]:
        """Names of the nodes the GCS sees alive (by their NODE_RESOURCE<name> resource)."""
        resp = httpx.get(f"{self.dashboard_url}/api/v0/nodes", params={"detail": "1"},
                         headers=self.headers, timeout=10)
        resp.raise_for_status()
        names = set()
        for node in resp.json()["data"]["result"]["result"]:
            if node.get("state") == "ALIVE":
                names.update(k[len(NODE_RESOURCE):] for k in node.get("resources_total", {})
                             if k.startswith(NODE_RESOURCE))
        return names

    def wait_nodes(self, names: set[str], timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            for node in self.nodes.values():
                if node.proc.poll() is not None:
                    raise RuntimeError(f"ray start for {node.name} exited {node.proc.returncode}:"
                                       f"\n{node.log.read_text()[-3000:]}")
            try:
                last = self.alive_nodes()
                if last == names:
                    return
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                last = repr(exc)
            time.sleep(1)
        raise TimeoutError(f"nodes {sorted(names)} not all alive in {timeout_s:.0f}s: {last}")

    def nodes_of(self, pids: list[int]) -> list[str | None]:
        """Which node's process tree holds each pid (None: no node's)."""
        trees = {node.name: node.tree() for node in list(self.nodes.values())}
        return [next((name for name, tree in trees.items() if pid in tree), None) for pid in pids]

    def kill(self, name: str) -> None:
        """The node lost at once: SIGKILL to its whole tree."""
        node = self.nodes.pop(name)
        for pid in node.tree():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        node.proc.wait(timeout=30)

    def stop(self) -> list[int]:
        """Workers first, then the head; SIGTERM, SIGKILL after the grace. Returns what is
        left of the trees (nothing, or the test fails)."""
        trees: set[int] = set()
        for name in [n for n in self.nodes if n != "head"] + ["head"] * ("head" in self.nodes):
            node = self.nodes.pop(name)
            tree = sorted(node.tree())
            trees.update(tree)
            procs.end(tree, grace_s=STOP_GRACE_S)
            try:
                node.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(procs.alive(p) for p in trees):
            time.sleep(0.2)
        return [p for p in trees if procs.alive(p)]

    def cli(self, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        """`ray ...` / `serve ...` against this cluster, as a user runs them."""
        return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=self.work, env=self.env,
                              capture_output=True, text=True, timeout=timeout_s)

    def serve_replicas(self, app: str = "lookalike") -> dict[str, list[dict[str, Any]]]:
        """{deployment: its replicas (state, pid, node_id...)} from Serve's REST API."""
        resp = httpx.get(f"{self.dashboard_url}/api/serve/applications/", headers=self.headers,
                         timeout=10)
        resp.raise_for_status()
        deployments = resp.json().get("applications", {}).get(app, {}).get("deployments", {})
        return {name: dep.get("replicas", []) for name, dep in deployments.items()}
