"""The unit tier's rules, enforced for every test in it (as Ray Serve's unit tier makes
`ray.init` raise): no Ray, no model weights, no Milvus, no network. A test that needs one of
them belongs in tests/integration (real models, milvus-lite) or tests/e2e (Ray, HTTP)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import pytest
import ray
from milvus_lite.db import MilvusLite

from lookalike.embedding import ImageEmbedder, TextEmbedder
from lookalike.store.lite_server import LiteServer


class NotInTheUnitTier(RuntimeError):
    pass


def refuse(what: str, tier: str = "tests/integration") -> Callable[..., Any]:
    def refused(*_: object, **__: object) -> Any:
        raise NotInTheUnitTier(f"{what} in a unit test: move the test to {tier}")
    return refused


def loopback(address: object) -> bool:
    if isinstance(address, str):  # an AF_UNIX path
        return True
    host = str(address[0]) if isinstance(address, tuple) and address else ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def unit_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray, "init", refuse("ray.init", "tests/e2e"))
    monkeypatch.setattr(ImageEmbedder, "__init__", refuse("loading the image model"))
    monkeypatch.setattr(TextEmbedder, "__init__", refuse("loading the text model"))
    # The spawn only: ensure_running's checks before it (the one-host rule) stay testable here.
    monkeypatch.setattr(LiteServer, "_spawn_supervisor", refuse("starting milvus-lite"))
    monkeypatch.setattr(MilvusLite, "__init__", refuse("opening a milvus-lite database"))
    # Loopback servers a test starts itself are fine; anything else is the network.
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(self: socket.socket, address: Any) -> Any:
            if not loopback(address):
                refuse(f"connecting to {address!r}")()
            return real(self, address)
        return call

    monkeypatch.setattr(socket.socket, "connect", guarded(connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(connect_ex))
