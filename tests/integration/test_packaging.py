"""A plain (non-editable) install carries everything the code loads at run time and installs no
generic top-level names: build the wheel from a copy of the sources, read its file list, install
it into a new venv and use it from an empty directory (tests/e2e/test_installed_wheel.py runs
`lookalike demo` from such an install)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.checks import all_of
from tests.wheel import REPO, build_wheel, venv_with

# The Ray side keeps its checkout layout and installs under the lookalike namespace.
MAPPED = {"deployments": "lookalike/deployments", "launch": "lookalike/launch",
          "pipelines": "lookalike/pipelines"}
ENTRY_MODULES = {"serve_app.py": "lookalike/app/serve_app.py",
                 "ingest_job.py": "lookalike/app/ingest_job.py"}
# Loaded at run time: the demo's photos, the query vocabularies (every default search), the
# quality harness's queries, the page, the Grafana dashboard, the Serve configs (the CLI's).
DATA_DIRS = ["lookalike/catalog/data", "lookalike/query/data", "lookalike/eval/data",
             "lookalike/web", "lookalike/grafana"]
SERVE_CONFIGS = {"serve_config.yaml", "serve_config.gpu.yaml"}


def expected_files() -> set[str]:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    want = {f for f in tracked if f.startswith("lookalike/") and f.endswith(".py")}
    for folder, installed in MAPPED.items():
        want |= {installed + f[len(folder):] for f in tracked
                 if f.startswith(folder + "/") and f.endswith(".py")}
    want |= set(ENTRY_MODULES.values()) | {f"lookalike/app/{c}" for c in SERVE_CONFIGS}
    want |= {f for f in tracked if any(f.startswith(d + "/") for d in DATA_DIRS)}
    return want


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_holds_every_module_and_data_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    want = expected_files()
    assert len(want) > 100 and {"lookalike/query/data/colors.json", "lookalike/web/index.html",
                                "lookalike/eval/data/demo_queries.jsonl"} <= want
    assert not want - names, sorted(want - names)


def test_the_wheel_installs_nothing_but_lookalike(wheel: Path) -> None:
    tops = {n.split("/", 1)[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"lookalike", "lookalike-0.1.0.dist-info"}, tops


@pytest.fixture(scope="module")
def python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a new venv with the wheel installed."""
    return venv_with(wheel, tmp_path_factory.mktemp("venv") / "v")


def without_repo() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.mark.timeout(300)
def test_a_plain_install_runs_from_an_empty_directory(
        python: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    site = str(python.parent.parent)
    code = """
import importlib.util, json
import lookalike, lookalike.launch.serving, lookalike.pipelines.ingest, lookalike.app.serve_app
from lookalike.catalog import demo
from lookalike.cli import serve_config_path
from lookalike.query.understanding import QueryUnderstanding
from lookalike.api.app import WEB_DIR
from lookalike.banner import grafana_dashboard
imgs, _ = demo.load_source(1000, split="test", source="vendored")
# The curated vocabularies (package data) map "crimson" and "frock" onto the catalogue's values.
parsed = QueryUnderstanding().parse("crimson frock under 60",
                                    {"color": {"red": 1}, "category": {"dress": 1}})
print(json.dumps({
    "files": [m.__file__ for m in (lookalike, lookalike.launch.serving,
                                   lookalike.pipelines.ingest, lookalike.app.serve_app)],
    "generic": [n for n in ("launch", "pipelines", "deployments", "serve_app", "ingest_job")
                if importlib.util.find_spec(n) is not None],
    "config": str(serve_config_path()), "page": str(WEB_DIR / "index.html"),
    "grafana": grafana_dashboard(), "photos": len(imgs),
    "parsed": [parsed.colors, parsed.categories, parsed.max_price]}))
"""
    empty = tmp_path_factory.mktemp("empty")
    out = subprocess.run([str(python), "-c", code], cwd=empty, env=without_repo(),
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-4000:]
    import json

    got = json.loads(out.stdout.strip().splitlines()[-1])
    all_of(got["files"], lambda f: f.startswith(site), "package files")
    assert got["generic"] == []
    for key in ("config", "page", "grafana"):
        assert got[key].startswith(site) and Path(got[key]).is_file(), got[key]
    assert got["photos"] == 1000
    assert got["parsed"] == [["red"], ["dress"], 60.0], got["parsed"]


@pytest.mark.parametrize("installed", ["wheel", "editable"])
def test_another_checkout_runs_its_own_ray_side(
        python: Path, tmp_path_factory: pytest.TempPathFactory, installed: str) -> None:
    """A copy of the checkout run where lookalike is installed, as `ray job submit --working-dir
    .` runs a job on a node with the wheel, or a second checkout beside an editable install of
    this one: the copy's code, core and Ray side alike, wins over the installed package's."""
    if installed == "editable":
        python = Path(sys.executable)  # this environment: editable install of this checkout
    checkout = tmp_path_factory.mktemp("working_dir")
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    for name in tracked:
        if name.endswith(".py") and not name.startswith(("tests/", "bench/", "scripts/")):
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            (checkout / name).write_bytes((REPO / name).read_bytes())
    code = ("import lookalike.pipelines.ingest as p, lookalike.app.ingest_job as j, "
            "lookalike.deployments.search_router as d; print(p.__file__, j.__file__, d.__file__)")
    out = subprocess.run([str(python), "-c", code], cwd=checkout, env=without_repo(),
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.split() == [str(checkout / "pipelines/ingest.py"),
                                  str(checkout / "ingest_job.py"),
                                  str(checkout / "deployments/search_router.py")], out.stdout
    helped = subprocess.run([str(python), "ingest_job.py", "--help"], cwd=checkout,
                            env=without_repo(), capture_output=True, text=True, timeout=240)
    assert helped.returncode == 0 and "--manifest" in helped.stdout, helped.stderr[-2000:]
