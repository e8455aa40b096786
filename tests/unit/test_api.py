"""The API's error mapping and observer, in-process (a stub store: pure HTTP logic only)."""

from __future__ import annotations

import base64
import io
import time
import types
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lookalike import search as search_module
from lookalike.api import create_api
from lookalike.catalog import Product
from lookalike.config import Settings
from lookalike.search import EmbedderUnavailable, Overloaded, SearchService
from lookalike.store.base import Hit, StoreError


class DownStore:
    """A store whose database is unreachable."""

    def __getattr__(self, name: str):
        def fail(*args, **kwargs):
            raise StoreError("connection refused")
        return fail


class OneProductStore:
    def search(self, **kwargs):
        return [Hit(Product("p1", title="t", color="red", price=3.0, images=("/x.jpg",)), 0.9)]

    def count(self) -> int:
        return 1

    def get(self, ids, with_vectors: bool = False) -> dict:
        return {}  # no product but p1's search hit is known by id

    def facets(self) -> dict:  # the vocabulary query understanding reads
        return {"category": {}, "color": {"red": 1}, "size": {}, "price": {"min": 3.0, "max": 3.0}}


async def embed(_: object) -> np.ndarray:
    return np.ones(4, dtype=np.float32)


ADMIN_KEY = "unit-test-admin-key"


def make_client(store: object, tmp_path: Path, records: list | None = None,
                settings: Settings | None = None) -> TestClient:
    service = SearchService(store=store, embed_image=embed, embed_text=embed, media_dir=tmp_path)
    settings = settings or Settings(data_dir=tmp_path, admin_key=ADMIN_KEY)
    return TestClient(create_api(service, settings, observer=records.append if records is not None else None),
                      raise_server_exceptions=False)


def jpeg(size: tuple[int, int] = (32, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, "JPEG")
    return buf.getvalue()


def test_store_down_is_503_not_500(tmp_path: Path) -> None:
    client = make_client(DownStore(), tmp_path)
    for resp in (client.get("/v1/search", params={"q": "x"}), client.get("/v1/products/p1"),
                 client.post("/v1/search", files={"image": ("a.jpg", jpeg(), "image/jpeg")})):
        assert resp.status_code == 503
        assert resp.json()["error"]["code"] == "store_unavailable"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
    assert client.get("/healthz").status_code == 200


def test_observer_gets_one_record_per_request(tmp_path: Path) -> None:
    records: list[dict] = []
    client = make_client(OneProductStore(), tmp_path, records)
    resp = client.get("/v1/search", params={"q": "red", "color": "red", "top_k": 3},
                      headers={"x-request-id": "abc"})
    assert resp.status_code == 200 and resp.headers["x-request-id"] == "abc"
    client.get("/v1/search", params={"q": "red", "top_k": 0})
    ok, bad = records
    assert ok["request_id"] == "abc" and ok["endpoint"] == "/v1/search" and ok["type"] == "text"
    assert ok["status"] == 200 and ok["top_k"] == 3 and ok["filters"] == {"colors": ["red"]}
    assert {"embed_ms", "search_ms", "total_ms"} <= ok.keys() and ok["error_code"] is None
    assert bad["status"] == 422 and bad["error_code"] == "invalid_parameter"


def test_the_record_puts_each_stage_s_time_in_its_own_field(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock that only the embedder (5 ms a call) and the store's search (7 ms a call) move:
    each stage's time lands in its own field, whatever the machine's speed (no wall clock is
    asserted; the observer's total runs on the real clock)."""
    now = [1000.0]
    clock = types.SimpleNamespace(**{n: getattr(time, n) for n in dir(time) if not n.startswith("_")})
    clock.perf_counter = lambda: now[0]
    monkeypatch.setattr(search_module, "time", clock)

    async def slow_embed(_: object) -> np.ndarray:
        now[0] += 0.005
        return np.ones(4, dtype=np.float32)

    calls: list[object] = []

    class SlowStore(OneProductStore):
        def search(self, **kwargs):
            calls.append(kwargs)
            now[0] += 0.007
            return super().search(**kwargs)

    records: list[dict] = []
    service = SearchService(store=SlowStore(), embed_image=slow_embed, embed_text=slow_embed,
                            media_dir=tmp_path)
    client = TestClient(create_api(service, Settings(data_dir=tmp_path, admin_key=ADMIN_KEY),
                                   observer=records.append))
    assert client.get("/v1/search", params={"q": "red", "top_k": 3}).status_code == 200
    (record,) = records
    assert calls  # however many store calls the plan makes, 7 ms each and nothing else
    assert (record["embed_ms"], record["search_ms"]) == (5.0, 7.0 * len(calls)), record


class BuggyStore(OneProductStore):
    def search(self, **kwargs):
        raise KeyError("a bug, not an outage")


def test_a_bug_is_a_json_500_and_still_recorded(tmp_path: Path) -> None:
    records: list[dict] = []
    client = make_client(BuggyStore(), tmp_path, records)
    resp = client.get("/v1/search", params={"q": "red"}, headers={"x-request-id": "bug1"})
    assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal"
    assert resp.headers["x-request-id"] == "bug1"
    (record,) = records
    assert record["status"] == 500 and record["error_code"] == "internal"
    assert record["endpoint"] == "/v1/search" and record["request_id"] == "bug1"


@pytest.mark.parametrize("kind,kwargs", [
    ("image", {"files": {"image": ("a.jpg", jpeg(), "image/jpeg")}}),
    ("hybrid", {"files": {"image": ("a.jpg", jpeg(), "image/jpeg")}, "data": {"text": "red"}}),
    ("text", {"json": {"text": "red"}}),
])
def test_request_type_is_recorded(tmp_path: Path, kind: str, kwargs: dict) -> None:
    records: list[dict] = []
    client = make_client(OneProductStore(), tmp_path, records)
    assert client.post("/v1/search", **kwargs).status_code == 200
    assert records[0]["type"] == kind


def test_docs_need_no_cdn(tmp_path: Path) -> None:
    client = make_client(OneProductStore(), tmp_path)
    page = client.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


@pytest.mark.parametrize("auth", ["Bearer ", "Bearer", "Bearer  ", f"Basic {ADMIN_KEY}",
                                  f"Bearer {ADMIN_KEY}x"])
def test_writes_refuse_an_empty_or_wrong_token(tmp_path: Path, auth: str) -> None:
    client = make_client(DownStore(), tmp_path)
    put = client.put("/v1/products/p1", headers={"Authorization": auth}, data={"metadata": "{}"},
                     files={"image": ("a.jpg", jpeg(), "image/jpeg")})
    assert put.status_code == 401 and put.json()["error"]["code"] == "unauthorized"
    assert client.delete("/v1/products/p1", headers={"Authorization": auth}).status_code == 401
    # The right key gets past the check (to the store, which is down here).
    ok = client.delete("/v1/products/p1", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert ok.status_code == 503


def test_an_empty_key_file_never_opens_writes(tmp_path: Path) -> None:
    # An empty admin.key used to give the key "" and let `Authorization: Bearer ` write.
    (tmp_path / "admin.key").write_text("")
    (tmp_path / "admin.key").chmod(0o600)  # a key file others may read is refused first
    # Now the app refuses to start instead.
    with pytest.raises(ValueError, match="is empty"):
        make_client(DownStore(), tmp_path, settings=Settings(data_dir=tmp_path))


@pytest.mark.parametrize("failure,code", [
    (EmbedderUnavailable("replica gone"), "embedder_unavailable"),
    (Overloaded("queue full"), "overloaded"),
])
def test_embedder_failures_and_back_pressure_are_503_with_retry_after(
        tmp_path: Path, failure: Exception, code: str) -> None:
    async def failing(_: object) -> np.ndarray:
        raise failure

    service = SearchService(store=OneProductStore(), embed_image=failing, embed_text=failing,
                            media_dir=tmp_path)
    client = TestClient(create_api(service, Settings(data_dir=tmp_path, admin_key=ADMIN_KEY)),
                        raise_server_exceptions=False)
    for resp in (client.get("/v1/search", params={"q": "red"}),
                 client.post("/v1/search", files={"image": ("a.jpg", jpeg(), "image/jpeg")})):
        assert resp.status_code == 503 and resp.json()["error"]["code"] == code
        assert resp.headers["retry-after"] == "1"


@pytest.mark.parametrize("infer", ["sometimes", "OFF"])
def test_a_bad_infer_mode_is_422(tmp_path: Path, infer: str) -> None:
    client = make_client(OneProductStore(), tmp_path)
    for r in (client.get("/v1/search", params={"q": "red dress", "infer": infer}),
              client.post("/v1/search", json={"text": "red dress", "infer": infer})):
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_parameter"


def test_search_lists_what_it_inferred_and_explains_results(tmp_path: Path) -> None:
    client = make_client(OneProductStore(), tmp_path)
    body = client.get("/v1/search", params={"q": "crimson shoes"}).json()
    assert body["inferred"]["colors"] == ["red"] and body["inferred"]["mode"] == "boost"
    assert body["relaxed"] == [] and body["full_matches"] == 1  # the one product is red
    boosts = body["results"][0]["explain"]["boosts"]
    assert [b["attribute"] for b in boosts] == ["color"] and "crimson" in boosts[0]["why"]
    off = client.get("/v1/search", params={"q": "crimson shoes", "infer": "off"}).json()
    assert off["inferred"] == {"mode": "off"} and off["results"][0]["explain"]["boosts"] == []


@pytest.mark.parametrize(("body", "status", "code"), [
    ({}, 422, "missing_query"),
    ({"negative": ["p1"]}, 422, "missing_query"),
    ({"positive": "p1,p2", "strategy": "nearest"}, 422, "invalid_parameter"),
    ({"positive": [1, 2]}, 422, "invalid_parameter"),
    ({"positive": ["bad id!"]}, 422, "invalid_product_id"),
    ({"positive": ["p1"], "top_k": 0}, 422, "invalid_parameter"),
    ({"positive": ["p1"], "filters": "red"}, 422, "invalid_parameter"),
    ({"positive": ["nope"]}, 404, "not_found"),
    ({"image_base64": "***"}, 400, "invalid_base64"),
])
def test_recommend_bad_input_is_4xx(tmp_path: Path, body: dict, status: int, code: str) -> None:
    r = make_client(OneProductStore(), tmp_path).post("/v1/recommend", json=body)
    assert r.status_code == status and r.json()["error"]["code"] == code


def test_recommend_wants_json(tmp_path: Path) -> None:
    r = make_client(OneProductStore(), tmp_path).post("/v1/recommend", data={"positive": "p1"})
    assert r.status_code == 415


@pytest.mark.parametrize("params", [{"diversity": "2"}, {"diversity": "x"}, {"not_like": "bad id!"}])
def test_search_refuses_bad_diversity_and_not_like(tmp_path: Path, params: dict) -> None:
    r = make_client(OneProductStore(), tmp_path).get("/v1/search", params={"q": "dress", **params})
    assert r.status_code == 422


@pytest.mark.parametrize("flag", ["cheaper", "other_color", "same_category"])
def test_similar_refuses_a_flag_that_is_not_a_boolean(tmp_path: Path, flag: str) -> None:
    r = make_client(OneProductStore(), tmp_path).get("/v1/products/p1/similar", params={flag: "maybe"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_parameter"


def test_a_removed_chip_drops_that_inference(tmp_path: Path) -> None:
    client = make_client(OneProductStore(), tmp_path)
    body = client.post("/v1/search", json={"text": "crimson shoes under 10",
                                           "drop_inferred": ["color"]}).json()
    assert "colors" not in body["inferred"] and body["inferred"]["price"] == {"lte": 10.0}
    r = client.post("/v1/search", json={"text": "shoes", "drop_inferred": ["brand"]})
    assert r.status_code == 422


@pytest.mark.parametrize("crop", [{"x": 0.5, "y": 0, "w": 0.6, "h": 1}, {"x": 0, "y": 0, "w": 0, "h": 1},
                                  {"x": "a", "y": 0, "w": 1, "h": 1}, [0, 0, 1, 1], {"x": 0}])
def test_a_bad_crop_is_422(tmp_path: Path, crop: object) -> None:
    client = make_client(OneProductStore(), tmp_path)
    r = client.post("/v1/search", json={"image_base64": base64.b64encode(jpeg()).decode(), "crop": crop})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_crop"


def test_the_crop_is_what_gets_embedded(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []

    async def embed_image(img: Image.Image) -> np.ndarray:
        seen.append(img.size)
        return np.ones(4, dtype=np.float32)

    service = SearchService(store=OneProductStore(), embed_image=embed_image, embed_text=embed,
                            media_dir=tmp_path)
    client = TestClient(create_api(service, Settings(data_dir=tmp_path, admin_key=ADMIN_KEY)))
    data = base64.b64encode(jpeg((64, 64))).decode()
    assert client.post("/v1/search", json={"image_base64": data, "crop": {"x": 0.25, "y": 0.5,
                                                                           "w": 0.5, "h": 0.5}}).status_code == 200
    r = client.post("/v1/search", files={"image": ("a.jpg", jpeg((64, 64)), "image/jpeg")},
                    data={"crop": "0,0,0.5,0.25"})
    assert r.status_code == 200 and seen == [(32, 32), (32, 16)]


class WriteLogStore(OneProductStore):
    """Records writes (this test is about the answer; the real store's side of the undo is in
    tests/integration/test_search_service.py)."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str]] = []

    def upsert(self, items) -> int:
        self.writes += [("upsert", i.product.product_id) for i in items]
        return len(items)

    def delete(self, ids) -> int:
        self.writes += [("delete", i) for i in ids]
        return len(ids)

    def referenced_images(self, refs) -> set:
        return set()


def test_a_failed_media_write_is_a_json_503_and_the_write_is_undone(tmp_path: Path) -> None:
    store = WriteLogStore()
    media = tmp_path / "media"
    media.write_bytes(b"")  # a file where the media directory should be: every save fails
    service = SearchService(store=store, embed_image=embed, embed_text=embed, media_dir=media)
    client = TestClient(create_api(service, Settings(data_dir=tmp_path, admin_key=ADMIN_KEY)),
                        raise_server_exceptions=False)
    resp = client.put("/v1/products/p9", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                      data={"metadata": '{"title": "red"}'},
                      files={"image": ("a.jpg", jpeg(), "image/jpeg")})
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "media_unavailable"
    assert resp.headers["retry-after"] == "1"
    assert store.writes == [("upsert", "p9"), ("delete", "p9")]


def test_collapse_variants_is_a_declared_strict_field(tmp_path: Path) -> None:
    client = make_client(OneProductStore(), tmp_path)
    for resp in (client.get("/v1/search", params={"q": "dress", "collapse_variants": "false"}),
                 client.post("/v1/search", json={"text": "dress", "collapse_variants": False}),
                 client.post("/v1/search", files={"text": (None, "dress"),
                                                    "collapse_variants": (None, "true")})):
        assert resp.status_code == 200, resp.text
        hit = resp.json()["results"][0]
        assert (hit["variants"], hit["other_variants"]) == (0, [])
    for resp in (client.post("/v1/search", json={"text": "dress", "collapse_variants": "yes"}),
                 client.get("/v1/search", params={"q": "dress", "collapse_variants": "maybe"})):
        assert resp.status_code == 422, resp.text
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "collapse_variants" in schema["SearchRequest"]["properties"]
    assert "collapse_variants" in schema["SearchForm"]["properties"]


class ShelfStore(OneProductStore):
    """Fifty products whose scores fall with their number: any page's expected ids are known."""

    products = tuple(Product(f"p{i:02d}", title="t", images=("/x.jpg",)) for i in range(50))

    def search(self, **kwargs):
        skip = set(kwargs.get("exclude_ids") or ())
        found = [Hit(p, 1.0 - i / 100) for i, p in enumerate(self.products)
                 if p.product_id not in skip]
        return found[:kwargs["top_k"]]

    def get(self, ids, with_vectors: bool = False) -> dict:
        from lookalike.store.base import Record

        v = np.ones(4, dtype=np.float32)
        return {p.product_id: Record(p, image_vectors=[v], text_vector=v)
                for p in self.products if p.product_id in ids}


def shelf(*numbers: int) -> list[str]:
    return [f"p{i:02d}" for i in numbers]


def test_pages_follow_next_offset_to_the_end(tmp_path: Path) -> None:
    client = make_client(ShelfStore(), tmp_path)
    shown, offset = [], 0
    while offset is not None:
        body = client.get("/v1/search", params={"q": "dress", "top_k": 15, "offset": offset}).json()
        assert body["offset"] == offset
        shown += [h["product_id"] for h in body["results"]]
        offset = body["next_offset"]
    assert shown == shelf(*range(50))


@pytest.mark.parametrize(("method", "path", "kwargs", "expected"), [
    ("post", "/v1/search", {"json": {"text": "dress", "top_k": 5, "offset": 5}}, shelf(*range(5, 10))),
    ("post", "/v1/search", {"files": {"text": (None, "dress"), "top_k": (None, "5"),
                                      "offset": (None, "5")}}, shelf(*range(5, 10))),
    ("get", "/v1/products/p00/similar", {"params": {"top_k": 5, "offset": 5}}, shelf(*range(6, 11))),
    ("post", "/v1/recommend", {"json": {"positive": "p00", "top_k": 5, "offset": 5}},
     shelf(*range(6, 11))),
])
def test_every_result_list_takes_an_offset(tmp_path: Path, method: str, path: str, kwargs: dict,
                                           expected: list[str]) -> None:
    resp = getattr(make_client(ShelfStore(), tmp_path), method)(path, **kwargs)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [h["product_id"] for h in body["results"]] == expected
    assert (body["offset"], body["next_offset"]) == (5, 10)


@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("get", "/v1/search", {"params": {"q": "dress", "top_k": 10, "offset": 991}}),
    ("get", "/v1/search", {"params": {"q": "dress", "offset": -1}}),
    ("post", "/v1/search", {"json": {"text": "dress", "top_k": 100, "offset": 901}}),
    ("post", "/v1/search", {"json": {"text": "dress", "offset": 1.5}}),
    ("post", "/v1/search", {"files": {"text": (None, "dress"), "offset": (None, "995")}}),
    ("get", "/v1/products/p00/similar", {"params": {"offset": 999}}),
    ("post", "/v1/recommend", {"json": {"positive": "p00", "offset": 1000}}),
])
def test_a_page_past_the_window_is_422(tmp_path: Path, method: str, path: str,
                                       kwargs: dict) -> None:
    resp = getattr(make_client(ShelfStore(), tmp_path), method)(path, **kwargs)
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_parameter"
