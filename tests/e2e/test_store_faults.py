"""Fault tests (issue 8a, 8e): milvus-lite killed under bounded loopback load.

The load runs once for the module (concurrency 4, loopback only, bounded by counts and events:
tests/e2e/fault_load.py): text searches and PUTs of new products; once the app serves, the
shared app's embedded server is SIGKILLed and its supervisor restarts it; the load ends once a
new server process listens and then HEALED_OK requests in a row succeeded. The store must heal by itself (no app restart), nothing
acknowledged may be lost, and no write may be left half done.
"""

from __future__ import annotations

import io
import json

import httpx
import pytest
from PIL import Image

from lookalike import procs
from lookalike.config import Settings
from lookalike.store import MilvusStore
from lookalike.store.lite_server import LiteServer
from tests.e2e.conftest import ADMIN_KEY
from tests.e2e.fault_load import (
    HEAL_WITHIN_S,
    MIN_REQUESTS,
    Outcome,
    Run,
    back_to_full_service,
    figures,
    run_with_fault,
)
from tests.e2e.served import App

pytestmark = pytest.mark.slow

QUERIES = ["red dress", "black sneaker", "blue coat", "leather bag", "ankle boot"]


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (seed * 37 % 256, seed * 91 % 256, seed * 13 % 256)).save(buf, "PNG")
    return buf.getvalue()


def searches_and_puts(client: httpx.AsyncClient, n: int):
    if n % 4 == 3:
        pid, images = f"fault-{n}", 1 + n % 3
        meta = {"title": f"Fault test jacket {n}", "category": "coat", "color": "teal"}
        call = client.put(f"/v1/products/{pid}", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                          data={"metadata": json.dumps(meta)},
                          files=[("image", (f"{i}.png", png(n + i), "image/png"))
                                 for i in range(images)])
        return call, Outcome("put", product_id=pid, images=images)
    call = client.get("/v1/search", params={"q": QUERIES[n % len(QUERIES)], "top_k": 5})
    return call, Outcome("search")


class StoreKill:
    """SIGKILL the app's milvus-lite server (not its supervisor); healed once a new server
    process listens on the store's port."""

    def __init__(self, settings: Settings) -> None:
        self.lite = LiteServer.from_settings(settings)
        self.before = self.servers()
        assert self.before, "no milvus-lite server process found"

    def servers(self) -> set[int]:
        """The server processes its supervisor runs now."""
        return {p for p in procs.descendants(self.lite.supervisor_pid() or -1)
                if "lookalike.store.lite_launcher" in procs.command_line(p)}

    def kill(self) -> None:
        self.lite.kill_server()

    def healed(self) -> bool:
        now = self.servers()
        return bool(now) and not now & self.before and self.lite.is_serving()


@pytest.fixture(scope="module")
def store_kill(app: App, app_settings: Settings) -> Run:
    fault = StoreKill(app_settings)
    run = run_with_fault(app.url, searches_and_puts, fault.kill, fault.healed)
    yield run
    with httpx.Client(base_url=app.url, timeout=60) as client:  # leave the catalogue as it was
        for o in run.outcomes:
            if o.product_id:
                client.delete(f"/v1/products/{o.product_id}",
                              headers={"Authorization": f"Bearer {ADMIN_KEY}"})


def test_the_store_heals_within_15_s_and_every_failure_is_a_json_503(store_kill: Run) -> None:
    report = figures(store_kill)
    print("store kill:", report)
    failed = [o for o in store_kill.outcomes if o.status != 200]
    assert failed, "the kill was never seen: the test proved nothing"
    assert report["requests"] >= MIN_REQUESTS, report
    assert store_kill.healed_at is not None, f"no new server within {HEAL_WITHIN_S} s: {report}"
    assert all(o.status == 503 and o.json_body and o.code == "store_unavailable"
               for o in failed), [(o.status, o.code) for o in failed][:10]
    assert back_to_full_service(store_kill), f"not back to 100% within 15 s: {report}"


def test_acknowledged_writes_survive_and_no_write_is_half_done(store_kill: Run, app_url: str,
                                                               app_settings: Settings) -> None:
    puts = [o for o in store_kill.outcomes if o.kind == "put"]
    assert any(o.status == 200 for o in puts)
    assert any(o.started > store_kill.killed_at for o in puts)
    store = MilvusStore.from_settings(app_settings, image_dim=1280, text_dim=384)
    try:
        records = store.get([o.product_id for o in puts])
    finally:
        store.close()
    with httpx.Client(base_url=app_url, timeout=60) as client:
        for o in puts:
            rec = records.get(o.product_id)
            if o.status == 200:  # acknowledged: must be there, whole
                assert rec is not None, f"acknowledged {o.product_id} was lost"
            if rec is None:
                assert client.get(f"/v1/products/{o.product_id}").status_code == 404
                continue
            # Stored (acknowledged or not): the newest version is complete, never a part.
            assert rec.image_rows == len(rec.product.images) == o.images, (o, rec.image_rows)
            body = client.get(f"/v1/products/{o.product_id}").json()
            assert len(body["image_urls"]) == o.images
            assert body["title"] == f"Fault test jacket {o.product_id.split('-')[1]}"
