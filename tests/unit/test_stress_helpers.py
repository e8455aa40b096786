"""The load generator's pure parts: target check, mix, percentiles, downtime."""

from __future__ import annotations

import pytest

from bench.stress import (
    LoadConfig,
    latency_summary,
    longest_gap,
    parse_mix,
    percentile,
    require_loopback,
)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:1/",
                                 "http://[::1]:80", "http://127.0.0.2:9"])
def test_loopback_targets_are_accepted(url: str) -> None:
    assert require_loopback(url) == url.rstrip("/")


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000", "http://example.com", "http://0.0.0.0:80",
                                 "http://192.168.1.1", "http://localhost.evil.com", "nonsense"])
def test_other_targets_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="non-loopback"):
        require_loopback(url)


def test_parse_mix() -> None:
    assert parse_mix("image=4, text=1,similar") == {"image": 4.0, "text": 1.0, "similar": 1.0}
    for bad in ("", "image=0", "video=1", "image=-1"):
        with pytest.raises(ValueError):
            parse_mix(bad)


def test_percentiles_nearest_rank() -> None:
    v = [float(x) for x in range(1, 101)]
    assert (percentile(v, 50), percentile(v, 95), percentile(v, 99), percentile(v, 100)) == \
        (50.0, 95.0, 99.0, 100.0)
    assert percentile([], 50) is None and percentile([3.0], 99) == 3.0
    assert latency_summary([]) == {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}


def test_longest_gap_counts_the_edges() -> None:
    assert longest_gap([1.0, 2.0, 2.5], 0.0, 10.0) == 7.5  # last success to the end
    assert longest_gap([4.0, 5.0], 0.0, 6.0) == 4.0  # start to the first success
    assert longest_gap([], 0.0, 3.0) == 3.0


def test_config_bounds() -> None:
    with pytest.raises(ValueError):
        LoadConfig(url="http://127.0.0.1:1", concurrency=0).check()
    with pytest.raises(ValueError):
        LoadConfig(url="http://127.0.0.1:1", duration_s=10_000).check()
    with pytest.raises(ValueError, match="admin"):
        LoadConfig(url="http://127.0.0.1:1", mix={"write": 1.0}).check()
