"""launch.local_ray.init_local against a real local Ray whose first start Ray gives up on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray  # starts its own Ray: the e2e tier (tests/tiers.py)
REPO = Path(__file__).resolve().parents[2]

# The first start is made to fail the way CI's did: the metrics port is held, Ray's dashboard
# agent dies with EADDRINUSE, the raylet with it, and ray.init waits out its 30 s. The port is
# let go when init_local logs the retry, so the second start comes up.
SCRIPT = r"""
import logging, os, socket, sys
import ray
from lookalike.launch.local_ray import init_local
from lookalike import procs
from lookalike.ports import free_port

port = free_port("0.0.0.0")
blocker = socket.socket()
blocker.bind(("0.0.0.0", port))
blocker.listen()
retries = []

class LetGo(logging.Handler):
    def emit(self, record):
        if "trying again" in record.getMessage():
            retries.append(record.getMessage())
            blocker.close()

logging.getLogger("lookalike.launch.local_ray").addHandler(LetGo())
init_local(num_cpus=1, include_dashboard=False, log_to_driver=False, _metrics_export_port=port)
mine = [procs.command_line(p) for p in procs.descendants(os.getpid())]
print("RETRIES", len(retries), "GCS", sum("gcs_server" in c for c in mine),
      "RAYLETS", sum("/raylet " in c or c.endswith("/raylet") for c in mine), flush=True)
ray.shutdown()
"""


def test_a_start_ray_gives_up_on_is_tried_again_with_nothing_of_it_left() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=REPO, text=True,
                          capture_output=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RETRIES"))
    # One retry, and one GCS and one raylet running after it: the first try's were ended.
    assert line.split() == ["RETRIES", "1", "GCS", "1", "RAYLETS", "1"], line
