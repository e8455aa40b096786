"""The front proxy routes to the router replicas' own ports (launch/replica_routes.py), not
through Serve's proxy, in the app as `lookalike serve` runs it. Evidence from outside our code:
the kernel says who listens on each routed port, HAProxy's own counters say who served."""

from __future__ import annotations

import time

import httpx
import psutil
import pytest

from lookalike.launch.front_proxy import FrontProxy
from lookalike.launch.replica_routes import AdminSocket, slot_name

ROUTERS = 2  # serve_config.yaml's SearchRouter replicas


def routed_ports(front: FrontProxy, timeout_s: float = 15.0) -> list[int]:
    assert front.routes is not None, "no direct routes: is Serve's direct ingress on?"
    deadline = time.monotonic() + timeout_s
    while True:
        ports = [p for p in front.routes.applied if p is not None]
        if len(ports) == ROUTERS or time.monotonic() > deadline:
            return ports
        time.sleep(0.2)


def listener(port: int) -> str:
    """The command line of the process listening on `port` ("" if none, or if it is dying: a
    killed replica can show as a zombie that still holds its socket)."""
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            try:
                return " ".join(psutil.Process(conn.pid).cmdline())
            except psutil.Error:
                return ""
    return ""


def served(admin: AdminSocket) -> dict[str, int]:
    """Requests each server of the front proxy's backend has had (HAProxy's `stot`)."""
    rows = [line.split(",") for line in admin.send("show stat").splitlines()]
    header = rows[0]
    col = header.index("stot")
    return {r[1]: int(r[col]) for r in rows[1:] if len(r) > col and r[0] == "serve"}


def searches_counted(url: str, admin: AdminSocket, n: int, query: str) -> tuple[dict[str, int], dict[str, int]]:
    """HAProxy's per-server counts before and after n text searches."""
    before = served(admin)
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(n):
            client.get("/v1/search", params={"q": f"{query} {i}", "top_k": 3}).raise_for_status()
    return before, served(admin)


def test_each_routed_port_is_a_router_replica_of_its_own(app: tuple[str, FrontProxy | None]) -> None:
    _, front = app
    assert front is not None
    ports = routed_ports(front)
    assert len(set(ports)) == ROUTERS, ports
    assert all("SearchRouter" in listener(p) for p in ports), {p: listener(p) for p in ports}


def test_searches_reach_the_replicas_without_serve_proxy(app: tuple[str, FrontProxy | None]) -> None:
    url, front = app
    assert front is not None and front.routes is not None
    routed_ports(front)
    before, after = searches_counted(url, front.routes.admin, 10, "red dress")
    replicas = sum(after[slot_name(i)] - before[slot_name(i)] for i in range(len(front.routes.applied)))
    assert replicas == 10 and after["serve"] == before["serve"], (before, after)


def test_routes_follow_a_router_replica_that_is_replaced(app: tuple[str, FrontProxy | None]) -> None:
    import ray

    url, front = app
    assert front is not None and front.routes is not None
    before = routed_ports(front)
    victim = next(a for a in ray.util.list_named_actors(all_namespaces=True)
                  if "#SearchRouter#" in a["name"])
    ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]), no_restart=True)
    # Serve starts a replacement on a port of its own, possibly the dead one's (the case
    # tests/integration/test_replica_routes.py pins).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ports = [p for p in front.routes.applied if p is not None]
        if len(ports) == ROUTERS and all("SearchRouter" in listener(p) for p in ports):
            break
        time.sleep(1)
    else:
        pytest.fail(f"routes {front.routes.applied} (before the kill {before}) never came back "
                    f"to {ROUTERS} live router replicas")
    first, after = searches_counted(url, front.routes.admin, 20, "blue coat")
    used = [i for i in range(len(front.routes.applied))
            if after[slot_name(i)] > first[slot_name(i)]]
    assert len(used) == ROUTERS, (first, after)  # both replicas serve again
