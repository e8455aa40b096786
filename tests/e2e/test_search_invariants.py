"""The properties users rely on (issue 29), over real HTTP against the shared e2e app.

tests/unit/test_ranking_properties.py checks them on the pure ranking function with a fake
store; here the same properties hold for what a client gets: real embeddings, real milvus-lite,
real query understanding, text, photo and hybrid queries. Queries, filters, infer modes and page
sizes are drawn by Hypothesis from the demo catalogue's own values (its products and
GET /v1/facets), a photo is a product's stored photo fetched from the app as a client would:

- prefix: the results for top_k=k are the first k of those for top_k=K (k < K <= 100, the
  candidate pool's floor);
- exact match first: a product whose stored photo is the query photo and which passes every
  explicit filter is the first result, whatever top_k, infer mode and words;
- an explicit filter holds for every result;
- an understood limit (a price in the words) is kept by every result, or the response reports
  it relaxed, and then the results that break it come after all that keep it, nearest first.

Examples are few (MAX_EXAMPLES) and derandomised, so a run is repeatable and takes about a
minute; no shrinking, because every shrink step is a round of HTTP searches and the first
failing example, printed with its responses, already says what broke.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from lookalike.catalog.product import Product

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 25
POOL_FLOOR = 100  # lookalike/rank/ranking.py: pages up to this size are prefixes of each other
MODES = ("boost", "filter", "off")
KINDS = ("text", "photo", "hybrid")
PRICES = (20, 30, 50, 60, 75, 100, 150)  # not shoe sizes (38-44): "under 40" is a price only
EXPLORE = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                   phases=(Phase.explicit, Phase.generate),
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def http(app_url: str) -> Iterator[httpx.Client]:
    # Module-scoped: Hypothesis runs many examples per test call, and a function-scoped
    # fixture would be shared between them anyway (its health check says so).
    with httpx.Client(base_url=app_url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def products(catalogue: tuple[Path, list[Product]]) -> list[Product]:
    return catalogue[1]


@pytest.fixture(scope="module")
def facets(http: httpx.Client) -> dict[str, list[str]]:
    body = http.get("/v1/facets").json()
    out = {k: sorted(body[k]) for k in ("category", "color", "size")}
    assert all(out.values()), body
    return out


_photos: dict[str, bytes] = {}


def photo_of(http: httpx.Client, product_id: str) -> bytes:
    """The product's first stored photo, as the app serves it (the URL its own API gives)."""
    if product_id not in _photos:
        urls = http.get(f"/v1/products/{product_id}").json()["image_urls"]
        resp = http.get(urls[0])
        assert resp.status_code == 200, resp.text
        _photos[product_id] = resp.content
    return _photos[product_id]


def search(http: httpx.Client, *, top_k: int, text: str | None = None,
           photo: bytes | None = None, filters: dict[str, Any] | None = None,
           infer: str = "boost") -> dict[str, Any]:
    """GET /v1/search for words alone, a multipart POST (what the web page sends) with a photo."""
    params: dict[str, Any] = {"top_k": top_k, "infer": infer, **(filters or {})}
    if photo is None:
        resp = http.get("/v1/search", params={"q": text, **params})
    else:
        form = {k: v if isinstance(v, list) else str(v) for k, v in params.items()}
        resp = http.post("/v1/search", data={**form, **({"text": text} if text else {})},
                         files={"image": ("q.jpg", photo, "image/jpeg")})
    assert resp.status_code == 200, resp.text
    return resp.json()


def ids(body: dict[str, Any]) -> list[str]:
    return [r["product_id"] for r in body["results"]]


def passes(hit: dict[str, Any], f: dict[str, Any]) -> bool:
    price = hit["price"]
    priced = "min_price" not in f and "max_price" not in f or price is not None
    return (priced and all(hit[k] in f[k] for k in ("category", "color", "size") if k in f)
            and ("min_price" not in f or price >= f["min_price"])
            and ("max_price" not in f or price <= f["max_price"]))


# -- strategies: every value is one the demo catalogue has ----------------------------------------

@st.composite
def filters_for(draw: st.DrawFn, p: Product, facets: dict[str, list[str]]) -> dict[str, Any]:
    """No filters, or some that `p` passes ("any of" lists may name other values too)."""
    out: dict[str, Any] = {}
    if not draw(st.booleans()):
        return out
    for name, value in (("category", p.category), ("color", p.color), ("size", p.size)):
        if draw(st.booleans()):
            others = draw(st.lists(st.sampled_from(facets[name]), max_size=2))
            out[name] = list(dict.fromkeys([value, *others]))
    if p.price is not None:
        # Whole euros around the price: a stored float32 price never sits on the bound.
        if draw(st.booleans()):
            out["min_price"] = max(0, math.floor(p.price) - draw(st.sampled_from((1, 5, 30))))
        if draw(st.booleans()):
            out["max_price"] = math.ceil(p.price) + draw(st.sampled_from((1, 5, 30)))
    return out


def words(p: Product, facets: dict[str, list[str]]) -> st.SearchStrategy[str]:
    cats, cols = st.sampled_from(facets["category"]), st.sampled_from(facets["color"])
    return st.one_of(st.just(p.title), cats, st.just("something to wear"),
                     st.builds("{} {}".format, cols, cats), price_words(facets))


def words_against(p: Product, products: list[Product]) -> st.SearchStrategy[str]:
    """Words that pull away from `p`: the colour and category of a product of another
    category (so something matches them fully), maybe with a price that product keeps."""
    others = [q for q in products if q.category != p.category]

    def against(q: Product, priced: bool) -> str:
        limit = f" under {math.ceil(q.price) + 10}" if priced and q.price is not None else ""
        return f"{q.color} {q.category}{limit}"

    return st.one_of(st.just(p.title), st.builds(against, st.sampled_from(others), st.booleans()))


def price_words(facets: dict[str, list[str]]) -> st.SearchStrategy[str]:
    """Words with a price limit in them: "red dress under 60", "bag over 100"."""
    head = st.one_of(st.sampled_from(facets["category"]),
                     st.builds("{} {}".format, st.sampled_from(facets["color"]),
                               st.sampled_from(facets["category"])))
    n = st.sampled_from(PRICES)
    clause = st.one_of(st.builds("under {}".format, n), st.builds("below {}".format, n),
                       st.builds("over {}".format, n),
                       st.builds(lambda a, b: f"between {min(a, b)} and {max(a, b) + 10}", n, n))
    return st.builds("{} {}".format, head, clause)


def draw_query(data: st.DataObject, http: httpx.Client, products: list[Product],
               facets: dict[str, list[str]], *, kinds: tuple[str, ...] = KINDS,
               modes: tuple[str, ...] = MODES,
               text: Callable[[Product], st.SearchStrategy[str]] | None = None,
               ) -> tuple[Product, dict[str, Any]]:
    """An anchor product and a query: its photo and/or words (`text(anchor)`, default
    `words`), filters it passes, a mode."""
    p = products[data.draw(st.integers(0, len(products) - 1), label="anchor")]
    kind = data.draw(st.sampled_from(kinds), label="kind")
    query: dict[str, Any] = {
        "filters": data.draw(filters_for(p, facets), label="filters"),
        "infer": data.draw(st.sampled_from(modes), label="infer")}
    if kind != "photo":
        query["text"] = data.draw(text(p) if text else words(p, facets), label="text")
    if kind != "text":
        query["photo"] = photo_of(http, p.product_id)
    note(f"anchor {p.product_id}: {p.category} {p.color} {p.size} {p.price}")
    return p, query


def shown(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(r["product_id"], r["category"], r["color"], r["size"], r["price"])
            for r in body["results"]]


# -- the invariants -------------------------------------------------------------------------------

@EXPLORE
@given(data=st.data())
def test_a_smaller_page_is_a_prefix_of_a_larger_one(data: st.DataObject, http: httpx.Client,
                                                    products: list[Product],
                                                    facets: dict[str, list[str]]) -> None:
    _, query = draw_query(data, http, products, facets)
    big = data.draw(st.integers(2, POOL_FLOOR), label="K")
    small = data.draw(st.integers(1, big - 1), label="k")
    large_ids = ids(search(http, top_k=big, **query))
    small_ids = ids(search(http, top_k=small, **query))
    assert large_ids, "the anchor passes the filters: never an empty page"
    assert small_ids == large_ids[:small]


def first_is_the_photo(http: httpx.Client, body: dict[str, Any], product_id: str,
                       photo: bytes) -> bool:
    """The first result is the product, its variant group's representative, or another product
    whose stored photo is this very photo (a test elsewhere may have PUT one)."""
    if not body["results"]:
        return False
    top = body["results"][0]
    if top["product_id"] == product_id or product_id in {
            v["product_id"] for v in top.get("other_variants", [])}:
        return True
    return http.get(top["image_url"]).content == photo


@EXPLORE
@given(data=st.data())
def test_the_query_photos_own_product_is_first(data: st.DataObject, http: httpx.Client,
                                               products: list[Product],
                                               facets: dict[str, list[str]]) -> None:
    # Hybrid words pull elsewhere (another colour and category): the photo still wins.
    p, query = draw_query(data, http, products, facets, kinds=("photo", "hybrid", "hybrid"),
                          text=lambda p: words_against(p, products))
    top_k = data.draw(st.sampled_from((1, 2, 3, 5, 10, 25, 100)), label="top_k")
    body = search(http, top_k=top_k, **query)
    first_ok = first_is_the_photo(http, body, p.product_id, query["photo"])
    assert first_ok, f"{p.product_id} is not first: {shown(body)[:5]}"


@EXPLORE
@given(data=st.data())
def test_explicit_filters_hold_for_every_result(data: st.DataObject, http: httpx.Client,
                                                products: list[Product],
                                                facets: dict[str, list[str]]) -> None:
    _, query = draw_query(data, http, products, facets)
    top_k = data.draw(st.sampled_from((1, 5, 10, 30, 100)), label="top_k")
    body = search(http, top_k=top_k, **query)
    note(f"results: {shown(body)}")
    assert body["results"], "the anchor passes the filters: never an empty page"
    assert all(passes(r, query["filters"]) for r in body["results"])


def price_distance(hit: dict[str, Any], price: dict[str, float]) -> float:
    if hit["price"] is None:
        return math.inf
    return max(price.get("gte", hit["price"]) - hit["price"],
               hit["price"] - price.get("lte", hit["price"]), 0.0)


def check_limit(body: dict[str, Any], *, mode: str, exact: str | None = None) -> None:
    """The words' price limit is kept by every result, or reported relaxed; in boost mode the
    results that break it follow all that keep it, nearest price first. `exact`: the query
    photo's own product, first by the exact-match rule whatever its price."""
    price = (body.get("inferred") or {}).get("price")
    assert price, f"the words' price limit was not understood: {body.get('inferred')}"
    results = [r for r in body["results"] if r["product_id"] != exact]
    assert results or exact, "the catalogue has every category: never an empty page"
    distances = [price_distance(r, price) for r in results]
    if not any(distances):
        return
    relaxed = set(body["relaxed"]) | {d["attribute"] for d in body.get("relaxed_detail", [])}
    assert "price" in relaxed, "results break the price limit and nothing says so"
    if mode == "boost":
        # Keepers (0) first, then the breakers by how far they are outside the limit.
        assert distances == sorted(distances)


@EXPLORE
@given(data=st.data())
def test_a_price_in_the_words_is_kept_or_reported(data: st.DataObject, http: httpx.Client,
                                                   products: list[Product],
                                                   facets: dict[str, list[str]]) -> None:
    # infer="off" understands nothing, so it has no limit: the other tests cover it.
    p, query = draw_query(data, http, products, facets, kinds=("text", "hybrid"),
                          modes=("boost", "filter"), text=lambda _: price_words(facets))
    # An explicit price filter overrides the words' price (then there is no limit to check).
    query["filters"] = {k: v for k, v in query["filters"].items() if not k.endswith("_price")}
    top_k = data.draw(st.sampled_from((1, 5, 10, 30, 60, 100)), label="top_k")
    body = search(http, top_k=top_k, **query)
    note(f"inferred: {body.get('inferred')}, relaxed: {body['relaxed']}, results: {shown(body)}")
    check_limit(body, mode=query["infer"], exact=p.product_id if "photo" in query else None)


@pytest.mark.parametrize("text", ["red dress under 60", "bag under 50"])
@pytest.mark.parametrize("infer", ["boost", "filter"])
def test_the_issues_price_examples(http: httpx.Client, text: str, infer: str) -> None:
    for top_k in (1, 5, 20, 60):
        body = search(http, top_k=top_k, text=text, infer=infer)
        check_limit(body, mode=infer)


def test_a_put_product_is_first_for_its_photo_under_its_filter(http: httpx.Client,
                                                               products: list[Product],
                                                               admin: dict[str, str]) -> None:
    """A product written through the API with another product's photo, as a t-shirt, and
    searched with that photo and category=t-shirt: it is the only exact match that passes the
    filter, so it is first at every page size. Its colour is the photo's, or another one: then
    the colour read from the photo is one it lacks, and other t-shirts have it (the old ranking
    filled small pages with those and lost the exact match at top_k 1, 3 and 5)."""
    sources = list({p.category: p for p in reversed(products) if p.category != "t-shirt"}
                   .values())[:2]
    assert sources
    misses: list[str] = []
    for source in sources:
        pid = f"inv-tshirt-{source.product_id}"
        photo = photo_of(http, source.product_id)
        for color in (source.color, next(c for c in ("black", "grey") if c != source.color)):
            meta = {"title": "Invariant test tee", "category": "t-shirt", "color": color,
                    "size": "M", "price": 25.0}
            resp = http.put(f"/v1/products/{pid}", headers=admin,
                            data={"metadata": json.dumps(meta)},
                            files=[("image", ("a.jpg", photo, "image/jpeg"))])
            assert resp.status_code == 200, resp.text
            try:
                misses += put_misses(http, pid, photo, source, color)
            finally:
                assert http.delete(f"/v1/products/{pid}", headers=admin).status_code == 204
    assert not misses, "\n".join(misses)


def put_misses(http: httpx.Client, pid: str, photo: bytes, source: Product,
               color: str) -> list[str]:
    misses = []
    for infer in MODES:
        for text in (None, source.title):
            for top_k in (1, 3, 5, 10):
                body = search(http, top_k=top_k, photo=photo, text=text, infer=infer,
                              filters={"category": ["t-shirt"]})
                if ids(body)[:1] != [pid]:
                    misses.append(f"{pid} ({color}), text={text!r}, infer={infer}, "
                                  f"top_k={top_k}: {shown(body)[:3]}")
    return misses
