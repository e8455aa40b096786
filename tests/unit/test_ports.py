"""lookalike.ports: picks stay out of the range outgoing connections take their ports from."""

from __future__ import annotations

import socket

import pytest

from lookalike import ports


def test_picks_are_free_distinct_and_below_the_ephemeral_range() -> None:
    top = ports.ephemeral_start()
    picked = [ports.free_port() for _ in range(50)]
    assert len(set(picked)) == len(picked)
    assert all(ports.LOWEST <= p < top for p in picked), (top, picked)
    for p in picked:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))  # the caller can bind what it was given


def test_a_bound_port_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        choices = iter([busy, busy])

        class Picks:
            def randrange(self, lo: int, hi: int) -> int:
                return next(choices, lo + 7)

        monkeypatch.setattr(ports, "_rng", Picks())
        monkeypatch.setattr(ports, "ephemeral_start", lambda: busy + 2000)
        monkeypatch.setattr(ports, "LOWEST", busy - 10)
        ports._handed_out.discard(busy - 3)
        assert ports.free_port() == busy - 3


def test_an_ephemeral_range_reaching_low_falls_back_to_the_kernels_pick(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "ephemeral_start", lambda: ports.LOWEST + 10)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports.free_port()))


def test_the_range_is_read_from_the_kernel(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "range").write_text("40000\t60999\n")
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", tmp_path / "range")
    assert ports.ephemeral_start() == 40000
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", tmp_path / "missing")
    assert ports.ephemeral_start() == 32768
