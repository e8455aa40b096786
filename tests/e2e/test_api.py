"""HTTP API v1 end to end: real Ray Serve, real milvus-lite, packaged models, real HTTP."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from lookalike.catalog.product import Product
from tests.checks import all_of


def first_image(product: Product) -> bytes:
    return Path(product.images[0]).read_bytes()


@pytest.fixture(scope="module")
def products(catalogue: tuple[Path, list[Product]]) -> list[Product]:
    return catalogue[1]


def ids(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [r["product_id"] for r in resp.json()["results"]]


def assert_error(resp: httpx.Response, status: int, code: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["message"]
    if code:
        assert err["code"] == code


def test_health_ready_and_docs(client: httpx.Client, products: list[Product]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.json()["products"] >= len(products) - 2  # write tests may have deleted a few
    spec = client.get("/openapi.json").json()
    assert "/v1/search" in spec["paths"] and "/v1/products/{product_id}/similar" in spec["paths"]
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize("index", [0, 7, 23])
def test_image_of_a_catalogue_product_finds_it_first(client: httpx.Client, products: list[Product],
                                                    index: int) -> None:
    p = products[index]
    resp = client.post("/v1/search", files={"image": ("q.jpg", first_image(p), "image/jpeg")},
                       data={"top_k": "5"})
    body = resp.json()
    assert ids(resp)[0] == p.product_id
    assert body["took_ms"] > 0
    top = body["results"][0]
    assert set(top) >= {"product_id", "score", "title", "category", "color", "size", "price",
                        "image_url", "attributes"}
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)


def test_second_image_matches_its_product(client: httpx.Client, products: list[Product]) -> None:
    p = next(p for p in products if len(p.images) > 1)
    resp = client.post("/v1/search", files={"image": ("q.jpg", Path(p.images[1]).read_bytes(), "image/jpeg")})
    top = resp.json()["results"][0]
    assert top["product_id"] == p.product_id and top["image_url"].endswith("/images/1")


def test_json_search_with_base64_and_image_url(client: httpx.Client, products: list[Product],
                                               app_url: str) -> None:
    p = products[3]
    b64 = base64.b64encode(first_image(p)).decode()
    assert ids(client.post("/v1/search", json={"image_base64": b64, "top_k": 3}))[0] == p.product_id
    url = f"{app_url}/v1/products/{p.product_id}/images/0"
    assert ids(client.post("/v1/search", json={"image_url": url, "top_k": 3}))[0] == p.product_id


def test_text_search_get(client: httpx.Client) -> None:
    resp = client.get("/v1/search", params={"q": "red dress", "top_k": 5})
    results = resp.json()["results"]
    assert 0 < len(results) <= 5
    assert results[0]["color"] == "red" or results[0]["category"] == "dress"


@pytest.mark.parametrize("params,check", [
    ({"color": "red,blue"}, lambda r: r["color"] in ("red", "blue")),
    ({"category": ["dress", "coat"]}, lambda r: r["category"] in ("dress", "coat")),
    ({"size": "M"}, lambda r: r["size"] == "M"),
    ({"min_price": 20, "max_price": 60}, lambda r: 20 <= r["price"] <= 60),
])
def test_filters_are_honoured_by_every_result(client: httpx.Client, params: dict, check) -> None:
    resp = client.get("/v1/search", params={"q": "something to wear", "top_k": 50, **params})
    results = resp.json()["results"]
    assert results
    assert all(check(r) for r in results), results


def test_a_comma_list_of_ten_categories_is_ten_values_and_65_is_a_422(
        client: httpx.Client, products: list[Product]) -> None:
    # Issue 29: a query string's or form's comma list is split first, then each value limited
    # (it was one string over 100 characters: a 422); 65 values is a 422 naming the limit.
    real = sorted({p.category for p in products if p.category})[:5]
    names = real + [f"no-such-category-{i}" for i in range(10 - len(real))]
    joined = ",".join(names)
    assert real and len(joined) > 100
    p = products[9]
    for resp in (client.get("/v1/search", params={"q": "something to wear", "top_k": 20,
                                                  "category": joined}),
                 client.post("/v1/search", data={"top_k": "20", "category": joined},
                             files={"image": ("q.jpg", first_image(p), "image/jpeg")}),
                 client.get(f"/v1/products/{p.product_id}/similar",
                            params={"top_k": 8, "category": joined})):
        results = resp.json()["results"] if resp.status_code == 200 else resp.text
        assert resp.status_code == 200 and results, results
        assert all(r["category"] in real for r in results), results
    many = ",".join(f"c{i}" for i in range(65))
    for resp in (client.get("/v1/search", params={"q": "shirt", "category": many}),
                 client.post("/v1/search", data={"text": "shirt", "category": many},
                             files={"image": ("q.jpg", first_image(p), "image/jpeg")}),
                 client.get(f"/v1/products/{p.product_id}/similar", params={"color": many})):
        assert_error(resp, 422, "invalid_parameter")
        assert "at most 64 values" in resp.json()["error"]["message"]
    resp = client.post("/v1/search", json={"text": "shirt",
                                           "filters": {"size": many.split(",")}})
    assert_error(resp, 422, "invalid_parameter")
    assert resp.json()["error"]["message"].startswith("filters.size: at most 64 values")


def test_hybrid_search_multipart_and_json_filters(client: httpx.Client, products: list[Product]) -> None:
    p = products[5]
    resp = client.post("/v1/search", files={"image": ("q.jpg", first_image(p), "image/jpeg")},
                       data={"text": p.title, "image_weight": "0.7", "top_k": "5"})
    assert ids(resp)[0] == p.product_id
    resp = client.post("/v1/search", json={"text": "shoes", "top_k": 20,
                                           "filters": {"color": [p.color], "price": {"lte": 500}}})
    all_of(resp.json()["results"], lambda r: r["color"] == p.color)


def test_get_product_and_images(client: httpx.Client, products: list[Product]) -> None:
    p = next(p for p in products if len(p.images) > 1)
    body = client.get(f"/v1/products/{p.product_id}").json()
    assert body["title"] == p.title and body["price"] == pytest.approx(p.price)
    assert len(body["image_urls"]) == len(p.images)
    img = client.get(body["image_urls"][1])
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    assert img.content == Path(p.images[1]).read_bytes()
    assert_error(client.get(f"/v1/products/{p.product_id}/images/9"), 404, "not_found")
    assert_error(client.get("/v1/products/nope"), 404, "not_found")


def test_similar_excludes_the_product(client: httpx.Client, products: list[Product]) -> None:
    p = products[9]
    resp = client.get(f"/v1/products/{p.product_id}/similar", params={"top_k": 8})
    got = ids(resp)
    assert len(got) == 8 and p.product_id not in got
    filtered = client.get(f"/v1/products/{p.product_id}/similar",
                          params={"top_k": 8, "category": p.category}).json()["results"]
    all_of(filtered, lambda r: r["category"] == p.category)
    assert_error(client.get("/v1/products/nope/similar"), 404)


def _png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (96, 96), color).save(buf, "PNG")
    return buf.getvalue()


def test_put_is_searchable_at_once_and_delete_disappears(client: httpx.Client, admin: dict,
                                                        products: list[Product]) -> None:
    source = products[11]
    image = first_image(source)
    meta = {"title": "Limited zebra-stripe festival poncho", "category": "coat", "color": "teal",
            "size": "M", "price": 77.5, "season": "summer"}
    resp = client.put("/v1/products/new-poncho", headers=admin,
                      data={"metadata": json.dumps(meta)},
                      files=[("image", ("a.jpg", image, "image/jpeg")), ("image", ("b.png", _png((0, 128, 128)), "image/png"))])
    assert resp.status_code == 200, resp.text
    assert resp.json()["attributes"] == {"season": "summer"}
    assert ids(client.get("/v1/search", params={"q": "zebra-stripe festival poncho", "top_k": 3}))[0] == "new-poncho"
    got = client.get("/v1/products/new-poncho").json()
    assert len(got["image_urls"]) == 2
    assert client.get(got["image_urls"][1]).headers["content-type"] == "image/png"
    resp = client.put("/v1/products/new-poncho", headers=admin,
                      data={"metadata": json.dumps({**meta, "title": "Plain grey poncho"})},
                      files=[("image", ("a.jpg", image, "image/jpeg"))])
    assert resp.status_code == 200
    assert client.get("/v1/products/new-poncho").json()["title"] == "Plain grey poncho"
    assert len(client.get("/v1/products/new-poncho").json()["image_urls"]) == 1
    assert client.delete("/v1/products/new-poncho", headers=admin).status_code == 204
    assert "new-poncho" not in ids(client.get("/v1/search", params={"q": "grey poncho", "top_k": 10}))
    assert_error(client.get("/v1/products/new-poncho"), 404)
    assert_error(client.delete("/v1/products/new-poncho", headers=admin), 404, "not_found")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}])
def test_writes_need_the_admin_key(client: httpx.Client, headers: dict, products: list[Product]) -> None:
    resp = client.put("/v1/products/x1", headers=headers, data={"metadata": "{}"},
                      files=[("image", ("a.jpg", first_image(products[0]), "image/jpeg"))])
    assert_error(resp, 401, "unauthorized")
    assert resp.headers["www-authenticate"] == "Bearer"
    assert_error(client.delete(f"/v1/products/{products[0].product_id}", headers=headers), 401)
    assert client.get(f"/v1/products/{products[0].product_id}").status_code == 200


def test_bad_writes_are_4xx_and_lose_nothing(client: httpx.Client, admin: dict, products: list[Product]) -> None:
    p = products[1]
    before = client.get(f"/v1/products/{p.product_id}").json()
    img = ("image", ("a.jpg", first_image(p), "image/jpeg"))
    assert_error(client.put(f"/v1/products/{p.product_id}", headers=admin, data={"metadata": "{bad"},
                            files=[img]), 400, "invalid_json")
    assert_error(client.put(f"/v1/products/{p.product_id}", headers=admin,
                            data={"metadata": '{"price": "free"}'}, files=[img]), 422, "invalid_metadata")
    assert_error(client.put(f"/v1/products/{p.product_id}", headers=admin,
                            data={"metadata": '{"product_id": "other"}'}, files=[img]), 422)
    assert_error(client.put(f"/v1/products/{p.product_id}", headers=admin, data={"metadata": "{}"}),
                 422, "missing_image")
    assert_error(client.put(f"/v1/products/{p.product_id}", headers=admin, data={"metadata": "{}"},
                            files=[("image", ("a.jpg", b"GIF89a-nope", "image/gif"))]), 415, "invalid_image")
    assert_error(client.put(f"/v1/products/{p.product_id}", headers=admin, json={}), 415)
    assert_error(client.put("/v1/products/bad%20id", headers=admin, data={"metadata": "{}"}, files=[img]), 422)
    assert client.get(f"/v1/products/{p.product_id}").json() == before


@pytest.mark.parametrize("call,status,code", [
    (lambda c: c.get("/v1/search"), 422, "missing_query"),
    (lambda c: c.get("/v1/search", params={"q": "x", "top_k": 0}), 422, "invalid_parameter"),
    (lambda c: c.get("/v1/search", params={"q": "x", "top_k": 101}), 422, "invalid_parameter"),
    (lambda c: c.get("/v1/search", params={"q": "x", "min_price": "cheap"}), 422, "invalid_parameter"),
    (lambda c: c.get("/v1/search", params={"q": "x", "min_price": 9, "max_price": 1}), 422, None),
    (lambda c: c.post("/v1/search", json={}), 422, "missing_query"),
    (lambda c: c.post("/v1/search", json={"text": 5}), 422, None),
    (lambda c: c.post("/v1/search", json={"text": "x", "image_weight": 2}), 422, None),
    (lambda c: c.post("/v1/search", json={"text": "x", "filters": {"price": 5}}), 422, None),
    (lambda c: c.post("/v1/search", json=[1, 2]), 400, "invalid_json"),
    (lambda c: c.post("/v1/search", content=b"{oops", headers={"content-type": "application/json"}), 400, "invalid_json"),
    (lambda c: c.post("/v1/search", json={"image_base64": "***"}), 400, "invalid_base64"),
    (lambda c: c.post("/v1/search", json={"image_base64": base64.b64encode(b"text").decode()}), 415, "invalid_image"),
    (lambda c: c.post("/v1/search", json={"image_url": "ftp://x/y.jpg"}), 422, "image_url_unusable"),
    (lambda c: c.post("/v1/search", content=b"hello", headers={"content-type": "text/plain"}), 415, None),
    (lambda c: c.post("/v1/search", files={"image": ("x.txt", b"plain text", "text/plain")}), 415, "invalid_image"),
    (lambda c: c.post("/v1/search", data={"top_k": "3"}, files={"image": ("e.jpg", b"", "image/jpeg")}), 422, None),
    (lambda c: c.get("/v1/nothing-here"), 404, "not_found"),
])
def test_client_errors_are_clear_json(client: httpx.Client, call, status: int, code: str | None) -> None:
    assert_error(call(client), status, code)


def test_too_large_upload_is_413(client: httpx.Client) -> None:
    big = b"\xff" * (10 * 1024 * 1024 + 10)
    assert_error(client.post("/v1/search", files={"image": ("big.jpg", big, "image/jpeg")}), 413, "too_large")


def test_private_image_urls_are_refused_by_default() -> None:
    import asyncio

    from lookalike.fetch import FetchError, fetch_url

    with pytest.raises(FetchError, match="non-public"):
        asyncio.run(fetch_url("http://127.0.0.1/x.jpg"))


def test_variants_collapse_to_one_result_that_lists_the_others(client: httpx.Client, admin: dict,
                                                               products: list[Product]) -> None:
    image = first_image(products[5])
    meta = {"title": "Variant test parka", "category": "coat", "price": 99.0,
            "group_id": "e2e-parka"}  # an explicit group, as a manifest column would give
    made = {"parka-red": ("red", "S"), "parka-blue": ("blue", "L")}
    try:
        for pid, (color, size) in made.items():
            resp = client.put(f"/v1/products/{pid}", headers=admin,
                              data={"metadata": json.dumps({**meta, "color": color, "size": size})},
                              files=[("image", ("a.jpg", image, "image/jpeg"))])
            assert resp.status_code == 200, resp.text
        body = {"image_base64": base64.b64encode(image).decode(), "top_k": 10, "infer": "off"}
        resp = client.post("/v1/search", json=body)
        assert resp.status_code == 200, resp.text
        parkas = [r for r in resp.json()["results"] if r["product_id"] in made]
        assert len(parkas) == 1 and parkas[0]["variants"] == 1, parkas
        best = parkas[0]["product_id"]
        (other,) = parkas[0]["other_variants"]
        assert other["product_id"] == next(p for p in made if p != best)
        assert (other["color"], other["size"]) == made[other["product_id"]]
        assert client.get(other["image_url"]).status_code == 200
        # Collapsing off, in JSON, in a form and in the query string: every variant is a result.
        assert set(made) <= set(ids(client.post("/v1/search",
                                                json={**body, "collapse_variants": False})))
        assert set(made) <= set(ids(client.post(
            "/v1/search", data={"infer": "off", "collapse_variants": "false"},
            files={"image": ("q.jpg", image, "image/jpeg")})))
        assert set(made) <= set(ids(client.get("/v1/search", params={
            "q": "variant test parka", "collapse_variants": "false", "infer": "off"})))
        assert_error(client.post("/v1/search", json={**body, "collapse_variants": "yes"}), 422)
        # The best member deleted: the other one stands for the group, with no variants left.
        assert client.delete(f"/v1/products/{best}", headers=admin).status_code == 204
        rest = [r for r in client.post("/v1/search", json=body).json()["results"]
                if r["product_id"] in made]
        assert [(r["product_id"], r["variants"]) for r in rest] == [(other["product_id"], 0)]
    finally:
        for pid in made:
            client.delete(f"/v1/products/{pid}", headers=admin)
