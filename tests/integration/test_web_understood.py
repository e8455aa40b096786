"""The page's line about what the words asked for (lookalike/web/understood.js), run in the
browser tier's headless Chromium: the functions the page calls, on search responses shaped as
the API returns them. No app: the script alone, loaded into a blank page."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lookalike
from tests.prerequisites import require

SCRIPT = Path(lookalike.__file__).parent / "web" / "understood.js"
CHROMIUM = Path(os.environ.get("LOOKALIKE_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"]

pytestmark = [pytest.mark.browser]
require(CHROMIUM.exists(), f"{CHROMIUM} is missing",
        "run `make browser` as root, or `sudo apt-get install chromium fonts-dejavu-core`")
require(importlib.util.find_spec("playwright") is not None, "playwright is not installed",
        "`make setup` installs it: pip install -c constraints.txt -e '.[test]'")
from playwright import sync_api

_page: Any = None


@pytest.fixture(scope="module", autouse=True)
def page() -> Iterator[Any]:
    global _page
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        _page = browser.new_page()
        _page.add_script_tag(content=SCRIPT.read_text())
        yield _page
        browser.close()


BLACK_BAG_UNDER_50 = {"mode": "boost", "categories": ["bag"], "colors": ["black"],
                      "price": {"lte": 50}}


def bag(color: str, price: float) -> dict[str, Any]:
    return {"category": "bag", "color": color, "size": "one size", "price": price}


def run_js(expression: str, **data: Any) -> Any:
    """`expression`'s value, evaluated with understood.js as `u`, `data` as `a` and prices
    formatted as "€50" by `fmt`."""
    return _page.evaluate("(a) => { const u = window.LookalikeUnderstood;"
                          " const fmt = (v) => `€${v}`; return " + expression + "; }", data)


def note(**data: Any) -> str:
    return run_js("u.limitsNote({...a, fmt, shown: a.results.length})", **data)


def unkept(**data: Any) -> list[str]:
    return run_js("[...u.unkept(a.inferred, a.results)]", **data)


def test_no_product_with_everything_asked_for_says_so_above_the_closest() -> None:
    # The demo's "black bag under 50": bags under €50 exist, black ones do not.
    results = [bag("brown", 35.0), bag("red", 48.0)]
    assert note(inferred=BLACK_BAG_UNDER_50, fullMatches=0, relaxed=[],
                results=results) == "No black bags under €50 — the closest:"
    assert unkept(inferred=BLACK_BAG_UNDER_50, results=results) == ["color"]


def test_fewer_than_shown_says_how_many() -> None:
    results = [bag("black", 30.0), bag("brown", 35.0), bag("black", 70.0)]
    assert note(inferred=BLACK_BAG_UNDER_50, fullMatches=1, relaxed=["price"],
                detail=[{"attribute": "price", "kept": 2}], results=results) == (
        "Only 1 black bag under €50; the other results are the closest.")
    assert unkept(inferred=BLACK_BAG_UNDER_50, results=results) == ["color", "price"]


def test_results_that_keep_everything_need_no_line() -> None:
    results = [bag("black", 30.0), bag("black", 45.0)]
    assert note(inferred=BLACK_BAG_UNDER_50, fullMatches=12, relaxed=[], results=results) == ""
    assert unkept(inferred=BLACK_BAG_UNDER_50, results=results) == []
    # nothing inferred (full_matches null): nothing to say either
    assert note(inferred={"mode": "boost"}, fullMatches=None, relaxed=[], results=results) == ""


def test_a_broken_limit_on_a_page_of_enough_matches_is_still_said() -> None:
    # A diversified page can show a product over the price that others keep.
    inferred = {"mode": "boost", "categories": ["dress"], "sizes": ["M"], "price": {"lte": 40}}
    assert note(inferred=inferred, fullMatches=30, relaxed=["price"],
                detail=[{"attribute": "price", "kept": 30}],
                results=[{"category": "dress", "color": "red", "size": "M", "price": 45.0}]) == (
        "Not every result is under €40 (30 products are).")


@pytest.mark.parametrize(("noun", "plural"), [("bag", "bags"), ("dress", "dresses"),
                                              ("trousers", "trousers"), ("t-shirt", "t-shirts"),
                                              ("ankle boot", "ankle boots")])
def test_category_plurals(noun: str, plural: str) -> None:
    assert run_js("u.askedFor(a.inferred, 2, fmt)", inferred={"categories": [noun]}) == plural
    assert run_js("u.askedFor(a.inferred, 1, fmt)", inferred={"categories": [noun]}) == noun
