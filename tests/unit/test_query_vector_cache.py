"""QueryVectors' logic with a counting stand-in embedder (the real one, through a
SearchService on milvus-lite: tests/integration/test_search_service.py)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from lookalike.query.vector_cache import QueryVectors


class Embedder:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def __call__(self, text: str) -> np.ndarray:
        self.asked.append(text)
        if text == "boom":
            raise RuntimeError("replica failed")
        return np.full(4, float(len(self.asked)), np.float32)


def test_a_repeated_text_is_embedded_once_and_gets_the_same_read_only_vector() -> None:
    embed = Embedder()
    cache = QueryVectors(embed, size=8)
    first = asyncio.run(cache("red dress"))
    again = asyncio.run(cache("red dress"))
    assert embed.asked == ["red dress"] and again is first
    with pytest.raises(ValueError):
        again[0] = 0.0  # shared by every search that asks it: nobody may change it


def test_texts_differ_exactly_and_the_least_recent_goes_past_the_bound() -> None:
    embed = Embedder()
    cache = QueryVectors(embed, size=2)
    for text in ("a", "A", "a", "b", "a"):  # "A" is another text: case is the model's business
        asyncio.run(cache(text))
    assert embed.asked == ["a", "A", "b"]
    asyncio.run(cache("A"))  # pushed out by "b" (then "a" was asked again)
    assert embed.asked == ["a", "A", "b", "A"]


def test_size_zero_embeds_every_query() -> None:
    embed = Embedder()
    cache = QueryVectors(embed, size=0)
    asyncio.run(cache("x"))
    asyncio.run(cache("x"))
    assert embed.asked == ["x", "x"]


def test_a_failed_embed_is_not_kept() -> None:
    embed = Embedder()
    cache = QueryVectors(embed, size=8)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            asyncio.run(cache("boom"))
    assert embed.asked == ["boom", "boom"]
