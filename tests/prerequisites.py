"""Prerequisites of a test tier, and the rule for when one is missing.

Locally a missing prerequisite (Chromium, playwright) skips, with the fix in the reason. Under
CI=true it fails the run: a CI run that passed by not running a tier tells nobody anything.
tests/conftest.py re-exports the hook below, so a skip from anywhere also fails a CI run.

One exception, and only one: the opt-in external-Milvus target of the store suite (tests marked
`external_milvus`, tests/integration/conftest.py). It needs a Milvus cluster that no CI machine
here has, so it runs only where LOOKALIKE_TEST_MILVUS_URI is set; its skips stay visible in the
summary (with their reason and a line of their own) and never fail a CI run. A skip of anything
else still does.
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


# The marker of the one opt-in target whose skips CI accepts (see above).
OPT_IN_MARK = "external_milvus"


def opt_in(report: object) -> bool:
    return OPT_IN_MARK in (getattr(report, "keywords", None) or {})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI, a run with skipped tests fails, whatever skipped them (but the opt-in target)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    every = reporter.stats.get("skipped", []) if reporter else []
    skipped = [r for r in every if not opt_in(r)]
    if reporter and len(skipped) < len(every):
        reporter.ensure_newline()
        reporter.write_line(f"{len(every) - len(skipped)} test(s) of the opt-in external Milvus "
                            "target skipped: LOOKALIKE_TEST_MILVUS_URI is not set (allowed under "
                            "CI=true, tests/prerequisites.py)", yellow=True)
    if in_ci() and skipped and session.exitstatus == pytest.ExitCode.OK:
        reporter.write_line(f"CI=true: {len(skipped)} test(s) skipped; a CI run must run every "
                            "test (see the skip reasons above for what to install)", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
