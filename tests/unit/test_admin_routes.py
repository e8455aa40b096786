"""POST /v1/admin/refresh and the upgrade's notifier over it, in-process (a stub store that
counts facet scans: pure HTTP logic only; tests/integration/test_upgrade.py runs them over a
real alias switch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lookalike.api import create_api
from lookalike.api.admin_routes import REPLICA
from lookalike.config import Settings
from lookalike.notify import tell_routers
from lookalike.search import SearchService

ADMIN_KEY = "unit-test-admin-key"


class ScanCounter:
    collection = "products_x_g1"

    def __init__(self) -> None:
        self.scans = 0

    def facets(self) -> dict:
        self.scans += 1
        return {"category": {}, "color": {"red": self.scans}, "size": {}, "price": {}}


async def embed(_: object) -> np.ndarray:
    return np.ones(4, dtype=np.float32)


@pytest.fixture
def store() -> ScanCounter:
    return ScanCounter()


@pytest.fixture
def client(store: ScanCounter, tmp_path: Path) -> TestClient:
    service = SearchService(store=store, embed_image=embed, embed_text=embed,
                            media_dir=tmp_path, facets_ttl_s=3600, model_version="m1")
    return TestClient(create_api(service, Settings(data_dir=tmp_path, admin_key=ADMIN_KEY)))


@pytest.mark.parametrize("headers", [{}, {"Authorization": f"Bearer {ADMIN_KEY}x"}])
def test_refresh_needs_the_admin_key(client: TestClient, store: ScanCounter,
                                     headers: dict) -> None:
    resp = client.post("/v1/admin/refresh", headers=headers)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "unauthorized"
    assert store.scans == 0


def test_refresh_rescans_the_facets_of_a_plain_collection(client: TestClient,
                                                          store: ScanCounter) -> None:
    assert client.get("/v1/facets").json()["color"] == {"red": 1}
    resp = client.post("/v1/admin/refresh", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert resp.status_code == 200
    assert resp.json() == {"replica": REPLICA, "collection": "products_x_g1",
                           "model_version": "m1", "pending": None}
    assert store.scans == 2 and client.get("/v1/facets").json()["color"] == {"red": 2}


def test_a_repeated_notice_is_acted_on_once(client: TestClient, store: ScanCounter) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    answers = [client.post("/v1/admin/refresh", params={"notice": n}, headers=auth).json()
               for n in ("a", "a", "a", "b")]
    assert store.scans == 2 and client.get("/v1/facets").json()["color"] == {"red": 2}
    assert [a["collection"] for a in answers] == ["products_x_g1"] * 4


def test_the_notifier_stops_once_no_new_replica_answers(client: TestClient,
                                                        store: ScanCounter) -> None:
    told = tell_routers("http://testserver", ADMIN_KEY, quiet=3, client=client)
    assert told.error == "" and told.replicas == {REPLICA: "products_x_g1"}
    assert store.scans == 1  # four calls, one notice: one rescan


def test_the_notifier_says_why_the_app_was_not_told(client: TestClient) -> None:
    told = tell_routers("http://testserver", "wrong-key-0123456", client=client)
    assert told.replicas == {} and "401" in told.error
