"""Bounded loopback load with one fault injected: shared by the fault tests.

Closed loop, CONCURRENCY clients, at most MAX_REQUESTS requests and KILL_AT_S + AFTER_KILL_S
seconds; `kill` runs once, KILL_AT_S in. Each request is recorded with its timing, status and
whether the body was JSON; `figures` gives failed % and recovery seconds (from the kill to the
end of the last failed request).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

KILL_AT_S = 4.0
AFTER_KILL_S = 20.0
HEAL_WITHIN_S = 15.0
CONCURRENCY = 4
MAX_REQUESTS = 3000


@dataclass
class Outcome:
    kind: str
    started: float = 0.0  # seconds since the load began
    ended: float = 0.0
    status: int = 0  # 0: no HTTP answer at all
    code: str | None = None
    error: str | None = None  # the client's exception when there was no HTTP answer
    json_body: bool = True
    product_id: str | None = None
    images: int = 0


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)
    killed_at: float = 0.0


# A request maker: (client, n) -> (the call, its Outcome to fill in).
MakeRequest = Callable[[httpx.AsyncClient, int], tuple[Awaitable[httpx.Response], Outcome]]


async def _one(client: httpx.AsyncClient, n: int, t0: float, make: MakeRequest) -> Outcome:
    started = time.monotonic() - t0
    call, outcome = make(client, n)
    outcome.started = started
    try:
        resp = await call
        outcome.status = resp.status_code
        try:
            outcome.code = (resp.json().get("error") or {}).get("code")
        except ValueError:
            outcome.json_body = False
    except httpx.HTTPError as exc:
        outcome.status = 0
        outcome.error = f"{type(exc).__name__}: {exc}"[:200]
    outcome.ended = time.monotonic() - t0
    return outcome


async def _load(url: str, make: MakeRequest, kill: Callable[[], None]) -> Run:
    run = Run()
    t0 = time.monotonic()
    counter = iter(range(MAX_REQUESTS))

    async def worker(client: httpx.AsyncClient) -> None:
        for n in counter:
            if time.monotonic() - t0 > KILL_AT_S + AFTER_KILL_S:
                return
            run.outcomes.append(await _one(client, n, t0, make))

    async def killer() -> None:
        await asyncio.sleep(KILL_AT_S)
        await asyncio.to_thread(kill)
        run.killed_at = time.monotonic() - t0

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await asyncio.gather(killer(), *(worker(client) for _ in range(CONCURRENCY)))
    return run


def run_with_fault(url: str, make: MakeRequest, kill: Callable[[], None]) -> Run:
    assert url.startswith("http://127.0.0.1:"), "fault load targets loopback only"
    return asyncio.run(_load(url, make, kill))


def figures(run: Run) -> dict[str, float]:
    failed = [o for o in run.outcomes if o.status != 200]
    after = [o for o in failed if o.ended >= run.killed_at]
    return {"requests": len(run.outcomes), "failed": len(failed),
            "failed_pct": round(100.0 * len(failed) / max(1, len(run.outcomes)), 2),
            "recovery_s": round(max((o.ended for o in after), default=run.killed_at)
                                - run.killed_at, 2),
            "slowest_failure_s": round(max((o.ended - o.started for o in failed), default=0), 2)}


def back_to_full_service(run: Run) -> bool:
    """Every request sent HEAL_WITHIN_S after the kill succeeded (and there were some)."""
    late = [o for o in run.outcomes if o.started >= run.killed_at + HEAL_WITHIN_S]
    return bool(late) and all(o.status == 200 for o in late)
