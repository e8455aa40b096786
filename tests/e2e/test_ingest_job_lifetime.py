"""`python ingest_job.py` run on its own leaves nothing running that it started, and leaves
alone an embedded server it found serving (the demo starts one before ingesting)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lookalike.catalog import demo
from lookalike.ports import free_port
from lookalike.store.lite_server import LiteServer, port_open

pytestmark = [pytest.mark.ray, pytest.mark.weights]  # Ray Data with the real models
REPO = Path(__file__).resolve().parents[2]
N_PRODUCTS = 4


def processes_for(data_dir: Path) -> list[str]:
    """Supervisor and launcher command lines that name this data directory."""
    out = subprocess.run(["pgrep", "-af", f"--data-dir {data_dir.resolve()}"],
                         capture_output=True, text=True)
    return [line for line in out.stdout.splitlines()
            if "lite_server" in line or "lite_launcher" in line]


def written(stderr: str) -> int:
    """Products written, from the job's one JSON summary line."""
    for line in stderr.splitlines():
        if line.startswith("{") and '"event":"ingest_summary"' in line.replace(" ", ""):
            return int(json.loads(line)["written"])
    raise AssertionError(f"no ingest_summary line in:\n{stderr[-3000:]}")


def run_job(tmp_path: Path, server: LiteServer) -> subprocess.CompletedProcess[str]:
    manifest = demo.build(tmp_path / "cat", N_PRODUCTS, source="vendored")
    env = {**os.environ, "LOOKALIKE_DATA_DIR": str(server.data_dir),
           "LOOKALIKE_LITE_PORT": str(server.port), "LOOKALIKE_COLLECTION": "t_lifetime",
           "LOOKALIKE_PORT": str(free_port()), "HF_HUB_OFFLINE": "1",
           "RAY_ADDRESS": "local",  # a private Ray, whatever this test process is connected to
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # on loopback
    return subprocess.run([sys.executable, str(REPO / "ingest_job.py"), "--manifest", str(manifest),
                           "--num-cpus", "2"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.timeout(360)
def test_job_stops_the_embedded_server_it_started(tmp_path: Path) -> None:
    server = LiteServer(tmp_path / "data", free_port())
    assert not server.is_serving()
    try:
        done = run_job(tmp_path, server)
        assert done.returncode == 0, done.stderr[-3000:]
        assert written(done.stderr) == N_PRODUCTS
        assert not port_open(server.port), "the job left milvus-lite serving"
        assert server.supervisor_pid() is None
        assert processes_for(server.data_dir) == []
    finally:
        server.stop()  # only if the assertion above failed


@pytest.mark.timeout(360)
def test_job_leaves_a_server_it_found_running(tmp_path: Path) -> None:
    server = LiteServer(tmp_path / "data", free_port())
    assert server.ensure_running() is True
    supervisor = server.supervisor_pid()
    try:
        assert server.ensure_running() is False  # found serving: not ours to stop
        done = run_job(tmp_path, server)
        assert done.returncode == 0, done.stderr[-3000:]
        assert written(done.stderr) == N_PRODUCTS
        assert server.is_serving()
        assert server.supervisor_pid() == supervisor
    finally:
        server.stop()
    assert processes_for(server.data_dir) == []
