"""tests/checks.py: an empty result fails, and so does any item the predicate refuses."""

from __future__ import annotations

import pytest

from tests.checks import all_of, nonempty


def test_all_of_an_empty_result_fails_where_all_passes() -> None:
    assert all(x > 0 for x in [])  # the trap: vacuously true
    with pytest.raises(AssertionError, match="no hits"):
        all_of([], lambda x: x > 0, "hits")
    with pytest.raises(AssertionError, match="no results"):
        nonempty(iter(()))


def test_all_of_names_the_items_that_fail() -> None:
    all_of([1, 2, 3], lambda x: x > 0)
    with pytest.raises(AssertionError, match=r"1 of 3 results fail the check: \[-2\]"):
        all_of([1, -2, 3], lambda x: x > 0)
    assert nonempty(x for x in (4, 5)) == [4, 5]  # generators are read once, then kept
