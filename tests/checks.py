"""Assertions over results that can fail: `all()` over nothing is True, so a check of every hit
on a search that returned none proves nothing. Use these instead of `assert all(...)` wherever
the results come from the code under test."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def nonempty(items: Iterable[T], what: str = "results") -> list[T]:
    """The items as a list, after asserting there is at least one."""
    got = list(items)
    assert got, f"no {what}: a check of every one of them would pass on nothing"
    return got


def all_of(items: Iterable[T], pred: Callable[[T], object], what: str = "results") -> None:
    """Assert there is at least one item and that `pred` holds for each; says which did not."""
    got = nonempty(items, what)
    failing = [item for item in got if not pred(item)]
    assert not failing, f"{len(failing)} of {len(got)} {what} fail the check: {failing[:5]!r}"
