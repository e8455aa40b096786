"""Building the wheel from a copy of the sources, and a venv that has it installed for real
(not editable), for tests/integration/test_packaging.py and tests/e2e/test_installed_wheel.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What a build must not see: local state and caches (top-level only: lookalike/catalog/data
# is source, the very mistake the old .gitignore's `data/` made).
TOP_LEVEL_STATE = {".git", ".venv", "data", "artifacts", "build", "bench"}
CACHES = shutil.ignore_patterns("*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache")


def _not_sources(directory: str, names: list[str]) -> set[str]:
    top = TOP_LEVEL_STATE & set(names) if Path(directory) == REPO else set()
    return top | CACHES(directory, names)


def build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=_not_sources)
    # --no-build-isolation: the test environment's setuptools builds it, no index needed.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
                   check=True, timeout=240)
    (wheel,) = (tmp / "dist").glob("lookalike-*.whl")
    return wheel


def venv_with(wheel: Path, where: Path) -> Path:
    """A new venv with the wheel installed (pip, not editable); returns its python.

    Its dependencies are this environment's, read-only, through a .pth line (a second copy of
    torch and Ray is ~6 GB and minutes to install; what a wheel must carry is its own files).
    A .pth line only adds the folder to sys.path: the editable install's finder there is not
    loaded, so `lookalike` can only come from the wheel."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True,
                   timeout=120)
    python = where / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([str(python), "-c", purelib], check=True, capture_output=True,
                               text=True, timeout=60).stdout.strip())
    (site / "_lookalike_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # This environment's pip, run by the new venv's python: installs into the new venv. Without
    # PYTHONPATH: a local Ray started earlier in the session puts the checkout there, and pip
    # would then take the checkout's lookalike for the wheel's and install nothing.
    # In the venv's folder, not the caller's: `-m` and `-c` put the working directory first on
    # sys.path, and a checkout there is a lookalike too.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, timeout=240, env=env, cwd=where)
    installed = subprocess.run([str(python), "-c", "import lookalike; print(lookalike.__file__)"],
                               check=True, capture_output=True, text=True, timeout=60, env=env,
                               cwd=where)
    assert installed.stdout.startswith(str(site)), installed.stdout  # the wheel's, or say so
    return python
