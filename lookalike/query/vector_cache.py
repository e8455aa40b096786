"""QueryVectors: the text embedder's vector for each recent query text, kept per model.

Why: shoppers repeat the same few queries ("red dress", the links on a shop's front page),
and each one costs a round trip to a text replica and a forward pass (≈ 8 ms through the
handle on a 2-core box) for a vector that is always the same: one model, one text, one
vector. Unlike the store's read cache nothing here can go stale, so it needs no TTL, only
a bound: the least recently asked texts go first. A SearchService is built per model
version (lookalike/live.py), so a cache never hands out another model's vector.

Only search queries go through it; product texts embedded on a write do not, so an ingest
through the API never pushes the shoppers' queries out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import numpy as np
from cachetools import LRUCache


class QueryVectors:
    def __init__(self, embed: Callable[[str], Awaitable[np.ndarray]], size: int) -> None:
        """`size`: how many texts are kept (0: none, every query is embedded)."""
        self._embed = embed
        # One event loop calls it (the router's or the in-process app's): no lock needed.
        self._cache: LRUCache[str, np.ndarray] | None = LRUCache(size) if size else None

    async def __call__(self, text: str) -> np.ndarray:
        if self._cache is None:
            return await self._embed(text)
        vector = self._cache.get(text)
        if vector is not None:
            return vector
        vector = np.asarray(await self._embed(text))
        # Shared by every search that asks this text again: no caller may change it.
        vector.setflags(write=False)
        self._cache[text] = vector
        return vector
