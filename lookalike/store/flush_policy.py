"""When to flush rows written through the API.

Rows written with upsert/delete stay in the store's write buffer until a flush. milvus-lite
searches that buffer by brute force and re-checks visibility there on every search: with 625
API-written rows unflushed, one search cost the server 14.6 ms of CPU against 2.7 ms once
flushed (issue 16). Nothing flushed API writes before; the ingest job flushes its own bulk
loads. Milvus proper seals segments itself, but a flush is cheap and harmless there too.

`FlushPolicy` is the pure decision (fake clock in its unit test): flush once `max_rows` rows
are pending, or once `idle_s` has passed since the last write with any row pending (a burst
of writes is flushed as one segment, not one per write). `AutoFlush` runs it on a daemon
thread next to a store, so no request waits for a flush.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# After a failed flush (store down), wait this long before the next try.
RETRY_S = 5.0


class FlushPolicy:
    def __init__(self, *, max_rows: int, idle_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_rows < 1 or idle_s < 0:
            raise ValueError("max_rows must be >= 1 and idle_s >= 0")
        self.max_rows = max_rows
        self.idle_s = idle_s
        self.clock = clock
        self.pending = 0  # rows written since the last flush began
        self.last_write = 0.0
        self.not_before = 0.0  # a failed flush holds the next one back

    def record(self, rows: int) -> None:
        """`rows` rows were just written (upserted or deleted)."""
        self.pending += max(0, rows)
        self.last_write = self.clock()

    def wait_s(self) -> float | None:
        """Seconds until a flush is due: 0 when due now, None with nothing pending."""
        if self.pending == 0:
            return None
        now = self.clock()
        hold = max(0.0, self.not_before - now)
        if self.pending >= self.max_rows:
            return hold
        return max(hold, self.last_write + self.idle_s - now)

    def due(self) -> bool:
        return self.wait_s() == 0

    def begin(self) -> int:
        """A flush starts now and covers the rows pending so far; later writes stay pending."""
        rows, self.pending = self.pending, 0
        return rows

    def failed(self, rows: int) -> None:
        """The flush that covered `rows` failed: they are pending again, retried later."""
        self.pending += rows
        self.not_before = self.clock() + RETRY_S


class AutoFlush:
    """Calls `flush` on a daemon thread whenever `policy` says so; `wrote(rows)` after each
    write. `close()` flushes what is still pending and stops the thread."""

    def __init__(self, flush: Callable[[], None], policy: FlushPolicy) -> None:
        self._flush = flush
        self.policy = policy
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.flushes = 0  # completed flushes, for tests and /metrics-style introspection

    def wrote(self, rows: int) -> None:
        with self._cond:
            if self._closed:
                return
            self.policy.record(rows)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lookalike-auto-flush",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    wait = self.policy.wait_s()
                    if wait == 0:
                        break
                    self._cond.wait(wait)  # None: until the next write
                if self._closed:
                    return
                rows = self.policy.begin()
            self._try_flush(rows)

    def _try_flush(self, rows: int) -> bool:
        try:
            self._flush()
        except Exception as exc:  # noqa: BLE001 - the store being down must not kill the thread
            log.warning("flush of %d written rows failed (retrying in %.0f s): %s",
                        rows, RETRY_S, exc)
            with self._cond:
                self.policy.failed(rows)
            return False
        with self._cond:
            self.flushes += 1
        return True

    def close(self, *, flush_pending: bool = True) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            rows = self.policy.begin()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if flush_pending and rows:
            self._try_flush(rows)
