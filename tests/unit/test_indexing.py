"""lookalike.indexing's pure helper (embedding itself needs the models: tests/integration)."""

from __future__ import annotations

import pytest

from lookalike.indexing import batched


def hand_rolled(items: list[int], n: int) -> list[list[int]]:  # the loop the recipe replaced
    out, batch = [], []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            out.append(batch)
            batch = []
    return out + [batch] if batch else out


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 200])
@pytest.mark.parametrize("n", [1, 7, 64])
def test_batched_equals_the_hand_rolled_loop(size: int, n: int) -> None:
    items = list(range(size))
    assert list(batched(iter(items), n)) == hand_rolled(items, n)
    assert all(isinstance(b, list) for b in batched(items, n))
