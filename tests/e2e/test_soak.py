"""Soak (`make test-scale`): the shared app under moderate mixed load, reads and writes, for
SOAK_MINUTES after a warm-up; not one request may fail and the resident memory of every
process `lookalike serve` started (Ray, the Serve replicas, milvus-lite, the front proxy) may
grow less than 10 % over the measured window. bench/soak.py's load and verdict, on the app as
a user runs it; `python -m bench.soak` runs the same for longer and on a larger catalogue.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from bench.soak import soak, verdict
from bench.stress import LoadConfig, parse_mix
from tests.e2e.conftest import ADMIN_KEY
from tests.e2e.served import App

pytestmark = [pytest.mark.slow, pytest.mark.scale]

SOAK_MINUTES = float(os.environ.get("LOOKALIKE_SOAK_MINUTES", "5"))
WARMUP_S = 60.0
RATE = 12.0  # requests/s: bench/soak.py's moderate rate
SAMPLE_S = 10.0
MAX_GROWTH = 0.10


@pytest.mark.timeout(int(WARMUP_S + SOAK_MINUTES * 60 + 300))
def test_memory_stays_flat_and_nothing_fails_under_a_steady_mix(app: App) -> None:
    cfg = LoadConfig(url=app.url, concurrency=4, duration_s=WARMUP_S + SOAK_MINUTES * 60,
                     mix=parse_mix("image=4,text=3,hybrid=1,similar=1,write=1"),
                     admin_key=ADMIN_KEY, rate=RATE, max_requests=10_000_000)
    report, samples = asyncio.run(soak(cfg, app.proc.pid, SAMPLE_S))
    result = verdict(report, samples, WARMUP_S, MAX_GROWTH)
    print(f"\nsoak ({SOAK_MINUTES} min after {WARMUP_S:.0f} s warm-up): {json.dumps(result)}")
    assert report["requests"] > 0 and len(samples) >= 2, (report, samples)
    assert result["failed_requests"] == 0, report["errors"]
    assert result["rss_growth"] is not None and result["rss_growth"] < MAX_GROWTH, result
