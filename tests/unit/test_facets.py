"""FacetsCache's logic with a counting loader and a hand-driven clock."""

from __future__ import annotations

import threading

from lookalike.facets import FacetsCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """Returns {"scan": n} for the n-th scan; can be held inside a scan."""

    def __init__(self) -> None:
        self.scans = 0
        self.entered, self.release = threading.Event(), threading.Event()
        self.release.set()

    def __call__(self) -> dict:
        self.scans += 1
        n = self.scans
        self.entered.set()
        self.release.wait(30)
        return {"scan": n}


def test_reuses_one_scan_until_the_ttl_passes() -> None:
    load, clock = Loader(), Clock()
    cache = FacetsCache(load, ttl_s=5.0, clock=clock)
    assert [cache.get() for _ in range(3)] == [{"scan": 1}] * 3
    clock.now += 4.9
    assert cache.get() == {"scan": 1}
    clock.now += 0.2
    assert cache.get() == {"scan": 2} and load.scans == 2


def test_invalidate_forces_the_next_scan() -> None:
    load = Loader()
    cache = FacetsCache(load, ttl_s=3600, clock=Clock())
    cache.get()
    cache.invalidate()
    assert cache.get() == {"scan": 2} and cache.get() == {"scan": 2}


def test_a_zero_ttl_never_caches() -> None:
    load = Loader()
    cache = FacetsCache(load, ttl_s=0, clock=Clock())
    assert [cache.get()["scan"] for _ in range(3)] == [1, 2, 3]


def test_a_write_during_a_scan_is_not_hidden_by_that_scan() -> None:
    load = Loader()
    cache = FacetsCache(load, ttl_s=3600, clock=Clock())
    load.release.clear()
    reader = threading.Thread(target=cache.get)
    reader.start()
    assert load.entered.wait(30)
    cache.invalidate()  # a write lands while the scan runs: it may be missing from scan 1
    load.release.set()
    reader.join(30)
    assert cache.get() == {"scan": 2}


def test_callers_during_a_scan_share_it() -> None:
    load = Loader()
    cache = FacetsCache(load, ttl_s=3600, clock=Clock())
    load.release.clear()
    results: list[dict] = []
    readers = [threading.Thread(target=lambda: results.append(cache.get())) for _ in range(5)]
    for t in readers:
        t.start()
    assert load.entered.wait(30)
    load.release.set()
    for t in readers:
        t.join(30)
    assert results == [{"scan": 1}] * 5 and load.scans == 1


def test_callers_cannot_change_the_cached_value() -> None:
    cache = FacetsCache(lambda: {"color": {"red": 1}}, ttl_s=3600, clock=Clock())
    cache.get()["color"]["red"] = 99
    assert cache.get() == {"color": {"red": 1}}
