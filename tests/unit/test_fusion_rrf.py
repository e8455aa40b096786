"""Reciprocal rank fusion (text + BM25), scaled to 0..1."""

from __future__ import annotations

import pytest

from lookalike.store.fusion import rrf


def test_rrf() -> None:
    fused = rrf(["a", "b", "c"], ["c", "a"])
    assert fused["a"] == pytest.approx((1.0 / 61 + 1.0 / 62) / (2 / 61))
    assert max(fused, key=lambda p: fused[p]) == "a" and fused["b"] < fused["c"]
    assert rrf(["x"], ["x"])["x"] == pytest.approx(1.0)
    assert rrf(["x"], [])["x"] == pytest.approx(0.5)  # first in one list of two
    assert rrf() == {}
