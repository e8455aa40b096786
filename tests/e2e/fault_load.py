"""Bounded loopback load with one fault injected: shared by the fault tests.

Closed loop, CONCURRENCY clients. Bounded by events and counts, not by a clock: `kill` runs
once KILL_AFTER_OK requests have succeeded (the app is warm and serving); from then on
`healed()` (the test's own event: a replacement replica listed, the store serving again) is
asked every HEAL_POLL_S; the load ends once it said yes, the last HEALED_OK requests all
started after that and succeeded, and at least `min_requests` were sent in all (so that a
failed percentage keeps the base it had when the load ran for a fixed time). Deadlines only
stop a load that never gets there: no heal event within `heal_within_s` of the kill (then
`healed_at` stays None and the test fails with the figures), no clean tail by twice that, and
MAX_REQUESTS (a load with its clean tail but short of `min_requests` goes on to it, however
long the machine takes). Each request is recorded with its timing, status and whether the body was
JSON; `figures` gives failed % and recovery seconds (from the kill to the end of the last
failed request).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

KILL_AFTER_OK = 20
HEALED_OK = 40
HEAL_WITHIN_S = 15.0
HEAL_POLL_S = 0.5
MIN_REQUESTS = 300
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
    healed_at: float | None = None  # when `healed()` first said yes; None: never


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


def _done(run: Run, min_requests: int) -> bool:
    if run.healed_at is None or len(run.outcomes) < min_requests:
        return False
    tail = run.outcomes[-HEALED_OK:]
    return len(tail) == HEALED_OK and all(o.status == 200 and o.started >= run.healed_at
                                          for o in tail)


async def _load(url: str, make: MakeRequest, kill: Callable[[], None],
                healed: Callable[[], bool], heal_within_s: float, min_requests: int) -> Run:
    run = Run()
    t0 = time.monotonic()
    counter = iter(range(MAX_REQUESTS))
    enough_ok, stop = asyncio.Event(), asyncio.Event()

    async def worker(client: httpx.AsyncClient) -> None:
        for n in counter:
            if stop.is_set():
                return
            run.outcomes.append(await _one(client, n, t0, make))
            if sum(o.status == 200 for o in run.outcomes) >= KILL_AFTER_OK:
                enough_ok.set()
            # The deadline is for a load that never gets its clean tail. One that has it keeps
            # going until min_requests (bounded by MAX_REQUESTS): on a loaded machine the same
            # count takes longer, and a count reached in a fixed time would be a speed check.
            given_up = (run.killed_at and time.monotonic() - t0 > run.killed_at + 2 * heal_within_s
                        and not _done(run, 0))
            if _done(run, min_requests) or given_up:
                stop.set()
        stop.set()  # MAX_REQUESTS sent

    async def killer() -> None:
        await asyncio.wait({asyncio.ensure_future(enough_ok.wait()),
                            asyncio.ensure_future(stop.wait())},
                           return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            return
        await asyncio.to_thread(kill)
        run.killed_at = time.monotonic() - t0
        while not stop.is_set():
            if await asyncio.to_thread(healed):
                run.healed_at = time.monotonic() - t0
                return
            if time.monotonic() - t0 > run.killed_at + heal_within_s:
                stop.set()  # never healed: the test fails on healed_at None
                return
            await asyncio.sleep(HEAL_POLL_S)

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await asyncio.gather(killer(), *(worker(client) for _ in range(CONCURRENCY)))
    return run


def run_with_fault(url: str, make: MakeRequest, kill: Callable[[], None],
                   healed: Callable[[], bool], *, heal_within_s: float = HEAL_WITHIN_S,
                   min_requests: int = MIN_REQUESTS) -> Run:
    assert url.startswith("http://127.0.0.1:"), "fault load targets loopback only"
    return asyncio.run(_load(url, make, kill, healed, heal_within_s, min_requests))


def figures(run: Run) -> dict[str, float | None]:
    failed = [o for o in run.outcomes if o.status != 200]
    after = [o for o in failed if o.ended >= run.killed_at]
    return {"requests": len(run.outcomes), "failed": len(failed),
            "failed_pct": round(100.0 * len(failed) / max(1, len(run.outcomes)), 2),
            "killed_at_s": round(run.killed_at, 2),
            "healed_after_kill_s": (round(run.healed_at - run.killed_at, 2)
                                    if run.healed_at is not None else None),
            "recovery_s": round(max((o.ended for o in after), default=run.killed_at)
                                - run.killed_at, 2),
            "slowest_failure_s": round(max((o.ended - o.started for o in failed), default=0), 2)}


def back_to_full_service(run: Run, heal_within_s: float = HEAL_WITHIN_S) -> bool:
    """The heal event came, the load ended on HEALED_OK successes in a row sent after it, and
    no request failed later than `heal_within_s` after the kill."""
    return _done(run, 0) and figures(run)["recovery_s"] <= heal_within_s
