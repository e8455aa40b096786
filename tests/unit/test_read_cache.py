"""ReadCache's logic with a hand-driven clock (the real store's use: test_store_read_cache.py)."""

from __future__ import annotations

from lookalike.store.read_cache import ReadCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def row(pid: str, version: int) -> dict:
    return {"product_id": pid, "write_version": version, "title": f"{pid}@{version}"}


def test_a_row_serves_hits_of_its_version_or_older_until_the_ttl_passes() -> None:
    clock = Clock()
    cache = ReadCache(2.0, clock=clock)
    cache.put_rows([row("a", 5), row("b", 5)])
    found, missing = cache.rows({"a": 5, "b": 4, "c": 1})
    # b@4 met by a search while b@5 is known: the row says it is stale (a newer one exists).
    assert found == {"a": row("a", 5), "b": row("b", 5)} and missing == ["c"]
    clock.now += 1.9
    assert cache.rows({"a": 5})[1] == []
    clock.now += 0.2
    assert cache.rows({"a": 5}) == ({}, ["a"])


def test_a_hit_of_a_newer_version_is_read_again() -> None:
    cache = ReadCache(2.0, clock=Clock())
    cache.put_rows([row("a", 5)])
    assert cache.rows({"a": 6}) == ({}, ["a"])


def test_a_write_drops_every_row() -> None:
    cache = ReadCache(2.0, clock=Clock())
    cache.put_rows([row("a", 5), row("b", 1)])
    cache.clear()
    assert cache.rows({"a": 5, "b": 1}) == ({}, ["a", "b"])


def test_ttl_zero_caches_nothing() -> None:
    cache = ReadCache(0.0, clock=Clock())
    cache.put_rows([row("a", 5)])
    assert cache.rows({"a": 5}) == ({}, ["a"])


def test_the_oldest_rows_go_first_past_the_size_bound() -> None:
    cache = ReadCache(60.0, max_rows=2, clock=Clock())
    cache.put_rows([row("a", 1), row("b", 1), row("c", 1)])
    assert sorted(cache.rows({"a": 1, "b": 1, "c": 1})[1]) == ["a"]
