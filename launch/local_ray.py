"""The private local Ray that `lookalike serve` and `lookalike demo` run on, and its quick stop.

The process that calls `LocalRay.start` is the Ray head's driver: GCS, raylet, dashboard,
workers and Serve replicas are all its descendants. `stop` skips Serve's graceful shutdown (the
controller waits out each replica's 20 s `graceful_shutdown_timeout_s`, the half minute `serve
run` takes on Ctrl-C): a local demo has no traffic to drain and no state outside this Ray
session, so it shuts Ray down directly and then ends whatever of its own process tree is still
there, so nothing is left behind.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lookalike
from lookalike import procs
from lookalike.ports import free_port

log = logging.getLogger(__name__)
# Where the `lookalike` package lives: a checkout's root (whose Ray side lookalike/__init__.py
# maps), or site-packages for a wheel.
PACKAGE_ROOT = Path(lookalike.__file__).resolve().parent.parent
GRACE_S = 3.0  # what a process gets between SIGTERM and SIGKILL once Ray is shut down


class PortInUse(RuntimeError):
    pass


def check_port_free(port: int, variable: str, host: str = "127.0.0.1") -> None:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            raise PortInUse(f"port {port} on {host} is in use: set {variable} to a free port "
                            "(or stop what runs there, e.g. `lookalike stop`)") from None


CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def loopback_only() -> None:
    """The private Ray on loopback even when `ray` was imported before the switch was forced
    (Ray reads it into ray_constants at import, and reads that constant when it picks the node's
    address). ray.init's `_node_ip_address="127.0.0.1"` cannot do it: Ray 2.60 turns a loopback
    address given there into the LAN address (services.resolve_ip_for_localhost)."""
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def prepare_environment() -> None:
    """Before `ray` is first imported (it reads the first switch at import), and inherited by
    every process Ray starts."""
    # The node on 127.0.0.1, not the LAN address (Ray's switch; it names Windows/OSX but works
    # on Linux too). Forced, not defaulted: this Ray is private, and an inherited 1 put its
    # node, object store and workers on the machine's LAN address.
    os.environ[CLUSTER_SWITCH] = "0"
    # Serve tuned for throughput: among others, every router replica also listens for HTTP
    # itself (direct ingress), which the front proxy routes to instead of Serve's proxy
    # (launch/replica_routes.py), and handles call replicas over gRPC.
    os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    # The Serve controller's loop, 0.1 s by default, took 0.067 of a core on an idle 2-core box
    # (0.016 at 0.5 s; ~2 ms of CPU per image search at 20 QPS): health checks, restarts and
    # autoscaling decisions now come up to 0.4 s later, which no one waiting seconds notices.
    os.environ.setdefault("RAY_SERVE_CONTROL_LOOP_INTERVAL_S", "0.5")
    # Workers import lookalike (and its Ray side: serve_app, deployments, the ingest job) from
    # the same place as this process, a checkout or the installed package.
    if str(PACKAGE_ROOT) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")) if p)


START_TRIES = 2
START_GAVE_UP = "timed out during startup"  # Ray's own words when its node never registers


def init_local(**options: Any) -> None:
    """`ray.init(address="local", **options)`: always a new Ray of our own, never one a `ray
    start` left running (address=None would join that).

    Tried once more, with nothing of the failed try left running, when Ray's start gives up: it
    waits a fixed 30 s for the raylet to register. Seen here: in the P1 bench's process (after
    its model runs, with a store connection open) 2 of 3 starts got a GCS but no raylet, not
    even a raylet log, and the next start came up in 9 s; and a raylet whose agent could not
    bind its port (lookalike/ports.py) fails the same way.

    Every Ray process it starts inherits prepare_environment's settings (Serve's among them)."""
    prepare_environment()
    import ray

    loopback_only()
    for attempt in range(1, START_TRIES + 1):
        before = set(procs.descendants(os.getpid()))
        try:
            ray.init(address="local", **options)
            return
        except Exception as exc:  # Ray raises a bare Exception here
            if START_GAVE_UP not in str(exc) or attempt == START_TRIES:
                raise
            left = [p for p in procs.descendants(os.getpid()) if p not in before]
            names = [procs.command_line(p)[-70:] for p in left]
            procs.end(left, grace_s=GRACE_S)
            log.warning("Ray's local start gave up (%s); ended what it had started (%s), "
                        "trying again", exc, "; ".join(names))


@contextmanager
def _agent_port(port: int) -> Iterator[None]:
    """The node agent's HTTP port, which job submission goes through. ray.init always takes
    Ray's fixed default (52365; `ray start` has --dashboard-agent-listen-port, ray.init has no
    such argument): with a second Ray on the host the agent cannot bind it, and every job
    submission then fails with "No available agent to submit job". So ray.init gets RayParams
    with a free port for the length of the call."""
    from ray._private import parameter

    original = parameter.RayParams

    class RayParams(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("dashboard_agent_listen_port", port)
            super().__init__(*args, **kwargs)

    parameter.RayParams = RayParams
    try:
        yield
    finally:
        parameter.RayParams = original


@dataclass
class LocalRay:
    dashboard_port: int
    metrics_port: int
    num_cpus: int | None = None
    host: str = "127.0.0.1"
    gcs_address: str = ""
    session_dir: str = ""
    _spared: set[int] = field(default_factory=set)

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.host}:{self.dashboard_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def start(self) -> None:
        check_port_free(self.dashboard_port, "LOOKALIKE_DASHBOARD_PORT")
        check_port_free(self.metrics_port, "LOOKALIKE_METRICS_PORT")
        prepare_environment()
        # The dashboard's own metrics server has a fixed default port too (44227).
        os.environ.setdefault("DASHBOARD_METRIC_PORT", str(free_port(self.host)))
        import ray

        with _agent_port(free_port(self.host)):
            init_local(namespace="serve", num_cpus=self.num_cpus, include_dashboard=True,
                       dashboard_host=self.host, dashboard_port=self.dashboard_port,
                       _metrics_export_port=self.metrics_port)
        context = ray.get_runtime_context()
        self.gcs_address = context.gcs_address
        self.session_dir = ray._private.worker.global_worker.node.get_session_dir_path()

    def spare(self, pids: list[int]) -> None:
        """Processes of our tree that are stopped elsewhere (milvus-lite, gracefully)."""
        self._spared.update(pids)

    def processes(self) -> list[int]:
        return [p for p in procs.descendants(os.getpid()) if p not in self._spared]

    def serve_replicas(self) -> int:
        return sum(procs.command_line(p).startswith("ray::ServeReplica")
                   for p in self.processes())

    def stop(self) -> tuple[int, list[int]]:
        """(how many processes were stopped, those that had to be killed)."""
        import ray

        tree = self.processes()
        if ray.is_initialized():
            ray.shutdown()
        return len(tree), procs.end(tree, grace_s=GRACE_S)
