"""Hostile and malformed inputs, in-process: every one is a 4xx JSON error, never a 500.

The store and embedders are stand-ins (pure HTTP logic under test); images are real bytes
decoded by the real Pillow path.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.api import create_api, limits
from lookalike.catalog import Product
from lookalike.config import Settings
from lookalike.search import SearchService
from lookalike.store.base import Hit, Record
from tests.unit.test_api import ADMIN_KEY, DownStore, jpeg


class CatalogueStore:
    """Products whose stored image references point at hostile places."""

    def __init__(self, images: dict[str, tuple[str, ...]]) -> None:
        self.products = {pid: Product(pid, title="t", images=refs) for pid, refs in images.items()}

    def search(self, **kwargs):
        return [Hit(p, 0.5) for p in self.products.values()][: kwargs.get("top_k", 10)]

    def get(self, ids, with_vectors=False):
        return {i: Record(self.products[i]) for i in ids if i in self.products}

    def count(self) -> int:
        return len(self.products)


async def embed(_: object) -> np.ndarray:
    return np.ones(4, dtype=np.float32)


def client_for(store: object, tmp_path: Path, **settings: object) -> TestClient:
    service = SearchService(store=store, embed_image=embed, embed_text=embed,
                            media_dir=tmp_path / "media")
    config = Settings(data_dir=tmp_path, admin_key=ADMIN_KEY, **settings)
    return TestClient(create_api(service, config), raise_server_exceptions=False)


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return client_for(CatalogueStore({"p1": ("/nowhere.jpg",)}), tmp_path)


def assert_error(resp, status: int, code: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert err["message"]
    if code:
        assert err["code"] == code, err


def image_bytes(size: tuple[int, int], fmt: str = "PNG", mode: str = "1") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, fmt)
    return buf.getvalue()


def deep(n: int) -> str:
    return "[" * n + "]" * n


SEARCH_CASES = [
    # JSON bodies
    # over the JSON structure bound: refused before parsing
    ({"content": deep(100_000), "headers": {"content-type": "application/json"}}, 413,
     "too_large"),
    ({"content": deep(20_000), "headers": {"content-type": "application/json"}}, 400,
     "invalid_json"),
    ({"content": '{"text": "x", "filters": ' + deep(50) + "}",
      "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
    ({"json": {"text": "x" * 200_000}}, 422, "invalid_parameter"),  # refused, never cut
    ({"json": {"text": "x" * (limits.MAX_TEXT_CHARS + 1)}}, 422, "invalid_parameter"),
    ({"json": {"text": "x", "top_k": 3.7}}, 422, "invalid_parameter"),
    ({"json": {"text": "x", "top_k": True}}, 422, "invalid_parameter"),
    ({"json": {"text": "x", "top_k": "5"}}, 422, "invalid_parameter"),
    ({"json": {"text": "x", "image_weight": "0.5"}}, 422, "invalid_parameter"),
    ({"json": {"text": "x", "top_k": 5000}}, 422, "invalid_parameter"),
    ({"json": {"text": "x", "filters": {"colour": ["red"]}}}, 422, "invalid_parameter"),
    ({"json": {"text": "x", "filters": {"size": "\n"}}}, 422, "invalid_parameter"),
    ({"json": {"text": "x", "filters": {"size": ["   "]}}}, 422, "invalid_parameter"),
    ({"json": {"text": "x", "filters": {"color": ["red\x00"]}}}, 422, "invalid_parameter"),
    ({"json": {"text": "x", "filters": {"color": ["c"] * (limits.MAX_FILTER_VALUES + 1)}}}, 422,
     None),
    ({"json": {"text": "x", "filters": {"color": ["c" * 101]}}}, 422, None),
    ({"json": {"text": "x", "filters": {"price": {"gte": "cheap"}}}}, 422, None),
    ({"json": {"text": "x\x07"}}, 422, None),
    ({"json": {"text": "x", "unknown": 1}}, 422, None),
    ({"json": {"image_url": "http://" + "a" * 300 + ".example/x.jpg"}}, 422, "image_url_unusable"),
    ({"json": {"image_url": "http://" + "a" * 70 + ".example/x.jpg"}}, 422, "image_url_unusable"),
    ({"json": {"image_url": "http://93.184.216.34:8080/x.jpg"}}, 422, "image_url_unusable"),
    ({"json": {"image_url": "http://[::ffff:127.0.0.1]/x.jpg"}}, 422, "image_url_unusable"),
    # images
    ({"files": {"image": ("big.png", image_bytes((9000, 9000)), "image/png")}}, 413,
     "too_many_pixels"),
    ({"files": {"image": ("strip.png", image_bytes((1, 20_000)), "image/png")}}, 422,
     "bad_aspect_ratio"),
    ({"files": {"image": ("a.tif", image_bytes((8, 8), "TIFF", "RGB"), "image/tiff")}}, 415,
     "unsupported_image_format"),
    ({"files": {"image": ("a.jpg", jpeg(), "image/jpeg")}, "data": {"top_k": "3.7"}}, 422, None),
    ({"files": {"image": ("a.jpg", jpeg(), "image/jpeg")}, "data": {"colour": "red"}}, 422, None),
    ({"files": {"image": ("a.jpg", jpeg(), "image/jpeg")}, "data": {"size": " "}}, 422, None),
]


@pytest.mark.parametrize("kwargs,status,code", SEARCH_CASES)
def test_hostile_search_bodies_are_4xx_json(client: TestClient, kwargs: dict, status: int,
                                            code: str | None) -> None:
    assert_error(client.post("/v1/search", **kwargs), status, code)


@pytest.mark.parametrize("params,code", [
    ({"q": "x" * 20_000}, None), ({"q": "x" * 2001}, "invalid_parameter"),
    ({"q": "x", "top_k": "3.7"}, None), ({"q": "x", "top_k": "true"}, None),
    ({"q": "x", "colour": "red"}, None), ({"q": "x", "size": "\n"}, None),
    ({"q": "x", "color": "red,,blue"}, None), ({"q": "x", "color": "a\x00"}, None),
    ({"q": "x\x00"}, None), ({"q": "x", "min_price": "inf"}, None),
])
def test_hostile_query_strings_are_4xx_json(client: TestClient, params: dict, code) -> None:
    resp = client.get("/v1/search", params=params)
    assert 400 <= resp.status_code < 500, resp.text
    assert_error(resp, resp.status_code, code)


def test_a_chunked_body_is_counted_and_cut_at_the_limit(client: TestClient) -> None:
    resp = client.post("/v1/search", content=(b"x" * (1024 * 1024) for _ in range(64)),
                       headers={"content-type": "multipart/form-data; boundary=b"})
    assert_error(resp, 413, "too_large")


def test_the_body_limit_stops_reading_at_the_limit() -> None:
    """Pure ASGI: an app that reads everything gets no further than the limit allows."""
    import asyncio

    chunks_read = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal chunks_read
        chunks_read += 1
        return {"type": "http.request", "body": b"x" * 65536, "more_body": True}

    async def reads_everything(scope, receive, send) -> None:
        while (await receive()).get("more_body"):
            pass

    async def send(message: dict) -> None:
        sent.append(message)

    middleware = limits.BodyLimitMiddleware(reads_everything, max_upload=1024 * 1024, max_images=1)
    scope = {"type": "http", "method": "POST", "path": "/v1/search",
             "headers": [(b"content-type", b"multipart/form-data; boundary=b")]}
    asyncio.run(middleware(scope, receive, send))
    limit = limits.body_limit(method="POST", path="/v1/search", content_type="multipart/form-data",
                              max_upload=1024 * 1024, max_images=1)
    assert chunks_read == limit // 65536 + 1  # the first chunk over the limit, then no more
    assert sent[0]["status"] == 413 and b"too_large" in sent[1]["body"]


def test_a_declared_oversize_body_is_refused_unread(client: TestClient) -> None:
    resp = client.post("/v1/search", content=b"x" * 100,
                       headers={"content-type": "application/json",
                                "content-length": str(10 ** 9)})
    assert_error(resp, 413, "too_large")


def test_deep_metadata_is_400_not_500(client: TestClient) -> None:
    meta = '{"title": "x", "deep": ' + deep(2000) + "}"
    resp = client.put("/v1/products/p9", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                      data={"metadata": meta}, files={"image": ("a.jpg", jpeg(), "image/jpeg")})
    assert_error(resp, 400, "invalid_json")


def test_unavailable_is_503_with_retry_after_and_a_reason_code(tmp_path: Path) -> None:
    client = client_for(DownStore(), tmp_path)
    resp = client.get("/v1/search", params={"q": "x"})
    assert_error(resp, 503, "store_unavailable")
    assert resp.headers["retry-after"] == "1"
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "reason": "store_unavailable"}
    assert "connection refused" not in ready.text  # no exception text


def test_stored_image_references_are_contained(tmp_path: Path) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    outside.write_bytes(image_bytes((4, 4), "PNG", "RGB"))
    inside = tmp_path / "media" / "ok.png"
    inside.parent.mkdir()
    inside.write_bytes(image_bytes((4, 4), "PNG", "RGB"))
    (tmp_path / "media" / "link.png").symlink_to(outside)
    (tmp_path / "page.html").write_text("<script>alert(1)</script>")
    refs = (str(inside), "/etc/passwd", str(outside), str(tmp_path / "media" / "link.png"),
            "http://evil.example/x.jpg", str(tmp_path / "media" / ".." / ".." / outside.name),
            str(tmp_path / "page.html"))
    client = client_for(CatalogueStore({"p1": refs}), tmp_path)
    ok = client.get("/v1/products/p1/images/0")
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/png"
    assert ok.headers["x-content-type-options"] == "nosniff"
    for n in range(1, len(refs)):
        resp = client.get(f"/v1/products/p1/images/{n}", follow_redirects=False)
        assert_error(resp, 404, "not_found")


def test_redirects_only_to_configured_hosts(tmp_path: Path) -> None:
    client = client_for(CatalogueStore({"p1": ("https://cdn.example/a.jpg",
                                               "https://evil.example/a.jpg")}),
                        tmp_path, image_redirect_hosts=("cdn.example",))
    ok = client.get("/v1/products/p1/images/0", follow_redirects=False)
    assert ok.status_code == 307 and ok.headers["location"] == "https://cdn.example/a.jpg"
    assert_error(client.get("/v1/products/p1/images/1", follow_redirects=False), 404)


def test_the_page_has_a_csp(client: TestClient) -> None:
    page = client.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


def test_openapi_declares_bodies_limits_and_errors(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/v1/search"]["post"]
    content = post["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    schemas = spec["components"]["schemas"]
    req = schemas["SearchRequest"]
    assert req["additionalProperties"] is False
    assert req["properties"]["top_k"]["maximum"] == limits.TOP_K_CAP
    assert schemas["SearchFilters"]["additionalProperties"] is False
    assert "ProductUpload" in schemas and "SearchForm" in schemas
    for status in ("400", "413", "415", "422", "503"):
        ref = post["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorBody")
    assert post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/SearchResponse")
    get_params = {p["name"]: p for p in spec["paths"]["/v1/search"]["get"]["parameters"]}
    assert get_params["q"]["required"]
    assert get_params["q"]["schema"]["maxLength"] == limits.MAX_TEXT_CHARS
    assert "HTTPValidationError" not in json.dumps(spec)


# -- search-quality parameters (moved from wt-c's tests/unit/test_api_params.py) --------------

@pytest.mark.parametrize(("value", "want"), [(None, "boost"), ("boost", "boost"),
                                             ("filter", "filter"), ("off", "off")])
def test_infer_modes(value: object, want: str) -> None:
    from lookalike.api.models import SearchRequest

    body = {"text": "dress"} if value is None else {"text": "dress", "infer": value}
    assert SearchRequest.model_validate(body).infer == want


@pytest.mark.parametrize("value", ["Boost", "on", 1, ["off"], {"x": 1}, ""])
def test_infer_refuses_other_values(value: object) -> None:
    from pydantic import ValidationError

    from lookalike.api.models import SearchRequest

    with pytest.raises(ValidationError):
        SearchRequest.model_validate({"text": "dress", "infer": value})


def test_crop_ids_and_dropped_parsing() -> None:
    from lookalike.api.models import parse_crop, split_dropped, split_ids

    assert parse_crop(None) is None and parse_crop("") is None
    assert parse_crop("0,0.5,0.5,0.5") == (0.0, 0.5, 0.5, 0.5)
    for bad in ("0,0,1", "a,0,1,1", "0.5,0,0.6,1", "0,0,0,1", "nan,0,1,1"):
        with pytest.raises(ValueError):
            parse_crop(bad)
    assert split_ids(["a,b", "c"], "not_like") == ("a", "b", "c")
    assert split_ids(None, "not_like") == ()
    for bad in (["bad id!"], ["a,,b"], [",".join(f"p{i}" for i in range(51))]):
        with pytest.raises(ValueError):
            split_ids(bad, "not_like")
    assert split_dropped(["color,price"]) == ("color", "price")
    with pytest.raises(ValueError):
        split_dropped(["brand"])


def test_logical_references_resolve_under_their_roots(tmp_path: Path) -> None:
    """`media:<name>` in the media backend, `catalog:<relative>` under LOOKALIKE_CATALOG_ROOT;
    neither may climb out, by `..` or through a symlink."""
    png = image_bytes((4, 4), "PNG", "RGB")
    root = tmp_path / "catalogue"
    (root / "shoes").mkdir(parents=True)
    (root / "shoes" / "a.png").write_bytes(png)
    (root / "shoes" / "out.png").symlink_to(tmp_path / "elsewhere.png")
    (tmp_path / "elsewhere.png").write_bytes(png)
    service = SearchService(store=None, embed_image=embed, embed_text=embed,
                            media_dir=tmp_path / "media")
    media_ref = service.media.save(png)
    refs = (media_ref, "catalog:shoes/a.png", "catalog:shoes/../shoes/a.png",
            "catalog:shoes/out.png", "catalog:/etc/passwd", "media:" + "0" * 64 + ".png",
            "media:../catalogue/shoes/a.png", "catalog:shoes/missing.png")
    service.store = CatalogueStore({"p1": refs})
    client = TestClient(create_api(service, Settings(data_dir=tmp_path, admin_key=ADMIN_KEY,
                                                     catalog_root=root)),
                        raise_server_exceptions=False)
    for n in (0, 1):
        ok = client.get(f"/v1/products/p1/images/{n}")
        assert ok.status_code == 200 and ok.content == png, n
    for n in range(2, len(refs)):
        assert_error(client.get(f"/v1/products/p1/images/{n}"), 404, "not_found")
    unrooted = client_for(CatalogueStore({"p1": ("catalog:shoes/a.png",)}), tmp_path)
    assert_error(unrooted.get("/v1/products/p1/images/0"), 404, "not_found")
