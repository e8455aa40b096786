"""The unit tier's rules (tests/tiers.py): no Ray, no model weights, no Milvus, no network.
Besides the audit hook there, the entry points raise here (as Ray Serve's unit tier makes
`ray.init` raise), which names the rule at the first call. A test that needs one of them
belongs in tests/integration (real models, milvus-lite) or tests/e2e (Ray, HTTP)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import ray
from milvus_lite.db import MilvusLite

from lookalike.embedding import ImageEmbedder, TextEmbedder
from lookalike.store.lite_server import LiteServer
from tests.tier_rules import NotInTheTier


def refuse(what: str, tier: str = "tests/integration") -> Callable[..., Any]:
    def refused(*_: object, **__: object) -> Any:
        raise NotInTheTier(f"{what} in a unit test: move the test to {tier}")
    return refused


@pytest.fixture(autouse=True)
def unit_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray, "init", refuse("ray.init", "tests/e2e"))
    monkeypatch.setattr(ImageEmbedder, "__init__", refuse("loading the image model"))
    monkeypatch.setattr(TextEmbedder, "__init__", refuse("loading the text model"))
    # The spawn only: ensure_running's checks before it (the one-host rule) stay testable here.
    monkeypatch.setattr(LiteServer, "_spawn_supervisor", refuse("starting milvus-lite"))
    monkeypatch.setattr(MilvusLite, "__init__", refuse("opening a milvus-lite database"))
