"""Missing prerequisites skip locally and fail under CI=true (pytest and `make browser`)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = '''
import pytest
from tests.prerequisites import require

require(False, "the frobnicator is missing", "apt-get install frobnicator")

def test_needs_it():
    pass
'''


def pytest_run(args: list[str], *, cwd: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(REPO)
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    return tmp_path


def test_missing_prerequisite_skips_with_the_fix_outside_ci(sample: Path) -> None:
    done = pytest_run(["-p", "tests.prerequisites", "test_sample.py"], cwd=sample, ci=False)
    assert done.returncode in (0, 5), done.stdout  # 5: the module's only test was skipped
    assert "1 skipped" in done.stdout and "apt-get install frobnicator" in done.stdout


def test_missing_prerequisite_fails_the_run_under_ci(sample: Path) -> None:
    done = pytest_run(["-p", "tests.prerequisites", "test_sample.py"], cwd=sample, ci=True)
    assert done.returncode == pytest.ExitCode.INTERRUPTED, done.stdout  # a collection error
    assert "CI=true" in done.stdout and "the frobnicator is missing" in done.stdout


def test_any_skip_fails_a_ci_run(tmp_path: Path) -> None:
    (tmp_path / "test_skips.py").write_text(
        "import pytest\n\ndef test_ok():\n    pass\n\n"
        "def test_skipped():\n    pytest.skip('not today')\n")
    assert pytest_run(["-p", "tests.prerequisites", "test_skips.py"], cwd=tmp_path, ci=False).returncode == 0
    done = pytest_run(["-p", "tests.prerequisites", "test_skips.py"], cwd=tmp_path, ci=True)
    assert done.returncode == 1, done.stdout
    assert "1 test(s) skipped" in done.stdout


def test_only_the_opt_in_external_milvus_target_may_skip_under_ci(tmp_path: Path) -> None:
    """The one exception: skips of `external_milvus` tests pass a CI run, visibly; a skip of
    anything else in the same run still fails it."""
    (tmp_path / "test_opt_in.py").write_text(
        "import pytest\n\n@pytest.mark.external_milvus\ndef test_far():\n"
        "    pytest.skip('LOOKALIKE_TEST_MILVUS_URI is not set')\n\ndef test_ok():\n    pass\n")
    done = pytest_run(["-p", "tests.prerequisites", "test_opt_in.py"], cwd=tmp_path, ci=True)
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout and "LOOKALIKE_TEST_MILVUS_URI is not set" in done.stdout
    assert "1 test(s) of the opt-in external Milvus target skipped" in done.stdout
    (tmp_path / "test_other.py").write_text(
        "import pytest\n\ndef test_skipped():\n    pytest.skip('not today')\n")
    both = pytest_run(["-p", "tests.prerequisites", "test_opt_in.py", "test_other.py"],
                      cwd=tmp_path, ci=True)
    assert both.returncode == 1 and "CI=true: 1 test(s) skipped" in both.stdout, both.stdout


def test_browser_tests_without_chromium_fail_collection_under_ci(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The real module and its real check; only the chromium path points nowhere.
    monkeypatch.setenv("LOOKALIKE_CHROMIUM", str(tmp_path / "no-chromium"))
    args = ["--collect-only", "tests/e2e/test_web.py"]
    # Both at once: each collection imports the e2e tier's whole stack (seconds of imports).
    with ThreadPoolExecutor(2) as pool:
        local, ci = pool.map(lambda ci: pytest_run(args, cwd=REPO, ci=ci), (False, True))
    assert "no-chromium is missing" in local.stdout and local.returncode in (0, 5), local.stdout
    assert ci.returncode not in (0, 5), ci.stdout
    assert "CI=true" in ci.stdout and "apt-get install chromium" in ci.stdout


@pytest.mark.parametrize(("ci", "code"), [(False, 0), (True, 1)])
def test_make_browser_says_what_to_install_and_fails_under_ci(tmp_path: Path, ci: bool,
                                                              code: int) -> None:
    # An empty PATH: no apt-get to install with, as on a machine that is not Debian.
    env = {"PATH": str(tmp_path), "LOOKALIKE_CHROMIUM": str(tmp_path / "no-chromium"),
           **({"CI": "true"} if ci else {})}
    done = subprocess.run(["/bin/bash", str(REPO / "scripts" / "ensure_browser.sh")], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == code, done.stdout + done.stderr
    assert "no-chromium" in done.stdout + done.stderr
    assert "Chromium and the DejaVu fonts" in done.stdout + done.stderr


def test_make_browser_shows_why_an_install_failed(tmp_path: Path) -> None:
    # Root with an apt-get that fails, as with no network or a bad mirror.
    for name, body in (("id", "echo 0"), ("apt-get", 'echo "E: mirror unreachable ($*)" >&2; exit 100')):
        (tmp_path / name).write_text(f"#!/bin/sh\n{body}\n")
        (tmp_path / name).chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "LOOKALIKE_CHROMIUM": str(tmp_path / "no-chromium")}
    done = subprocess.run(["/bin/bash", str(REPO / "scripts" / "ensure_browser.sh")], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "'apt-get update' failed" in done.stderr and "E: mirror unreachable (update)" in done.stderr
