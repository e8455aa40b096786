"""ReadCache: search winners' rows, kept a few seconds per store client.

Why: after its vector searches a search reads its winners' fields (which is also the
newest-version check). That read is a round trip and a read the store pays for, while the
same popular products win search after search.

A row is kept with its write version, and a search only takes it for a hit of that same
version: a hit of a newer version means the product was rewritten, and is read again; a hit
of an older version is stale, as the store would have said. So a cached row never pairs one
version's photo with another's fields, and a product deleted elsewhere is no hit at all. What
the cache can miss for up to `ttl_s` is another process's write still in flight (or
interrupted) beside the old rows; like the facets (lookalike/facets.py), this process's own
writes drop everything at once.

Variant groups are not cached: nothing in a search tells a cached group that another router
replica deleted or rewrote one of its members, so the deleted product would go on showing as
a variant (tests/e2e/test_api.py caught it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from cachetools import TTLCache

Row = dict[str, Any]
MAX_ROWS = 50_000  # products; a row without vectors is well under 1 KB


class ReadCache:
    def __init__(self, ttl_s: float, *, max_rows: int = MAX_ROWS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()  # cachetools caches are not thread-safe
        self._rows: TTLCache[str, Row] = TTLCache(max_rows, ttl_s or 1.0, timer=clock)

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def rows(self, wanted: dict[str, int]) -> tuple[dict[str, Row], list[str]]:
        """For {product_id: the write version a search met}: the cached newest rows that are
        at least that version, and the ids that must be read from the store."""
        found: dict[str, Row] = {}
        missing: list[str] = []
        with self._lock:
            for pid, version in wanted.items():
                row = self._rows.get(pid) if self.enabled else None
                if row is not None and int(row["write_version"]) >= version:
                    found[pid] = row
                else:
                    missing.append(pid)
        return found, missing

    def put_rows(self, rows: Iterable[Row]) -> None:
        if self.enabled:
            with self._lock:
                for row in rows:
                    self._rows[row["product_id"]] = row

    def clear(self) -> None:
        """After a write through this client: what it cached may be gone or relabelled."""
        with self._lock:
            self._rows.clear()
