"""Run the lookalike Serve app on a private local Ray until told to stop (benchmarks, soak).

    LOOKALIKE_DATA_DIR=... LOOKALIKE_LITE_PORT=... python -m bench.serve_local --port 8200

Settings come from LOOKALIKE_* variables, as for `serve run`. Unlike `serve run`, the HTTP port
and the number of CPUs Ray may use are arguments, so it can run beside other Ray sessions on a
shared machine. It exits on SIGTERM/SIGINT or after --max-lifetime seconds, whichever is first,
shutting Serve and Ray down. RAY_SERVE_THROUGHPUT_OPTIMIZED=1 in the environment is passed to
every Ray process.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--metrics-port", type=int, default=None,
                   help="Ray's Prometheus export port (default: Ray picks one)")
    p.add_argument("--app-args", default="{}",
                   help="JSON AppArgs for serve_app.build_app, on top of serve_config.yaml's")
    p.add_argument("--config", type=Path, default=REPO / "serve_config.yaml",
                   help="the Serve config (replicas, batching: the YAML's, as `serve run`)")
    p.add_argument("--max-lifetime", type=float, default=3600.0)
    args = p.parse_args(argv)

    import ray
    from ray import serve

    from lookalike.config import Settings
    from lookalike.launch.local_ray import init_local
    from lookalike.launch.serving import deploy, load_config, wait_ready

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    init = {"num_cpus": args.num_cpus, "include_dashboard": False, "log_to_driver": False}
    if args.metrics_port:
        init["_metrics_export_port"] = args.metrics_port
    init_local(**init)
    front = None
    try:
        settings = Settings(host="127.0.0.1", port=args.port)
        front = deploy(load_config(args.config, settings, app_args=json.loads(args.app_args)),
                       settings)
        wait_ready(f"http://127.0.0.1:{args.port}")
        print(f"READY http://127.0.0.1:{args.port}", flush=True)
        stop.wait(args.max_lifetime)
    finally:
        if front is not None:
            front.stop()
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
