"""Missing prerequisites skip locally and fail under CI=true (pytest and `make browser`)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass
class Run:
    returncode: int
    stdout: str


def pytest_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: list[str], *,
               ci: bool) -> Run:
    """A pytest run in this process (pytester): the plugin's hooks on a session of their own,
    without the second or so that a new interpreter and its plugins cost per run."""
    if ci:
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)
    result = pytester.runpytest_inprocess("-q", "-rs", "-p", "no:cacheprovider", *args)
    return Run(int(result.ret), result.stdout.str())


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Run]:
    return lambda args, *, ci: pytest_run(pytester, monkeypatch, args, ci=ci)


def test_missing_prerequisite_skips_with_the_fix_outside_ci(pytester: pytest.Pytester,
                                                           run: Callable[..., Run]) -> None:
    pytester.makepyfile(test_sample=SAMPLE)
    done = run(["-p", "tests.prerequisites", "test_sample.py"], ci=False)
    assert done.returncode in (0, 5), done.stdout  # 5: the module's only test was skipped
    assert "1 skipped" in done.stdout and "apt-get install frobnicator" in done.stdout


def test_missing_prerequisite_fails_the_run_under_ci(pytester: pytest.Pytester,
                                                     run: Callable[..., Run]) -> None:
    pytester.makepyfile(test_sample=SAMPLE)
    done = run(["-p", "tests.prerequisites", "test_sample.py"], ci=True)
    assert done.returncode == pytest.ExitCode.INTERRUPTED, done.stdout  # a collection error
    assert "CI=true" in done.stdout and "the frobnicator is missing" in done.stdout


def test_any_skip_fails_a_ci_run(pytester: pytest.Pytester, run: Callable[..., Run]) -> None:
    pytester.makepyfile(test_skips=(
        "import pytest\n\ndef test_ok():\n    pass\n\n"
        "def test_skipped():\n    pytest.skip('not today')\n"))
    assert run(["-p", "tests.prerequisites", "test_skips.py"], ci=False).returncode == 0
    done = run(["-p", "tests.prerequisites", "test_skips.py"], ci=True)
    assert done.returncode == 1, done.stdout
    assert "1 test(s) skipped" in done.stdout


def test_only_the_opt_in_external_milvus_target_may_skip_under_ci(
        pytester: pytest.Pytester, run: Callable[..., Run]) -> None:
    """The one exception: skips of `external_milvus` tests pass a CI run, visibly; a skip of
    anything else in the same run still fails it."""
    pytester.makeini("[pytest]\nmarkers =\n    external_milvus: the opt-in target\n")
    pytester.makepyfile(test_opt_in=(
        "import pytest\n\n@pytest.mark.external_milvus\ndef test_far():\n"
        "    pytest.skip('LOOKALIKE_TEST_MILVUS_URI is not set')\n\ndef test_ok():\n    pass\n"))
    done = run(["-p", "tests.prerequisites", "test_opt_in.py"], ci=True)
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout and "LOOKALIKE_TEST_MILVUS_URI is not set" in done.stdout
    assert "1 test(s) of the opt-in external Milvus target skipped" in done.stdout
    pytester.makepyfile(test_other="import pytest\n\ndef test_skipped():\n    pytest.skip('not today')\n")
    both = run(["-p", "tests.prerequisites", "test_opt_in.py", "test_other.py"], ci=True)
    assert both.returncode == 1 and "CI=true: 1 test(s) skipped" in both.stdout, both.stdout


# The browser modules' own check, collected for real: tests/integration/test_browser_prerequisite.py
# (each collection imports the e2e tier's whole stack).


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
