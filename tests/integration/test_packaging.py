"""A plain (non-editable) install carries the vendored data: build the wheel from a copy of the
sources, install it into an empty directory and build demo source images from there alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What a build must not see: local state and caches (top-level only: lookalike/catalog/data
# is source, the very mistake the old .gitignore's `data/` made).
TOP_LEVEL_STATE = {".git", ".venv", "data", "artifacts", "build", "bench"}
CACHES = shutil.ignore_patterns("*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache")


def not_sources(directory: str, names: list[str]) -> set[str]:
    top = TOP_LEVEL_STATE & set(names) if Path(directory) == REPO else set()
    return top | CACHES(directory, names)
DATA_FILES = {"lookalike/catalog/data/fashion_mnist_subset.npz",
              "lookalike/catalog/data/fashion_mnist_test_subset.npz",
              "lookalike/catalog/data/LICENSE", "lookalike/catalog/data/README.md"}


@pytest.mark.timeout(300)
def test_wheel_ships_the_vendored_subsets_and_a_plain_install_reads_them(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=not_sources)
    # --no-build-isolation: the test environment's setuptools builds it, no index needed.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, timeout=240)
    (wheel,) = (tmp_path / "dist").glob("lookalike-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert DATA_FILES <= names, sorted(n for n in names if n.startswith("lookalike/catalog"))
    # The Ray side beside the core: the CLI, Ray workers and `-m ingest_job` import these.
    assert {"pipelines/ingest.py", "launch/serving.py", "launch/local_ray.py", "launch/jobs.py",
            "deployments/observability.py", "serve_app.py", "ingest_job.py"} <= names

    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:  # a wheel is installed by unpacking it
        zf.extractall(target)
    code = ("import lookalike.catalog.demo as d; "
            "imgs, labels = d.load_source(1000, split='test', source='vendored'); "
            "print(d.__file__); print(imgs.shape, len(d.load_source(3000, source='vendored')[0]))")
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True, timeout=60).stdout.splitlines()
    assert out[0].startswith(str(target)), out  # the installed copy, not the source tree
    assert out[1] == "(1000, 28, 28) 3000"
