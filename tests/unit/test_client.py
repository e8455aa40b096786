"""lookalike.client's pure logic: the requests it builds, the answers and errors it maps, and its
retry schedule, over httpx.MockTransport; then the same requests read by the real API routes
in-process (a recording service stands in for search). Every test runs the sync Client and
the AsyncClient alike: they share the request building, and this checks they share behaviour."""

from __future__ import annotations

import asyncio
import base64
import email.parser
import email.policy
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from lookalike.client import (
    AsyncClient,
    Client,
    Facets,
    Filters,
    Info,
    LookalikeError,
    Product,
    Retry,
    SearchResult,
)

URL = "http://lookalike.test"
KEY = "unit-admin-key-0123"


def jpeg(color: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buf, "JPEG")
    return buf.getvalue()


def hit(pid: str, score: float = 0.9, **more: Any) -> dict[str, Any]:
    return {"product_id": pid, "score": score, "title": f"t {pid}", "category": "dress",
            "color": "red", "size": "M", "price": 10.0, "image_url": f"/v1/products/{pid}/images/0",
            "attributes": {}, "explain": None, "variants": 0, "other_variants": [], **more}


SEARCH_OK = {"results": [hit("p1")], "inferred": {"mode": "boost"}, "relaxed": [], "took_ms": 1.5}


def error(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": f"{code} happened"}},
                          headers=headers)


@dataclass
class Server:
    """A MockTransport handler: records each request and answers from a queue (the last
    answer repeats)."""

    answers: list[httpx.Response] = field(default_factory=lambda: [httpx.Response(200, json=SEARCH_OK)])
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


class Api:
    """Runs one client method, sync or async, over a Server; `sleeps` records the retry waits."""

    def __init__(self, kind: str, server: Server, retry: Retry | None = None) -> None:
        self.kind, self.server, self.retry, self.sleeps = kind, server, retry or Retry(), []

    def __getattr__(self, method: str) -> Callable[..., Any]:
        transport = httpx.MockTransport(self.server)

        def sync_call(*args: Any, **kwargs: Any) -> Any:
            with Client(URL, admin_key=KEY, retry=self.retry, sleep=self.sleeps.append,
                        transport=transport) as client:
                return getattr(client, method)(*args, **kwargs)

        async def record(seconds: float) -> None:
            self.sleeps.append(seconds)

        async def async_call(*args: Any, **kwargs: Any) -> Any:
            async with AsyncClient(URL, admin_key=KEY, retry=self.retry, sleep=record,
                                   transport=transport) as client:
                return await getattr(client, method)(*args, **kwargs)

        if self.kind == "sync":
            return sync_call
        return lambda *a, **kw: asyncio.run(async_call(*a, **kw))


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
def api(kind: str, server: Server) -> Api:
    return Api(kind, server)


def form(request: httpx.Request) -> list[tuple[str, str | None, bytes]]:
    """A multipart/form-data body's parts as (field name, filename, bytes), in order."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.content)
    return [(part.get_param("name", header="content-disposition"), part.get_filename(),
             part.get_payload(decode=True)) for part in message.iter_parts()]


def fields(request: httpx.Request) -> list[tuple[str, str]]:
    return [(name, data.decode()) for name, filename, data in form(request) if filename is None]


def files(request: httpx.Request) -> list[tuple[str, str | None, bytes]]:
    return [part for part in form(request) if part[1] is not None]


# -- requests --------------------------------------------------------------------------------

def test_text_search_is_one_json_body_with_only_what_was_given(api: Api, server: Server) -> None:
    got = api.search("red dress", top_k=5, infer="filter", not_like="p9",
                     drop_inferred=["color"], collapse_variants=False)
    req = server.last
    assert (req.method, req.url.path) == ("POST", "/v1/search")
    assert json.loads(req.content) == {"text": "red dress", "top_k": 5, "infer": "filter",
                                       "not_like": ["p9"], "drop_inferred": ["color"],
                                       "collapse_variants": False}
    assert isinstance(got, SearchResult) and got.product_ids == ["p1"]


def test_filters_in_json_are_lists_and_a_price_range(api: Api, server: Server) -> None:
    api.search("coat", filters={"category": ["dress", "coat"], "color": "red", "size": ("S",),
                                "min_price": 20, "max_price": 60.5})
    assert json.loads(server.last.content)["filters"] == {
        "category": ["dress", "coat"], "color": ["red"], "size": ["S"],
        "price": {"gte": 20, "lte": 60.5}}
    api.search("coat", filters=Filters(color=["red", "blue"], max_price=9))
    assert json.loads(server.last.content)["filters"] == {"color": ["red", "blue"],
                                                          "price": {"lte": 9}}
    api.search("coat", filters={})
    assert "filters" not in json.loads(server.last.content)


def test_an_unknown_filter_is_refused_before_any_request(api: Api, server: Server) -> None:
    with pytest.raises(ValueError, match="colour"):
        api.search("coat", filters={"colour": "red"})
    with pytest.raises(ValueError, match="at least one"):
        api.search()
    assert server.requests == []


def test_image_url_is_sent_for_the_server_to_fetch(api: Api, server: Server) -> None:
    api.search(image="HTTPS://shop.example/a.jpg", crop=(0.1, 0.2, 0.5, 0.5), image_weight=0.7)
    assert server.last.headers["content-type"] == "application/json"
    assert json.loads(server.last.content) == {
        "image_url": "HTTPS://shop.example/a.jpg", "top_k": 10, "image_weight": 0.7,
        "crop": {"x": 0.1, "y": 0.2, "w": 0.5, "h": 0.5}}


@pytest.mark.parametrize("image_kind", ["str path", "Path", "bytes", "bytearray"])
def test_a_photo_file_or_bytes_is_uploaded_as_is(api: Api, server: Server, tmp_path: Path,
                                                 image_kind: str) -> None:
    data = jpeg()
    (tmp_path / "shoe.jpg").write_bytes(data)
    image = {"str path": str(tmp_path / "shoe.jpg"), "Path": tmp_path / "shoe.jpg",
             "bytes": data, "bytearray": bytearray(data)}[image_kind]
    api.search("red", image=image, top_k=3)
    req = server.last
    assert req.headers["content-type"].startswith("multipart/form-data")
    ((name, filename, content),) = files(req)
    assert name == "image" and content == data
    assert filename == ("shoe.jpg" if "ath" in image_kind else "image.jpeg")
    assert b"Content-Type: image/jpeg" in req.content
    assert fields(req) == [("text", "red"), ("top_k", "3")]


def test_a_pil_image_is_uploaded_as_lossless_png(api: Api, server: Server) -> None:
    image = Image.new("RGB", (8, 4), (1, 2, 3))
    image.putpixel((0, 0), (250, 0, 7))
    api.search(image=image)
    ((_, filename, content),) = files(server.last)
    sent = Image.open(io.BytesIO(content))
    assert filename == "image.png" and sent.format == "PNG"
    assert list(sent.getdata()) == list(image.getdata())
    api.search(image=Image.new("CMYK", (4, 4)))  # a mode PNG cannot hold goes through RGB
    assert Image.open(io.BytesIO(files(server.last)[0][2])).mode == "RGB"


def test_multipart_filters_and_lists_repeat_the_field(api: Api, server: Server) -> None:
    api.search(image=jpeg(), filters={"category": ["dress", "coat"], "size": "XL",
                                      "min_price": 5}, not_like=["a", "b"],
               drop_inferred=["color"], crop=(0, 0, 0.5, 1), collapse_variants=True,
               diversity=0.3, infer="off")
    assert sorted(fields(server.last)) == sorted([
        ("top_k", "10"), ("infer", "off"), ("diversity", "0.3"), ("crop", "0,0,0.5,1"),
        ("collapse_variants", "true"), ("category", "dress"), ("category", "coat"),
        ("size", "XL"), ("min_price", "5"), ("not_like", "a"), ("not_like", "b"),
        ("drop_inferred", "color")])


def test_a_filter_value_with_a_comma_sends_the_photo_as_json(api: Api, server: Server) -> None:
    # A form's commas separate values; a JSON list is taken as given.
    data = jpeg()
    api.search("top", image=data, filters={"category": ["tops, shirts", "coat"]}, crop=(0, 0, 1, 1))
    body = json.loads(server.last.content)
    assert server.last.headers["content-type"] == "application/json"
    assert body == {"text": "top", "image_base64": base64.b64encode(data).decode(), "top_k": 10,
                    "filters": {"category": ["tops, shirts", "coat"]},
                    "crop": {"x": 0, "y": 0, "w": 1, "h": 1}}


def test_similar_refuses_a_filter_value_with_a_comma(api: Api, server: Server) -> None:
    with pytest.raises(ValueError, match="holds a comma"):
        api.similar("p1", filters={"category": "tops, shirts"})
    assert server.requests == []


def test_something_that_is_not_an_image_is_a_type_error(api: Api, server: Server) -> None:
    with pytest.raises(TypeError, match="path, bytes, a PIL image"):
        api.search(image=12)
    assert server.requests == []


def test_similar_puts_filters_and_flags_in_the_query_string(api: Api, server: Server) -> None:
    api.similar("p-1", top_k=4, filters={"color": ["red", "blue"], "max_price": 30},
                cheaper=True, same_category=True)
    req = server.last
    assert (req.method, req.url.path) == ("GET", "/v1/products/p-1/similar")
    assert req.url.params.multi_items() == [
        ("top_k", "4"), ("color", "red"), ("color", "blue"), ("max_price", "30"),
        ("cheaper", "true"), ("same_category", "true")]
    assert "authorization" not in req.headers  # reads never carry the admin key


def test_recommend_is_json_and_a_photo_goes_as_base64(api: Api, server: Server) -> None:
    data = jpeg()
    api.recommend("p1", negative=["p2", "p3"], image=data, strategy="best_score", top_k=3,
                  filters={"size": "M"})
    req = server.last
    assert (req.method, req.url.path) == ("POST", "/v1/recommend")
    assert json.loads(req.content) == {
        "positive": ["p1"], "negative": ["p2", "p3"], "strategy": "best_score", "top_k": 3,
        "filters": {"size": ["M"]}, "image_base64": base64.b64encode(data).decode()}
    api.recommend(image="http://shop.example/x.png")
    assert json.loads(server.last.content) == {"top_k": 10,
                                               "image_url": "http://shop.example/x.png"}


def test_put_sends_metadata_and_each_photo_with_the_admin_key(api: Api, server: Server,
                                                              tmp_path: Path) -> None:
    server.answers = [httpx.Response(200, json={"product_id": "new-1", "title": "Poncho",
                                                "description": "", "category": "coat",
                                                "color": "teal", "size": "M", "price": 77.5,
                                                "attributes": {"season": "summer"},
                                                "image_urls": ["/v1/products/new-1/images/0",
                                                               "/v1/products/new-1/images/1"]})]
    (tmp_path / "a.jpg").write_bytes(jpeg())
    product = Product("new-1", title="Poncho", category="coat", color="teal", size="M",
                      price=77.5, attributes={"season": "summer"})
    got = api.put(product, [tmp_path / "a.jpg", Image.new("RGB", (4, 4))])
    req = server.last
    assert (req.method, req.url.path) == ("PUT", "/v1/products/new-1")
    assert req.headers["authorization"] == f"Bearer {KEY}"
    ((name, meta),) = fields(req)
    assert name == "metadata" and json.loads(meta) == {
        "product_id": "new-1", "title": "Poncho", "category": "coat", "color": "teal",
        "size": "M", "price": 77.5, "season": "summer"}  # attributes at the top level
    assert [(n, f) for n, f, _ in files(req)] == [("image", "a.jpg"), ("image", "image1.png")]
    assert got.attributes == {"season": "summer"} and len(got.image_urls) == 2
    api.put({"product_id": "d1", "title": "x"}, jpeg())  # a dict, and one photo
    assert json.loads(fields(server.last)[0][1]) == {"product_id": "d1", "title": "x"}
    assert len(files(server.last)) == 1


def test_put_needs_an_id_and_image_files(api: Api, server: Server) -> None:
    with pytest.raises(ValueError, match="product_id"):
        api.put({"title": "x"}, jpeg())
    with pytest.raises(ValueError, match="at least one image"):
        api.put({"product_id": "x"}, [])
    with pytest.raises(ValueError, match="not URLs"):
        api.put({"product_id": "x"}, "https://shop.example/a.jpg")
    assert server.requests == []


def test_delete_get_and_ids_that_are_not_a_path(api: Api, server: Server) -> None:
    server.answers = [httpx.Response(204)]
    assert api.delete("p1") is None
    assert server.last.method == "DELETE" and server.last.headers["authorization"] == f"Bearer {KEY}"
    server.answers = [httpx.Response(200, json={"product_id": "x", "title": "t", "price": None})]
    api.get("../admin")
    assert server.last.url.raw_path == b"/v1/products/..%2Fadmin"


# -- answers ---------------------------------------------------------------------------------

def test_answers_are_typed_and_unknown_fields_are_kept(api: Api, server: Server) -> None:
    variant = {"product_id": "p2", "title": "t", "color": "blue", "size": "S", "price": None,
               "image_url": "/v1/products/p2/images/0", "new_variant_field": 1}
    server.answers = [httpx.Response(200, json={
        **SEARCH_OK, "results": [hit("p1", variants=1, other_variants=[variant], badge="new"),
                                 hit("p3", 0.5)], "relaxed": ["color"], "full_matches": 0,
        "trace_id": "x"})]
    got = api.search("red")
    assert len(got) == 2 and [h.product_id for h in got] == ["p1", "p3"]
    top = got.results[0]
    assert top.score == 0.9 and top.extra == {"badge": "new"} and top.variants == 1
    assert top.other_variants[0].color == "blue"
    assert top.other_variants[0].extra == {"new_variant_field": 1}
    assert got.relaxed == ["color"] and got.inferred == {"mode": "boost"}
    assert got.full_matches == 0
    assert got.took_ms == 1.5 and got.extra == {"trace_id": "x"}


def test_facets_info_and_get(api: Api, server: Server) -> None:
    server.answers = [httpx.Response(200, json={
        "category": {"dress": 3}, "color": {"red": 2}, "size": {}, "price": {"min": 1, "max": 9}})]
    facets = api.facets()
    assert isinstance(facets, Facets) and facets.category == {"dress": 3}
    assert (facets.price.min, facets.price.max) == (1, 9)
    assert server.last.url.path == "/v1/facets"
    server.answers = [httpx.Response(200, json={
        "products": 60, "collection": "c", "last_ingest": None,
        "model": {"image": "i", "text": "t", "version": "v", "dim": 512}})]
    info = api.info()
    assert isinstance(info, Info) and info.products == 60 and info.model.version == "v"
    assert info.model.extra == {"dim": 512}
    server.answers = [httpx.Response(200, json={
        "product_id": "p1", "title": "t", "description": "d", "category": "c", "color": "red",
        "size": "M", "price": 3.5, "attributes": {"a": 1}, "image_urls": ["/u"]})]
    product = api.get("p1")
    assert product == Product("p1", "t", "d", "c", "red", "M", 3.5, {"a": 1}, ["/u"])
    assert product.metadata() == {"product_id": "p1", "title": "t", "description": "d",
                                  "category": "c", "color": "red", "size": "M", "price": 3.5,
                                  "a": 1}


# -- errors and retries ----------------------------------------------------------------------

@pytest.mark.parametrize("status,code", [(404, "not_found"), (422, "invalid_parameter"),
                                         (401, "unauthorized"), (413, "too_large"),
                                         (503, "store_unavailable"), (500, "internal")])
def test_an_error_is_one_exception_with_status_code_and_message(api: Api, server: Server,
                                                                status: int, code: str) -> None:
    server.answers = [error(status, code, {"Retry-After": "1"} if status == 503 else None)]
    with pytest.raises(LookalikeError) as caught:
        api.get("p1")
    exc = caught.value
    assert (exc.status, exc.code, exc.message) == (status, code, f"{code} happened")
    assert code in str(exc)
    # Never retried: only a shed request (503 overloaded) is.
    assert len(server.requests) == 1 and api.sleeps == []


def test_an_error_that_is_not_the_api_json_keeps_its_status(api: Api, server: Server) -> None:
    server.answers = [httpx.Response(502, text="<html>bad gateway</html>")]
    with pytest.raises(LookalikeError) as caught:
        api.facets()
    assert (caught.value.status, caught.value.code) == (502, "http_error")
    assert "bad gateway" in caught.value.message
    server.answers = [httpx.Response(503, text="busy", headers={"x-error-code": "overloaded"})]
    with pytest.raises(LookalikeError, match="overloaded"):
        Api(api.kind, server, Retry(retries=0)).facets()


def overloaded(retry_after: str | None = "1") -> httpx.Response:
    return error(503, "overloaded", {"Retry-After": retry_after} if retry_after else None)


def test_overloaded_is_retried_with_backoff_then_succeeds(api: Api, server: Server) -> None:
    server.answers = [overloaded(None), overloaded(None), httpx.Response(200, json=SEARCH_OK)]
    assert api.search(image=jpeg()).product_ids == ["p1"]
    assert api.sleeps == [0.5, 1.0]
    first, _, last = server.requests
    assert form(first) == form(last) and files(last)  # the same upload, sent again whole


def test_overloaded_gives_up_after_the_retries_and_honours_retry_after(api: Api,
                                                                        server: Server) -> None:
    server.answers = [overloaded("1")]
    with pytest.raises(LookalikeError) as caught:
        api.search("red")
    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (503, "overloaded", 1)
    assert len(server.requests) == 4
    assert api.sleeps == [1.0, 1.0, 2.0]  # never sooner than Retry-After: 1, then doubling


def test_the_schedule_is_configurable_and_capped(kind: str, server: Server) -> None:
    server.answers = [overloaded(None)]
    api = Api(kind, server, Retry(retries=5, backoff=1.0, max_backoff=4.0))
    with pytest.raises(LookalikeError):
        api.delete("p1")
    assert api.sleeps == [1.0, 2.0, 4.0, 4.0, 4.0] and len(server.requests) == 6
    off = Api(kind, Server([overloaded()]), Retry(retries=0))
    with pytest.raises(LookalikeError):
        off.facets()
    assert off.sleeps == [] and len(off.server.requests) == 1


def test_retry_after_as_an_http_date() -> None:
    from lookalike.client._core import retry_after

    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: at once
    assert retry_after("2.5") == 2.5 and retry_after("soon") is None and retry_after(None) is None


# -- the real routes read what the client sends ----------------------------------------------

class RecordingService:
    """Just enough of SearchService for the routes: records what they asked for."""

    model_version = "m1"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def outcome(self) -> Any:
        from lookalike.catalog.product import Product as Stored
        from lookalike.search import SearchOutcome, Timings
        from lookalike.store.base import Hit

        return SearchOutcome(hits=[Hit(Stored("p1", title="t", images=("/x.jpg",)), 0.5)],
                             timings=Timings())

    async def load_image(self, data: bytes, crop: Any = None) -> Any:
        from lookalike.images import UPLOAD_FORMATS, decode_image

        return decode_image(data, formats=UPLOAD_FORMATS, crop=crop)  # the routes' own decoding

    async def search(self, query: Any) -> Any:
        self.calls.append(("search", query))
        return self.outcome()

    async def similar(self, product_id: str, **kwargs: Any) -> Any:
        self.calls.append(("similar", (product_id, kwargs)))
        return self.outcome()

    async def recommend(self, **kwargs: Any) -> Any:
        self.calls.append(("recommend", kwargs))
        return self.outcome()

    async def upsert(self, product: Any, images: list[bytes]) -> Any:
        self.calls.append(("upsert", (product, images)))
        return product

    async def delete(self, product_id: str) -> None:
        self.calls.append(("delete", product_id))


@pytest.fixture
def routes(tmp_path: Path) -> Iterator[tuple[AsyncClient, RecordingService]]:
    from lookalike.api import create_api
    from lookalike.config import Settings

    service = RecordingService()
    app = create_api(service, Settings(data_dir=tmp_path, admin_key=KEY))  # type: ignore[arg-type]
    yield AsyncClient(URL, admin_key=KEY, transport=httpx.ASGITransport(app=app)), service


def test_the_api_routes_parse_what_the_client_sends(routes: tuple[AsyncClient, RecordingService],
                                                    tmp_path: Path) -> None:
    from lookalike.rank.relative import Relative
    from lookalike.store.base import Filters as StoreFilters

    client, service = routes
    filters = {"category": ["dress", "coat"], "color": "red", "min_price": 5, "max_price": 50}
    expected = StoreFilters(categories=("dress", "coat"), colors=("red",), min_price=5.0,
                            max_price=50.0)
    commas = {"category": ["tops, shirts"], "size": "M"}

    async def run() -> None:
        async with client:
            await client.search("red dress", filters=filters, top_k=7, not_like=["p9"],
                                drop_inferred=["color"], infer="off", collapse_variants=False)
            await client.search("red", image=Image.new("RGB", (32, 32), (200, 0, 0)),
                                filters=filters, crop=(0, 0, 0.5, 0.5), image_weight=0.8)
            await client.similar("p1", top_k=3, filters=filters, other_color=True)
            await client.recommend(["p1", "p2"], negative="p3", top_k=2, filters=filters)
            await client.search(image=jpeg(), filters=commas)
            await client.put({"product_id": "n1", "title": "New", "price": 3, "season": "x"},
                             [jpeg(), jpeg((0, 0, 200))])
            await client.delete("n1")

    asyncio.run(run())
    (_, text), (_, photo), (_, (pid, similar)), (_, rec), (_, comma_photo), \
        (_, (product, images)), (_, gone) = service.calls
    assert (text.text, text.image, text.top_k, text.filters) == ("red dress", None, 7, expected)
    assert (text.exclude_ids, text.drop_inferred, text.infer, text.collapse_variants) == \
        (("p9",), ("color",), "off", False)
    assert (photo.kind, photo.image.size, photo.image_weight, photo.filters) == \
        ("hybrid", (16, 16), 0.8, expected)  # the crop reached the route
    assert (pid, similar["top_k"], similar["filters"], similar["relative"]) == \
        ("p1", 3, expected, Relative(other_color=True))
    assert (rec["positive"], rec["negative"], rec["top_k"], rec["filters"]) == \
        (("p1", "p2"), ("p3",), 2, expected)
    assert (comma_photo.kind, comma_photo.filters) == \
        ("image", StoreFilters(categories=("tops, shirts",), sizes=("M",)))
    assert (product.product_id, product.title, product.price, product.attributes) == \
        ("n1", "New", 3.0, {"season": "x"})
    assert len(images) == 2 and gone == "n1"


# -- pages -----------------------------------------------------------------------------------

def page_answer(pids: list[str], offset: int, next_offset: int | None) -> httpx.Response:
    return httpx.Response(200, json={**SEARCH_OK, "results": [hit(p) for p in pids],
                                     "offset": offset, "next_offset": next_offset})


def test_offset_goes_with_every_result_list(api: Api, server: Server) -> None:
    server.answers = [page_answer(["p3"], 2, 3)]
    got = api.search("red", top_k=1, offset=2)
    assert json.loads(server.last.content)["offset"] == 2 and got.next_offset == 3
    api.search("red", image=jpeg(), offset=4)
    assert ("offset", "4") in fields(server.last)
    api.similar("p1", offset=6, collapse_variants=False)
    assert server.last.url.params.multi_items()[-2:] == [("offset", "6"),
                                                         ("collapse_variants", "false")]
    api.recommend("p1", offset=8, collapse_variants=True)
    assert json.loads(server.last.content) == {"positive": ["p1"], "top_k": 10, "offset": 8,
                                               "collapse_variants": True}


def test_pages_follow_next_offset_until_none(kind: str, server: Server) -> None:
    server.answers = [page_answer(["p1", "p2"], 0, 2), page_answer(["p3", "p4"], 2, 4),
                      page_answer(["p5"], 4, None)]
    transport = httpx.MockTransport(server)

    async def walk_async() -> list[SearchResult]:
        async with AsyncClient(URL, transport=transport) as client:
            return [page async for page in client.pages("similar", "p0", top_k=2)]

    if kind == "sync":
        with Client(URL, transport=transport) as client:
            pages = list(client.pages("similar", "p0", top_k=2))
    else:
        pages = asyncio.run(walk_async())
    assert [p.product_ids for p in pages] == [["p1", "p2"], ["p3", "p4"], ["p5"]]
    assert [dict(r.url.params)["offset"] for r in server.requests] == ["0", "2", "4"]
    with Client(URL, transport=transport) as client, pytest.raises(ValueError):
        next(client.pages("facets"))
