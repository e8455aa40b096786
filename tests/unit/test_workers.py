"""Blocking work waits on a pool of its own kind: image_url look-ups that hang (a resolver that
never answers) hold only the DNS threads, never asyncio's default executor nor the store's."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from typing import Any

import pytest

from lookalike import workers
from lookalike.fetch import system_resolver

DEADLINE_S = 30.0  # a deadline for an event, not a measured duration


def test_hung_lookups_hold_only_the_dns_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    release, entered = threading.Event(), threading.Semaphore(0)

    def hung(*_: Any, **__: Any) -> list[Any]:
        entered.release()
        release.wait(DEADLINE_S)
        raise socket.gaierror("no answer")

    monkeypatch.setattr(socket, "getaddrinfo", hung)
    lookups = 16  # more than the DNS pool and the default executor (min(32, cores + 4)) hold

    async def scenario() -> None:
        tasks = [asyncio.create_task(system_resolver(f"h{i}.example", 443))
                 for i in range(lookups)]
        busy = await asyncio.to_thread(
            lambda: [entered.acquire(timeout=DEADLINE_S) for _ in range(workers.DNS_THREADS)])
        assert all(busy), "the look-ups never started"
        try:
            # Both answer while every DNS thread is stuck.
            assert await asyncio.wait_for(asyncio.to_thread(lambda: "default"), DEADLINE_S)
            assert await asyncio.wait_for(workers.store_call(lambda: "store"), DEADLINE_S)
        finally:
            release.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())


def test_a_forked_child_runs_its_work_on_pools_of_its_own() -> None:
    """A pool made before a fork has no threads in the child: the child makes its own (a
    forked test runner, mutmut's, hung on every API call before)."""
    assert asyncio.run(workers.store_call(lambda: 1)) == 1  # the parent's pool, with threads
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if the work ran, within the deadline
        try:
            ran = asyncio.run(asyncio.wait_for(workers.store_call(lambda: 2), DEADLINE_S)) == 2
        except BaseException:  # noqa: BLE001 - any failure is the child's exit code
            ran = False
        os._exit(0 if ran else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
