"""Prerequisites of a test tier, and the rule for when one is missing.

Locally a missing prerequisite (Chromium, playwright) skips, with the fix in the reason. Under
CI=true it fails the run: a CI run that passed by not running a tier tells nobody anything.
tests/conftest.py re-exports the hook below, so a skip from anywhere also fails a CI run.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require(ok: bool, what: str, fix: str) -> None:
    """At module level: skip the module locally, fail it (as a collection error) under CI."""
    if ok:
        return
    message = f"{what} ({fix})"
    if in_ci():
        pytest.fail(f"CI=true, so this is an error, not a skip: {message}", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI, a run with skipped tests fails, whatever skipped them."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if in_ci() and skipped and session.exitstatus == pytest.ExitCode.OK:
        reporter.write_line(f"CI=true: {len(skipped)} test(s) skipped; a CI run must run every "
                            "test (see the skip reasons above for what to install)", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
