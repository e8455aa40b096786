"""Deploying the Serve app from a Serve config file on the connected Ray, as `serve run` does.

Every way of starting the app (`serve run`, `lookalike serve`/`demo`, the e2e tests, the
benchmarks) starts it from serve_config.yaml (or its GPU overlay), so each gets the same
replicas, resources, queue bounds and batching: the YAML is the one place they are set.

`deploy` also starts the front proxy (launch/front_proxy.py) on the settings' address, with
Serve's proxy behind it on loopback (`serve_address`) and, where Serve's direct ingress is on
(launch/local_ray.py turns it on), routes straight to the router replicas (`ingress_ports`).

`serve run` is not used as a subprocess: its Ctrl-C waits for Serve's graceful shutdown
(launch/local_ray.py says why we skip it) and its Ray is out of our hands.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from ray import serve
from ray.serve._private.api import serve_start
from ray.serve.config import gRPCOptions
from ray.serve.schema import ServeDeploySchema

from lookalike.config import Settings
from lookalike.launch.front_proxy import FrontProxy
from lookalike.launch.replica_routes import Ports
from lookalike.ports import free_port

APP_NAME = "lookalike"


def serve_address(settings: Settings) -> tuple[str, int]:
    """Where Serve's own HTTP proxy listens: behind the front proxy on loopback, else on the
    address shoppers reach."""
    if settings.front_proxy:
        return "127.0.0.1", settings.serve_port or free_port()
    return settings.host, settings.port


def load_config(path: Path, settings: Settings, *, app_args: dict[str, Any] | None = None) -> Any:
    """The config with Serve's HTTP address from the settings (`serve_address`).

    app_args: build_app arguments on top of the file's (its `settings` dict merged key by key),
    for callers that pass settings in rather than through LOOKALIKE_* variables (the tests)."""
    raw = yaml.safe_load(Path(path).read_text())
    raw.setdefault("http_options", {}).update(zip(("host", "port"), serve_address(settings)))
    if app_args:
        (app,) = raw["applications"]
        args = app.setdefault("args", {})
        extra = dict(app_args)
        args["settings"] = {**(args.get("settings") or {}), **extra.pop("settings", {})}
        args.update(extra)
    return ServeDeploySchema.model_validate(raw)


def _plain(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    return value.model_dump(exclude_unset=True) if hasattr(value, "model_dump") else {}


def reserved_cpus(config: Any) -> float:
    """CPUs the app's replicas can hold at most (each deployment at its max replicas)."""
    total = 0.0
    for app in config.applications:
        for dep in app.deployments:
            # Unset fields are Serve's DEFAULT sentinel, not None: read only real values.
            options, scaling = _plain(dep.ray_actor_options), _plain(dep.autoscaling_config)
            replicas = scaling.get("max_replicas") or (
                dep.num_replicas if isinstance(dep.num_replicas, int) else 1)
            cpus = options.get("num_cpus")
            total += (float(cpus) if isinstance(cpus, (int, float)) else 1.0) * replicas
    return total


def ingress_ports(client: Any) -> Ports:
    """The router replicas' own HTTP ports on this node, from the Serve controller (its target
    groups, what Serve's HAProxy mode routes by; internal API, as serve_start). Without direct
    ingress the controller names only its proxies, no app's replicas: the list is empty and the
    front proxy stays with Serve's proxy."""
    import ray
    from ray.serve._private.common import RequestProtocol

    node_ip = ray.util.get_node_ip_address()
    controller = client._controller

    def ports() -> list[int]:
        if not ray.is_initialized():  # shut down under us: never let a call start a new Ray
            raise RuntimeError("Ray is not running")
        groups = ray.get(controller.get_target_groups.remote(app_name=APP_NAME), timeout=5)
        return [t.port for g in groups
                if g.app_name == APP_NAME and g.protocol == RequestProtocol.HTTP
                for t in g.targets if t.ip == node_ip]
    return ports


def deploy(config: Any, settings: Settings) -> FrontProxy | None:
    """Starts the app from `config` (from load_config) and, when the settings ask for it, the
    front proxy on the settings' address; the caller stops the one it gets back."""
    # The calls `serve run CONFIG` makes (ray/serve/scripts.py); serve_start is internal API.
    client = serve_start(http_options=config.http_options.model_dump(),
                         proxy_location=config.proxy_location,
                         grpc_options=gRPCOptions(**config.grpc_options.model_dump()),
                         controller_options=config.controller_options)
    client.deploy_apps(config, _blocking=False)
    if not settings.front_proxy:
        return None
    front = FrontProxy(host=settings.host, port=settings.port,
                       backend_port=config.http_options.port, work_dir=settings.data_dir,
                       replica_ports=ingress_ports(client) if settings.direct_routes else None,
                       photo_searches=settings.photo_searches_per_router)
    front.start()
    return front


class DeployFailed(RuntimeError):
    pass


def wait_ready(url: str, *, timeout_s: float = 600.0) -> dict[str, Any]:
    """Poll /readyz until 200 (returns its body); fail at once if Serve gives the app up."""
    deadline = time.monotonic() + timeout_s
    next_status = 0.0
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(url + "/readyz", timeout=5)
            if resp.status_code == 200:
                return resp.json()
        except httpx.HTTPError:
            pass
        if time.monotonic() >= next_status:
            next_status = time.monotonic() + 5
            app = serve.status().applications.get(APP_NAME)
            if app is not None and str(app.status).endswith("DEPLOY_FAILED"):
                raise DeployFailed(f"Serve could not deploy the app: {app.message}")
        time.sleep(1)
    raise TimeoutError(f"the app did not answer {url}/readyz within {timeout_s:.0f} s")
