"""The front proxy routes to the router replicas' own ports (launch/replica_routes.py), not
through Serve's proxy, in the app as `lookalike serve` runs it. Evidence from outside our code:
the kernel says who listens on each routed port, HAProxy's own counters say who served."""

from __future__ import annotations

import os
import signal

import httpx
import psutil

from lookalike.launch.replica_routes import AdminSocket
from tests.e2e.served import App, wait_until

ROUTERS = 2  # serve_config.yaml's SearchRouter replicas
ROUTES_TIMEOUT_S = 15.0
REPLACED_TIMEOUT_S = 120.0


def routed_ports(app: App) -> list[int]:
    """The slots in service once there is one per router replica (fails with what it saw)."""
    def all_routed() -> list[int]:
        ports = app.routed_ports()
        return ports if len(ports) == ROUTERS else []

    return wait_until(all_routed, timeout_s=ROUTES_TIMEOUT_S, what=f"{ROUTERS} direct routes",
                      seen=app.routed_ports)


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


def replica_slots(counts: dict[str, int]) -> list[str]:
    return sorted(name for name in counts if name.startswith("replica"))


def test_each_routed_port_is_a_router_replica_of_its_own(app: App) -> None:
    ports = routed_ports(app)
    assert len(set(ports)) == ROUTERS, ports
    assert all("SearchRouter" in listener(p) for p in ports), {p: listener(p) for p in ports}


def test_searches_reach_the_replicas_without_serve_proxy(app: App) -> None:
    routed_ports(app)
    before, after = searches_counted(app.url, app.admin_socket, 10, "red dress")
    replicas = sum(after[s] - before[s] for s in replica_slots(after))
    assert replicas == 10 and after["serve"] == before["serve"], (before, after)


def test_routes_follow_a_router_replica_that_is_replaced(app: App) -> None:
    before = routed_ports(app)
    victims = app.running_pids("SearchRouter")
    assert victims, app.replicas()
    os.kill(victims[0], signal.SIGKILL)  # the replica process dies, as on an OOM kill
    # Serve starts a replacement on a port of its own, possibly the dead one's (the case
    # tests/integration/test_replica_routes.py pins).

    def replaced() -> bool:
        ports = app.routed_ports()
        return (victims[0] not in app.running_pids("SearchRouter") and len(ports) == ROUTERS
                and all("SearchRouter" in listener(p) for p in ports))

    wait_until(replaced, timeout_s=REPLACED_TIMEOUT_S,
               what=f"routes back to {ROUTERS} live router replicas (before the kill {before})",
               seen=lambda: (app.routed_ports(), app.running_pids("SearchRouter")), every_s=1)
    first, after = searches_counted(app.url, app.admin_socket, 20, "blue coat")
    used = [s for s in replica_slots(after) if after[s] > first[s]]
    assert len(used) == ROUTERS, (first, after)  # both replicas serve again
