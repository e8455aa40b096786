"""Facet values and counts, kept current off the search path.

Computing facets scans the whole collection. Every search's query understanding reads them, so
a search only ever reads the current snapshot: the first call at start scans (nothing to read
yet), after that a background thread rescans every `refresh_s` (other replicas' and the ingest
job's writes show within it), and this process's own writes update the counts at once
(`written`). A write whose effect a delta cannot know (a removed product held the lowest or
highest price: the range may shrink) asks the thread for a rescan; searches meanwhile read the
slightly wider range.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from typing import Any

from lookalike.catalog.product import Product

log = logging.getLogger(__name__)
Facets = dict[str, Any]
COUNTED = ("category", "color", "size")


def apply_write(facets: Facets, *, added: Product | None, removed: Product | None) -> bool:
    """Update `facets` in place for one product replaced (`removed` -> `added`; either may be
    None). False when the result may be inexact: the price range may have shrunk."""
    for name in COUNTED:
        counts = facets.setdefault(name, {})
        if removed is not None and (old := getattr(removed, name)) and old in counts:
            counts[old] -= 1
            if counts[old] <= 0:
                del counts[old]
        if added is not None and (new := getattr(added, name)):
            counts[new] = counts.get(new, 0) + 1
        # Most common first, as a scan orders them.
        facets[name] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
    price = facets.get("price") or {}
    exact = not (removed is not None and removed.price is not None and price
                 and removed.price in (price["min"], price["max"]))
    if added is not None and added.price is not None and added.price >= 0:
        p = round(float(added.price), 2)
        facets["price"] = ({"min": min(price["min"], p), "max": max(price["max"], p)} if price
                           else {"min": p, "max": p})
    return exact


class FacetsCache:
    def __init__(self, load: Callable[[], Facets], *, refresh_s: float) -> None:
        """`refresh_s`: how often the background thread rescans; 0 scans on every call (an
        exact answer for tools; never on a served router)."""
        self._load = load
        self.refresh_s = refresh_s
        self._first = threading.Lock()  # one first scan; callers during it share its result
        self._cond = threading.Condition()  # guards everything below
        self._value: Facets | None = None
        self._generation = 0  # bumped by every write: a scan that overlapped one is redone
        self._asked = self._running = self._closed = False
        self.scans = 0

    def get(self) -> Facets:
        """The current snapshot. Blocks only before the first scan has finished: call it from
        a worker thread, not an event loop."""
        if self.refresh_s == 0:
            return self._scan()
        if self._value is None:
            with self._first:
                if self._value is None:
                    generation = self._generation
                    value = self._scan()
                    with self._cond:
                        self._value = value
                        self._asked = generation != self._generation
                    threading.Thread(target=self._run, name="facets-refresh", daemon=True).start()
        with self._cond:
            assert self._value is not None
            return copy.deepcopy(self._value)

    def written(self, *, added: Product | None, removed: Product | None) -> None:
        """This process wrote a product: the snapshot follows at once, without a scan unless
        the price range may have shrunk. Never waits for a running scan."""
        with self._cond:
            self._generation += 1
            if self._value is not None and not apply_write(self._value, added=added,
                                                           removed=removed):
                self._asked = True
            self._cond.notify_all()

    def invalidate(self) -> None:
        """Rescan soon, in the background (a write whose effect is not known)."""
        with self._cond:
            self._generation += 1
            self._asked = True
            self._cond.notify_all()

    def refresh(self, timeout_s: float = 60.0) -> None:
        """Rescan now and wait for it (an operator's refresh; blocking). Before the first
        scan, that scan."""
        if self._value is None or self.refresh_s == 0:
            self.get()
            return
        self.invalidate()
        self.wait_idle(timeout_s)

    def wait_idle(self, timeout_s: float) -> bool:
        """Until no rescan is asked for or running (tests; an operator's refresh)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._asked and not self._running or
                                       self._value is None or self._closed, timeout_s)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _scan(self) -> Facets:
        self.scans += 1
        return self._load()

    def _run(self) -> None:
        overlapped = 0  # scans in a row that a write overlapped
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._asked or self._closed, self.refresh_s)
                if self._closed:
                    return
                self._asked, self._running = False, True
                generation = self._generation
            try:
                value: Facets | None = self._scan()
            except Exception as exc:  # noqa: BLE001 - keep serving the last snapshot
                log.warning("facets refresh failed, keeping the last ones: %s", exc)
                value = None  # retried at the next period, not in a tight loop
            with self._cond:
                if value is not None:
                    # A write during the scan may be missing from it: scan again at once, but
                    # under constant writes take the third such scan (others' writes must
                    # show too), and its gap closes at the next period.
                    overlapped = overlapped + 1 if generation != self._generation else 0
                    if overlapped in (0, 3):
                        self._value, overlapped = value, 0
                    else:
                        self._asked = True
                self._running = False
                self._cond.notify_all()
