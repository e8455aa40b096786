"""A Ray worker node on 127.0.0.1, run as its own process until SIGTERM:

    python -m tests.e2e.ray_worker_node --address 127.0.0.1:GCS_PORT --num-cpus 2 --name a

What `ray start --address ... --block` does, minus one check: with
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (the switch that keeps a node on loopback) the CLI refuses
to join a cluster, and with it on, Ray turns 127.0.0.1 into the machine's LAN address. Ray's own
ray.cluster_utils.Cluster starts worker nodes this same way (ray._private.node.Node).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from lookalike.ports import free_port


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--address", required=True)
    p.add_argument("--num-cpus", type=int, required=True)
    p.add_argument("--resources", default="{}")
    p.add_argument("--object-store-memory", type=int, default=200 * 1024 * 1024)
    args = p.parse_args(argv)

    import ray._private.node
    from ray._private.parameter import RayParams

    params = RayParams(
        gcs_address=args.address, node_ip_address="127.0.0.1", num_cpus=args.num_cpus,
        num_gpus=0, resources=json.loads(args.resources),
        object_store_memory=args.object_store_memory, min_worker_port=0, max_worker_port=0,
        node_manager_port=0, dashboard_agent_listen_port=free_port(),
        metrics_export_port=free_port(), runtime_env_agent_port=free_port(),
        include_log_monitor=False)
    node = ray._private.node.Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    while not stopping:
        signal.pause()
    node.kill_all_processes(check_alive=False, allow_graceful=True, wait=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
