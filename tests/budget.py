"""A time budget for a whole tier, opt-in: `pytest tests/unit -p tests.budget --budget-s 60`
(`make test-unit` does). Never a timed assertion inside a test: the session reports its wall
and CPU seconds and the machine's load, and fails only past the budget given on the command
line, so a loaded machine (the CPU figure and the load say so) is told apart from a slow tier."""

from __future__ import annotations

import os
import resource
import time

import pytest


def _cpu_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


# From this plugin's import (`-p` loads it before the conftests): their imports count too.
_start = {"wall": time.perf_counter(), "cpu": _cpu_s()}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--budget-s", type=float, default=None,
                     help="fail the session when its wall time exceeds this many seconds")


_verdict: dict[str, object] = {}


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    wall, cpu = time.perf_counter() - _start["wall"], _cpu_s() - _start["cpu"]
    budget = session.config.getoption("--budget-s")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    over = budget is not None and wall > budget
    _verdict.update(over=over, line=(
        f"tier time: {wall:.1f} s wall, {cpu:.1f} s CPU (with children), load {load} on "
        f"{os.cpu_count()} CPUs" + (f"; budget {budget:g} s" if budget else "")
        + (": EXCEEDED" if over else "")))
    if over and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _verdict:
        terminalreporter.write_sep("-", str(_verdict["line"]), red=bool(_verdict["over"]),
                                   green=not _verdict["over"])
