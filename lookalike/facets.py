"""Facet values and counts, cached: every page load asks for them, and computing them scans
the whole collection.

The cached value is dropped on this process's own writes (`invalidate`) and expires after a
short TTL, so writes by other router replicas or the ingest job show up soon too.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

Facets = dict[str, Any]


class FacetsCache:
    def __init__(self, load: Callable[[], Facets], *, ttl_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self.ttl_s = ttl_s
        self._clock = clock
        # One scan at a time: callers arriving during a scan wait for its result.
        self._load_lock = threading.Lock()
        self._generation = 0  # bumped by every invalidate()
        self._gen_lock = threading.Lock()
        self._value: Facets | None = None
        self._value_generation = -1
        self._loaded_at = 0.0

    def get(self) -> Facets:
        """Blocking (a scan may run): call it from a worker thread, not an event loop."""
        with self._load_lock:
            if not self._fresh():
                started, generation = self._clock(), self._generation
                value = self._load()
                # Stamped with the state at the scan's start: a write during the scan (an
                # invalidate) makes the next call scan again.
                self._value, self._value_generation, self._loaded_at = value, generation, started
            assert self._value is not None
            return copy.deepcopy(self._value)

    def invalidate(self) -> None:
        """Never waits for a running scan (called right after a write, on the event loop)."""
        with self._gen_lock:
            self._generation += 1

    def _fresh(self) -> bool:
        return (self._value is not None and self._value_generation == self._generation
                and self._clock() - self._loaded_at < self.ttl_s)
