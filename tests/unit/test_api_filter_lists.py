"""Filter lists at every endpoint that takes them, in-process (a stub store: pure HTTP logic).

A query string's or form's values are comma lists, split before the limits apply; a JSON list
is taken as given. Either way: at most 64 values of at most 100 characters each, and a longer
list is a 422 that names the limit. What the app made of a request is read from the
observer's record (`filters`: the parsed Filters, as the store gets them).
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lookalike.api import limits
from lookalike.api.models import (
    FilterLimitError,
    _no_control_chars,
    _no_text_control_chars,
    _not_blank,
    filter_list,
    parse_crop,
    split_dropped,
    split_ids,
    to_filters,
)
from lookalike.catalog import Product
from lookalike.store.base import Filters, Record
from tests.unit.test_api import OneProductStore, jpeg, make_client

# Ten category names, 125 characters joined by commas: one query-string or form field.
TEN_CATEGORIES = [f"category-{name}" for name in
                  ("tops", "shirts", "dresses", "skirts", "jeans", "coats", "knitwear", "shoes",
                   "boots", "bags")]
TOO_MANY = [f"v{i}" for i in range(limits.MAX_FILTER_VALUES + 1)]
MOST = TOO_MANY[:-1]
LONGEST = "x" * limits.MAX_FILTER_VALUE_CHARS


class StoredProductStore(OneProductStore):
    """p1 with vectors, so that similar and recommend get past the store."""

    def get(self, ids, with_vectors: bool = False) -> dict:
        product = Product("p1", title="t", color="red", price=3.0, images=("/x.jpg",))
        one = np.ones(4, dtype=np.float32)
        return {i: Record(product, image_vectors=[one], text_vector=one) for i in ids
                if i == "p1"}


@pytest.fixture
def records() -> list[dict]:
    return []


@pytest.fixture
def client(tmp_path: Path, records: list[dict]) -> TestClient:
    return make_client(StoredProductStore(), tmp_path, records)


def parsed(records: list[dict], name: str = "categories") -> list[str]:
    assert records, "the request left no record"
    return records[-1]["filters"].get(name, [])


def form_search(client: TestClient, fields: list[tuple[str, str]]):
    data: dict[str, list[str]] = {"text": ["shirt"]}
    for name, value in fields:  # a list repeats the field, in order
        data.setdefault(name, []).append(value)
    return client.post("/v1/search", data=data, files={"image": ("a.jpg", jpeg(), "image/jpeg")})


def assert_limit(resp, where: str, limit: str) -> None:
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert error["code"] == "invalid_parameter"
    assert error["message"].startswith(f"{where}: {limit}"), error


# -- query strings and forms: comma lists, split first ---------------------------------------

def test_ten_categories_as_one_comma_list_are_ten_values(client: TestClient,
                                                         records: list[dict]) -> None:
    joined = ",".join(TEN_CATEGORIES)
    assert len(joined) > limits.MAX_FILTER_VALUE_CHARS  # the case that used to be a 422
    calls = [lambda: client.get("/v1/search", params={"q": "shirt", "category": joined}),
             lambda: form_search(client, [("category", joined)]),
             lambda: client.get("/v1/products/p1/similar", params={"category": joined})]
    for call in calls:
        resp = call()
        assert resp.status_code == 200, resp.text
        assert parsed(records) == TEN_CATEGORIES


@pytest.mark.parametrize("fields", [
    [("category", ",".join(TOO_MANY))],  # one comma list
    [("category", v) for v in TOO_MANY],  # repeated
    [("category", ",".join(TOO_MANY[:30])), *(("category", v) for v in TOO_MANY[30:])],
], ids=["comma-list", "repeated", "both"])
def test_a_query_string_or_form_list_over_64_is_a_422_naming_it(
        client: TestClient, fields: list[tuple[str, str]]) -> None:
    limit = f"at most {limits.MAX_FILTER_VALUES} values"
    assert_limit(client.get("/v1/search", params=[("q", "shirt"), *fields]), "category", limit)
    assert_limit(form_search(client, fields), "category", limit)
    assert_limit(client.get("/v1/products/p1/similar", params=fields), "category", limit)


def test_64_values_and_100_characters_are_kept(client: TestClient, records: list[dict]) -> None:
    resp = client.get("/v1/search", params={"q": "shirt", "color": ",".join(MOST)})
    assert resp.status_code == 200 and parsed(records, "colors") == MOST
    resp = form_search(client, [("size", f"{LONGEST},{LONGEST[:-1]}")])
    assert resp.status_code == 200 and parsed(records, "sizes") == [LONGEST, LONGEST[:-1]]


def test_a_value_over_100_characters_is_a_422_naming_it(client: TestClient) -> None:
    fields = [("color", f"red,{LONGEST}y")]
    limit = f"a value longer than {limits.MAX_FILTER_VALUE_CHARS} characters"
    assert_limit(client.get("/v1/search", params=[("q", "shirt"), *fields]), "color", limit)
    assert_limit(form_search(client, fields), "color", limit)
    assert_limit(client.get("/v1/products/p1/similar", params=fields), "color", limit)


@pytest.mark.parametrize("value", ["red,,blue", "red,", " , "])
def test_an_empty_part_of_a_comma_list_is_a_422(client: TestClient, value: str) -> None:
    resp = client.get("/v1/search", params={"q": "shirt", "color": value})
    assert_limit(resp, "color", "an empty or whitespace-only value")


def test_drop_inferred_is_split_and_limited_the_same_way(client: TestClient) -> None:
    assert client.get("/v1/search", params={"q": "red shirt",
                                            "drop_inferred": "color,price"}).status_code == 200
    fields = [("drop_inferred", "color")] * (limits.MAX_FILTER_VALUES + 1)
    assert_limit(form_search(client, fields), "drop_inferred",
                 f"at most {limits.MAX_FILTER_VALUES} values")


# -- JSON: a list is taken as given ------------------------------------------------------------

@pytest.mark.parametrize("value", [["tops, shirts"], "tops, shirts"], ids=["list", "string"])
def test_a_json_value_keeps_its_commas(client: TestClient, records: list[dict],
                                       value: Any) -> None:
    resp = client.post("/v1/search", json={"text": "shirt", "filters": {"category": value}})
    assert resp.status_code == 200, resp.text
    assert parsed(records) == ["tops, shirts"]


def test_a_json_list_over_a_limit_is_a_422_naming_it(client: TestClient) -> None:
    too_long = f"a value longer than {limits.MAX_FILTER_VALUE_CHARS} characters"
    for endpoint, body in (("/v1/search", {"text": "shirt"}), ("/v1/recommend",
                                                                {"positive": ["p1"]})):
        resp = client.post(endpoint, json={**body, "filters": {"category": TOO_MANY}})
        assert_limit(resp, "filters.category", f"at most {limits.MAX_FILTER_VALUES} values")
        resp = client.post(endpoint, json={**body, "filters": {"size": ["M", LONGEST + "L"]}})
        assert_limit(resp, "filters.size", too_long)


def test_a_json_list_of_64_goes_through_recommend(client: TestClient,
                                                  records: list[dict]) -> None:
    commas = [f"{v}, {v}" for v in MOST]
    resp = client.post("/v1/recommend", json={"positive": ["p1"], "filters": {"color": commas}})
    assert resp.status_code == 200, resp.text
    assert parsed(records, "colors") == commas


# -- properties ------------------------------------------------------------------------------

# Values as the store keeps them: printable, no surrounding whitespace (the manifest strips).
VALUE = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1,
                max_size=limits.MAX_FILTER_VALUE_CHARS).filter(lambda v: v == v.strip())
VALUES = st.lists(VALUE, max_size=limits.MAX_FILTER_VALUES, unique=True)
FEW_CHECKS = settings(max_examples=60, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


@FEW_CHECKS
@given(values=VALUES)
def test_any_json_list_within_the_limits_round_trips_exactly(client: TestClient,
                                                            records: list[dict],
                                                            values: list[str]) -> None:
    records.clear()
    resp = client.post("/v1/search", json={"text": "shirt", "infer": "off",
                                           "filters": {"category": values}})
    assert resp.status_code == 200, resp.text
    assert parsed(records) == values


@FEW_CHECKS
@given(values=st.lists(VALUE.filter(lambda v: "," not in v), max_size=limits.MAX_FILTER_VALUES,
                       unique=True),
       cut=st.integers(min_value=0, max_value=limits.MAX_FILTER_VALUES))
def test_any_comma_list_within_the_limits_round_trips_exactly(client: TestClient,
                                                             records: list[dict],
                                                             values: list[str],
                                                             cut: int) -> None:
    # Some values repeated as parameters, the rest as one comma list: the same filter.
    records.clear()
    fields = [("color", v) for v in values[:cut]]
    if values[cut:]:
        fields.append(("color", ",".join(values[cut:])))
    resp = client.get("/v1/search", params=[("q", "shirt"), ("infer", "off"), *fields])
    assert resp.status_code == 200, resp.text
    assert parsed(records, "colors") == values


@given(values=st.lists(st.text(string.ascii_letters + ", ", max_size=8), max_size=80))
def test_filter_list_keeps_the_limits_or_names_the_one_broken(values: list[str]) -> None:
    for split in (True, False):
        parts = [p for v in values for p in (v.split(",") if split else [v])]
        try:
            out = filter_list(values, "color", split=split)
        except FilterLimitError as exc:
            assert exc.name == "color" and str(exc).startswith("color: ")
            assert len(parts) > limits.MAX_FILTER_VALUES or any(not p.strip() for p in parts)
        else:
            assert out == tuple(dict.fromkeys(p.strip() for p in parts))
            assert len(out) <= limits.MAX_FILTER_VALUES


def test_the_openapi_document_states_the_limits(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    json_list = next(a for a in spec["components"]["schemas"]["SearchFilters"]["properties"]
                     ["category"]["anyOf"] if a.get("type") == "array")
    assert json_list["maxItems"] == limits.MAX_FILTER_VALUES
    assert json_list["items"]["maxLength"] == limits.MAX_FILTER_VALUE_CHARS
    params = spec["paths"]["/v1/search"]["get"]["parameters"]
    described = [p["description"] for p in params if p["name"] in ("category", "color", "size")]
    form = spec["components"]["schemas"]["SearchForm"]["properties"]["size"]["description"]
    assert len(described) == 3
    for text in (*described, form):
        assert "separate values by commas" in text and "at most 64 values" in text


def test_each_refusal_says_what_is_wrong() -> None:
    """The 422's message is the shopper's (and the shop engineer's) only clue: each says which
    field and what rule, with the offending value cut to 40 characters."""
    def refusal(call: Any) -> str:
        with pytest.raises(ValueError) as caught:
            call()
        return str(caught.value)

    assert refusal(lambda: to_filters(categories=[], colors=[], sizes=[], min_price=60.0,
                                      max_price=50.0)) == "min_price must not exceed max_price"
    assert to_filters(categories=["dress, coat"], colors=[], sizes=["M"], min_price=50,
                      max_price=50) == Filters(categories=("dress", "coat"), sizes=("M",),
                                               min_price=50.0, max_price=50.0)
    assert isinstance(to_filters(categories=[], colors=[], sizes=[], min_price=5,
                                 max_price=None).min_price, float)
    assert refusal(lambda: to_filters(categories=[], colors=[], sizes=["x" * 101], min_price=None,
                                      max_price=None)).startswith("size: ")
    assert "(value 2: 101)" in refusal(lambda: filter_list(["red", "x" * 101], "color",
                                                           split=True))
    assert refusal(lambda: filter_list(["red\n"], "color", split=False)) == \
        "color: control characters are not allowed"
    long_id = "p" * 129
    assert refusal(lambda: split_ids([long_id], "positive")) == \
        f"positive: {long_id[:40]!r} is not a product id"
    assert split_ids(["p" * 128, " a , b "], "positive") == ("p" * 128, "a", "b")
    ids = [f"p{i}" for i in range(limits.MAX_EXAMPLES)]
    assert len(split_ids(ids, "negative")) == limits.MAX_EXAMPLES
    assert refusal(lambda: split_ids([*ids, "one-more"], "negative")) == \
        f"negative: at most {limits.MAX_EXAMPLES} ids"
    assert refusal(lambda: split_dropped(["colour"])) == \
        "drop_inferred: 'colour' is not one of category, color, size, price, cheap"
    assert refusal(lambda: parse_crop("0.1,0.2,0.3")) == \
        'crop must be "x,y,w,h" (fractions of the photo)'
    assert refusal(lambda: parse_crop("0.1,0.2,a,0.3")) == "crop values must be numbers"
    assert refusal(lambda: parse_crop("0.1,0.2,nan,0.3")) == "crop values must be finite numbers"
    assert refusal(lambda: parse_crop("0.5,0.5,0.6,0.1")).startswith(
        "crop must lie inside the photo: 0 <= x, y < 1; 0 < w, h <= 1; x + w <= 1; y + h <= 1 (")
    assert refusal(lambda: _no_control_chars("a\x00")) == "control characters are not allowed"
    assert refusal(lambda: _no_text_control_chars("a\x07")) == \
        "control characters (other than tab and newline) are not allowed"
    assert _no_text_control_chars("a\tb\nc") == "a\tb\nc"
    assert refusal(lambda: _not_blank(" \t")) == "must not be empty or only whitespace"


def test_a_json_filter_of_another_type_is_a_422_not_a_crash(client: TestClient) -> None:
    for value in ([1, 2], 5, {"a": "b"}, ["red", None]):
        resp = client.post("/v1/search", json={"text": "shirt", "filters": {"color": value}})
        assert resp.status_code == 422, (value, resp.text)
