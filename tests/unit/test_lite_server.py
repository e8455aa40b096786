"""The embedded store's single-start rule: one function starts milvus-lite, and it refuses a Ray
cluster of several hosts (the multi-node e2e test covers several nodes on one host)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lookalike.store import lite_server
from lookalike.store.lite_server import EmbeddedStoreRefused, LiteServer, check_one_host

REPO = Path(__file__).resolve().parents[2]


def test_one_host_is_allowed_however_many_nodes() -> None:
    check_one_host(set())  # not in a Ray cluster
    check_one_host({"127.0.0.1"})  # head + workers on one machine share its loopback


def test_several_hosts_are_refused_with_what_to_set() -> None:
    with pytest.raises(EmbeddedStoreRefused) as caught:
        check_one_host({"10.0.0.1", "10.0.0.2"})
    message = str(caught.value)
    assert "2 hosts" in message and "LOOKALIKE_MILVUS_URI=http://" in message
    assert "10.0.0.1, 10.0.0.2" in message


def test_ensure_running_refuses_before_starting_anything(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lite_server, "ray_hosts", lambda: {"10.0.0.1", "10.0.0.2"})
    server = LiteServer(tmp_path / "data", 1)
    with pytest.raises(EmbeddedStoreRefused):
        server.ensure_running()
    assert not (tmp_path / "data").exists()  # no data dir, no lock, no process


def test_only_lite_server_spawns_the_server() -> None:
    """Every start goes through LiteServer.ensure_running: no other module runs the
    supervisor or the launcher itself."""
    spawn = re.compile(r"lookalike\.store\.lite_(server|launcher)\"?\s*,\s*\"(supervise|--data-dir)")
    found = [str(path.relative_to(REPO)) for path in REPO.rglob("*.py")
             if ".venv" not in path.parts and spawn.search(path.read_text(errors="ignore"))]
    assert found == ["lookalike/store/lite_server.py"]
