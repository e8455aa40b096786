"""The browser tier's module collected for real without Chromium: a skip with the fix locally,
a collection error under CI=true (tests/prerequisites.py's rule; tests/unit/test_prerequisites.py
has the rule on a sample module). Here because each collection imports the e2e tier's stack."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def collect(args: list[str], *, ci: bool, chromium: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(PYTHONPATH=str(REPO), LOOKALIKE_CHROMIUM=str(chromium),
               **({"CI": "true"} if ci else {}))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "--collect-only", *args], check=False, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_browser_tests_without_chromium_fail_collection_under_ci(tmp_path: Path) -> None:
    # The real module and its real check; only the chromium path points nowhere.
    args, chromium = ["tests/e2e/test_web.py"], tmp_path / "no-chromium"
    # Both at once: each collection imports the e2e tier's whole stack (seconds of imports).
    with ThreadPoolExecutor(2) as pool:
        local, ci = pool.map(lambda ci: collect(args, ci=ci, chromium=chromium), (False, True))
    assert "no-chromium is missing" in local.stdout and local.returncode in (0, 5), local.stdout
    assert ci.returncode not in (0, 5), ci.stdout
    assert "CI=true" in ci.stdout and "apt-get install chromium" in ci.stdout
    assert pytest.ExitCode.INTERRUPTED == ci.returncode, ci.stdout  # a collection error
