"""FacetsCache's logic with a counting loader that can be held inside a scan."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from lookalike.catalog.product import Product
from lookalike.facets import FacetsCache, apply_write

WAIT_S = 30.0  # a deadline for events that happen at once


class Loader:
    """Returns {"scan": n, ...} for the n-th scan; can be held inside a scan."""

    def __init__(self) -> None:
        self.scans = 0
        self.entered, self.release = threading.Event(), threading.Event()
        self.release.set()

    def __call__(self) -> dict:
        self.scans += 1
        n = self.scans
        self.entered.set()
        assert self.release.wait(WAIT_S)
        return {"scan": n, "color": {"red": 1}, "price": {"min": 10.0, "max": 20.0}}


@pytest.fixture
def load() -> Loader:
    return Loader()


@pytest.fixture
def cache(load: Loader) -> Iterator[FacetsCache]:
    # A period far beyond the test: only writes and invalidate() can start a rescan.
    made = FacetsCache(load, refresh_s=3600)
    yield made
    made.close()


def test_searches_read_one_scan_and_never_wait_on_another(cache: FacetsCache,
                                                          load: Loader) -> None:
    assert [cache.get()["scan"] for _ in range(3)] == [1, 1, 1]
    load.release.clear()
    load.entered.clear()
    cache.invalidate()
    assert load.entered.wait(WAIT_S)  # the background rescan is held inside the store
    assert cache.get()["scan"] == 1  # a search meanwhile reads the snapshot, at once
    load.release.set()
    assert cache.wait_idle(WAIT_S)
    assert cache.get()["scan"] == 2 and load.scans == 2


def test_a_write_updates_the_snapshot_without_a_scan(cache: FacetsCache, load: Loader) -> None:
    cache.get()
    cache.written(added=Product("a", color="blue", price=15.0), removed=None)
    got = cache.get()
    assert got["color"] == {"red": 1, "blue": 1} and got["price"] == {"min": 10.0, "max": 20.0}
    cache.written(added=Product("a", color="teal", price=5.0),
                  removed=Product("a", color="blue", price=15.0))
    got = cache.get()
    assert got["color"] == {"red": 1, "teal": 1} and got["price"] == {"min": 5.0, "max": 20.0}
    assert cache.wait_idle(WAIT_S) and load.scans == 1


def test_removing_the_dearest_product_rescans_in_the_background(cache: FacetsCache,
                                                                load: Loader) -> None:
    cache.get()
    cache.written(added=None, removed=Product("b", color="red", price=20.0))
    assert cache.wait_idle(WAIT_S)
    assert load.scans == 2 and cache.get()["scan"] == 2


def test_a_write_during_a_scan_makes_it_scan_again(cache: FacetsCache, load: Loader) -> None:
    cache.get()
    load.release.clear()
    load.entered.clear()
    cache.invalidate()
    assert load.entered.wait(WAIT_S)
    cache.written(added=Product("c", color="ochre"), removed=None)  # may be missing from scan 2
    load.release.set()
    assert cache.wait_idle(WAIT_S)
    assert load.scans == 3 and cache.get()["scan"] == 3


def test_callers_during_the_first_scan_share_it(cache: FacetsCache, load: Loader) -> None:
    load.release.clear()
    results: list[dict] = []
    readers = [threading.Thread(target=lambda: results.append(cache.get())) for _ in range(5)]
    for t in readers:
        t.start()
    assert load.entered.wait(WAIT_S)
    load.release.set()
    for t in readers:
        t.join(WAIT_S)
    assert len(results) == 5 and {r["scan"] for r in results} == {1} and load.scans == 1


def test_a_zero_period_scans_on_every_call(load: Loader) -> None:
    cache = FacetsCache(load, refresh_s=0)
    assert [cache.get()["scan"] for _ in range(3)] == [1, 2, 3]


def test_callers_cannot_change_the_snapshot(cache: FacetsCache) -> None:
    cache.get()["color"]["red"] = 99
    assert cache.get()["color"] == {"red": 1}


@pytest.mark.parametrize(("added", "removed", "counts", "price", "exact"), [
    (Product("a", category="dress", price=3.0), None, {"dress": 1, "coat": 2},
     {"min": 3.0, "max": 20.0}, True),
    (None, Product("b", category="coat", price=12.0), {"coat": 1}, {"min": 10.0, "max": 20.0},
     True),
    (None, Product("b", category="coat", price=10.0), {"coat": 1}, {"min": 10.0, "max": 20.0},
     False),
    (Product("b", category="dress"), Product("b", category="coat"), {"coat": 1, "dress": 1},
     {"min": 10.0, "max": 20.0}, True),
])
def test_apply_write(added: Product | None, removed: Product | None, counts: dict,
                     price: dict, exact: bool) -> None:
    facets = {"category": {"coat": 2}, "color": {}, "size": {}, "price": {"min": 10.0, "max": 20.0}}
    assert apply_write(facets, added=added, removed=removed) is exact
    assert facets["category"] == counts and facets["price"] == price
    assert list(facets["category"].values()) == sorted(counts.values(), reverse=True)


def test_the_first_product_sets_the_price_range() -> None:
    facets: dict = {"category": {}, "color": {}, "size": {}, "price": {}}
    apply_write(facets, added=Product("a", color="red", price=9.999), removed=None)
    assert facets["color"] == {"red": 1} and facets["price"] == {"min": 10.0, "max": 10.0}


def test_refresh_scans_now_and_waits_for_it(cache: FacetsCache, load: Loader) -> None:
    cache.refresh()  # before any read: the first scan
    assert load.scans == 1
    cache.refresh()
    assert load.scans == 2 and cache.get()["scan"] == 2
