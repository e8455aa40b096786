"""The private local Ray stays on loopback whatever the environment says (no Ray started)."""

from __future__ import annotations

from typing import Any

import pytest
import ray
from ray._private import ray_constants

from lookalike.launch import local_ray


def test_an_inherited_cluster_switch_is_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1")
    local_ray.prepare_environment()
    import os

    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"


def test_init_local_binds_to_loopback_though_ray_read_the_switch_as_1(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # `ray` imported while the switch was 1 (the constant is read at import).
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1")
    seen: dict[str, Any] = {}

    def init(**kwargs: Any) -> None:  # stands in for ray.init: nothing starts
        from ray._private import services

        seen.update(kwargs, switch=ray_constants.ENABLE_RAY_CLUSTER,
                    node_ip=services.get_node_ip_address())

    monkeypatch.setattr(ray, "init", init)
    local_ray.init_local(num_cpus=1)
    assert seen["address"] == "local" and seen["switch"] is False
    assert seen["node_ip"] == "127.0.0.1"
