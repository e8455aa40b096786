"""Hostile inputs of issue 31 through the API, in-process (stand-in store and embedders, the
real decoding and parsing): each class is a 4xx JSON error with a code, never a 500. Imports
only what the API had before, so each case fails on its own on the old code."""

from __future__ import annotations

import asyncio
import base64
import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.api import create_api
from lookalike.config import Settings
from lookalike.search import SearchService
from tests import hostile
from tests.unit.test_api import ADMIN_KEY, OneProductStore

SMALL_BODY_BYTES = 64 * 1024


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    async def embed(_: object) -> np.ndarray:
        return np.ones(4, dtype=np.float32)

    service = SearchService(store=OneProductStore(), embed_image=embed, embed_text=embed,
                            media_dir=tmp_path, min_short_side=256)
    return TestClient(create_api(service, Settings(data_dir=tmp_path, admin_key=ADMIN_KEY)),
                      raise_server_exceptions=False)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("case", sorted(hostile.CASES))
def test_each_hostile_class_is_a_4xx_json_error(client: TestClient, case: str) -> None:
    status, code = hostile.EXPECTED[case]
    resp = hostile.send(client, case, admin_key=ADMIN_KEY)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code


def test_recommend_takes_a_real_photo_as_base64(client: TestClient) -> None:
    photo = hostile.noise_jpeg((800, 600))
    assert len(photo) > SMALL_BODY_BYTES
    resp = client.post("/v1/recommend", json={"image_base64": b64(photo)})
    assert resp.status_code == 200, resp.text


def test_crop_fractions_refer_to_the_source_photo(client: TestClient) -> None:
    ok = client.post("/v1/search", json={"image_base64": b64(hostile.jpeg((400, 100))),
                                         "crop": {"x": 0, "y": 0, "w": 0.5, "h": 1}})
    assert ok.status_code == 200, ok.text
    form = client.post("/v1/search", files={"image": ("a.jpg", hostile.jpeg((400, 100)),
                                                      "image/jpeg")},
                       data={"crop": "0,0,1,0.001"})
    assert form.status_code == 422 and form.json()["error"]["code"] == "invalid_crop"


def test_slow_decodes_never_take_the_store_threads(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """More stuck decodes than asyncio's default executor has threads: store calls (here
    /readyz's count) still run at once, and the decodes queue on their own two threads."""
    release = threading.Event()
    decoders: set[str] = set()

    def stuck(*args: object, **kwargs: object) -> Image.Image:
        decoders.add(threading.current_thread().name)
        release.wait(30)
        return Image.new("RGB", (8, 8))

    class CountingStore(OneProductStore):
        def count(self) -> int:
            assert not release.is_set()  # answered while every decode is still stuck
            return 1

    monkeypatch.setattr("lookalike.search.decode_image", stuck)
    service = SearchService(store=CountingStore(), embed_image=None, embed_text=None,
                            media_dir=tmp_path)

    async def run() -> int:
        decodes = [asyncio.ensure_future(service.load_image(b"x")) for _ in range(40)]
        try:
            return await asyncio.wait_for(service.count(), 10)
        finally:
            release.set()
            await asyncio.gather(*decodes)

    assert asyncio.run(run()) == 1
    assert len(decoders) <= 2 and all("decode" in t for t in decoders)


def test_booleans_are_no_prices() -> None:
    from lookalike.catalog.manifest import RowError, parse_row

    row = parse_row({"product_id": "p1", "price": True, "images": ["a.jpg"]}, 1)
    assert isinstance(row, RowError) and row.field == "price"
