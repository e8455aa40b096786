"""Shared test builders: free ports, a real milvus-lite server, settings pointing at them."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest

# Never wait on an unreachable hub in tests: every model here loads from local files.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every Ray the tests start (in-process or in subprocesses, which inherit this) binds to
# loopback: on Linux, 0 keeps the node on 127.0.0.1 instead of the machine's LAN address.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# One ONNX model cache for every test, app and Ray worker (subprocesses inherit it) and for later
# sessions on this machine: the default CPU runtime exports its graphs on first start (~10 s),
# which every fresh data dir would repeat. Graphs are keyed by weights and versions, and
# concurrent sessions share it as replicas do (file lock, atomic rename).
os.environ.setdefault("LOOKALIKE_MODEL_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"lookalike-test-models-{os.getuid()}"))

from lookalike.config import Settings
from lookalike.ports import free_port
from lookalike.store.lite_server import LiteServer
from tests.prerequisites import pytest_sessionfinish  # noqa: F401 - a hook: CI fails on skips
from tests.tiers import (  # noqa: F401  (hooks: what each tier may use, and its markers)
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_runtest_call,
    pytest_runtest_protocol,
    pytest_runtest_setup,
)

# In-process pytest runs for the tests of our own pytest plugins (tests/unit/test_prerequisites.py).
pytest_plugins = ("pytester",)

# Property tests: 100 examples each in `make test` (the unit tier's one-minute budget), many
# more with `pytest --hypothesis-profile=thorough` (`make test-thorough`). A test that sets its
# own max_examples keeps it.
hypothesis.settings.register_profile("default", max_examples=100)
hypothesis.settings.register_profile("thorough", max_examples=1000)
hypothesis.settings.load_profile("default")


@pytest.fixture(scope="session")
def lite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiteServer]:
    """One real milvus-lite server process for the session (each test uses its own collection)."""
    server = LiteServer(tmp_path_factory.mktemp("lite"), free_port())
    server.ensure_running()
    yield server
    server.stop()


@pytest.fixture
def settings(lite_server: LiteServer, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]
    return Settings(data_dir=lite_server.data_dir, lite_port=lite_server.port, collection=name,
                    port=free_port(), admin_key="test-admin-key-0123")


@pytest.fixture(scope="session")
def ray_metrics_port() -> int:
    """Where the session's Ray serves Prometheus metrics (http://127.0.0.1:PORT/metrics)."""
    return free_port()


@pytest.fixture(scope="session")
def ray_local(ray_metrics_port: int) -> Iterator[None]:
    """One local Ray for the whole session (2 CPUs, as on the CI machine)."""
    import ray

    from lookalike.launch.local_ray import init_local

    if not ray.is_initialized():
        init_local(num_cpus=2, include_dashboard=False, log_to_driver=False,
                   _metrics_export_port=ray_metrics_port,
                   runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})
    yield
    ray.shutdown()
