"""The process's worker threads, one small pool per kind of blocking work, so one kind cannot
starve another: a few slow shopper decodes or unresolvable image_url hosts never hold up store
calls, searches or /readyz (asyncio's default executor would share one pool among them all).
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

DECODE_THREADS = 2  # shopper images decoded at once per process (each up to ~64 MB, CPU-bound)
STORE_THREADS = 8  # blocking store calls at once per process (gRPC waits, little CPU)
DNS_THREADS = 4  # image_url host look-ups at once per process (waits on resolvers)


class Pools:
    """The process's worker threads by kind of work, made on first use, and again in a forked
    child: a pool made before the fork has no threads there, and work sent to it would wait
    forever (a forked test runner hung on every API call so)."""

    _lock = threading.Lock()
    _pools: ClassVar[dict[str, ThreadPoolExecutor]] = {}
    SIZES: ClassVar[dict[str, int]] = {"decode": DECODE_THREADS, "store": STORE_THREADS,
                                       "dns": DNS_THREADS}

    @classmethod
    def get(cls, kind: str) -> ThreadPoolExecutor:
        with cls._lock:
            pool = cls._pools.get(kind)
            if pool is None:
                pool = cls._pools[kind] = ThreadPoolExecutor(
                    cls.SIZES[kind], thread_name_prefix=f"lookalike-{kind}")
            return pool

    @classmethod
    def _forget(cls) -> None:
        """In a forked child: drop the parent's pools (and its lock, which a parent thread
        may have held at the fork)."""
        cls._lock = threading.Lock()
        cls._pools = {}


os.register_at_fork(after_in_child=Pools._forget)


async def run_in(kind: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """asyncio.to_thread, on the `kind` pool ("decode", "store" or "dns") instead of the default."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(Pools.get(kind), functools.partial(fn, *args, **kwargs))


async def store_call(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return await run_in("store", fn, *args, **kwargs)
