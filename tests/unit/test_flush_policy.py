"""The write-flush policy's decisions (pure logic, a fake clock), and AutoFlush's thread with a
recording flush callable. The real store is flushed in tests/integration/test_store_flush.py."""

from __future__ import annotations

import threading

import pytest

from lookalike.store.flush_policy import RETRY_S, AutoFlush, FlushPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_nothing_pending_is_never_due() -> None:
    clock = Clock()
    policy = FlushPolicy(max_rows=10, idle_s=2.0, clock=clock)
    assert policy.wait_s() is None and not policy.due()
    clock.now += 1000
    assert not policy.due()


def test_due_after_idle_seconds_since_the_last_write() -> None:
    clock = Clock()
    policy = FlushPolicy(max_rows=10, idle_s=2.0, clock=clock)
    policy.record(3)
    assert policy.wait_s() == pytest.approx(2.0)
    clock.now += 1.5
    policy.record(2)  # a burst keeps postponing: one flush for the whole burst
    assert policy.wait_s() == pytest.approx(2.0)
    clock.now += 1.9
    assert not policy.due()
    clock.now += 0.1
    assert policy.due()


def test_due_at_once_when_enough_rows_are_pending() -> None:
    clock = Clock()
    policy = FlushPolicy(max_rows=10, idle_s=60.0, clock=clock)
    policy.record(9)
    assert not policy.due()
    policy.record(1)
    assert policy.due() and policy.wait_s() == 0


def test_writes_during_a_flush_stay_pending() -> None:
    clock = Clock()
    policy = FlushPolicy(max_rows=10, idle_s=1.0, clock=clock)
    policy.record(12)
    assert policy.begin() == 12
    policy.record(4)  # arrives while the flush runs
    assert policy.pending == 4
    assert not policy.due()
    clock.now += 1.0
    assert policy.due()


def test_a_failed_flush_is_retried_later_not_in_a_tight_loop() -> None:
    clock = Clock()
    policy = FlushPolicy(max_rows=5, idle_s=0.0, clock=clock)
    policy.record(7)
    rows = policy.begin()
    policy.failed(rows)
    assert policy.pending == 7
    assert policy.wait_s() == pytest.approx(RETRY_S)
    clock.now += RETRY_S
    assert policy.due()


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        FlushPolicy(max_rows=0, idle_s=1.0)
    with pytest.raises(ValueError):
        FlushPolicy(max_rows=1, idle_s=-1.0)


def test_auto_flush_flushes_on_its_thread_and_on_close() -> None:
    flushed = threading.Event()
    calls: list[int] = []

    def flush() -> None:
        calls.append(1)
        flushed.set()

    auto = AutoFlush(flush, FlushPolicy(max_rows=2, idle_s=3600.0))
    auto.wrote(1)
    assert not flushed.wait(0.2)  # 1 row, an hour's idle limit: nothing yet
    auto.wrote(1)
    assert flushed.wait(10)  # 2 rows: due at once, flushed by the thread
    auto.wrote(1)
    auto.close()  # the last row is flushed on close
    assert len(calls) == 2 and auto.flushes == 2
    auto.wrote(5)  # after close: ignored, no thread restarted
    assert len(calls) == 2


def test_auto_flush_survives_a_failing_store() -> None:
    attempts: list[int] = []

    def flush() -> None:
        attempts.append(1)
        raise RuntimeError("store down")

    auto = AutoFlush(flush, FlushPolicy(max_rows=1, idle_s=0.0))
    auto.wrote(1)
    auto.close()  # no exception escapes, neither from the thread nor from the last try
    assert attempts and auto.flushes == 0
