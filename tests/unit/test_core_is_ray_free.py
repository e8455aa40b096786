"""The core (`lookalike/`) is Ray-free: every one of its modules imports in an interpreter where
`ray` cannot be imported at all. Ray lives in deployments/, pipelines/ and launch/ (installed as
lookalike.deployments, lookalike.pipelines and lookalike.launch: lookalike/__init__.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# A fresh interpreter with a meta-path finder that refuses `ray` and every `ray.*`: a module
# that imports Ray at import time fails here, whatever this test process has imported.
SCRIPT = r"""
import importlib, pkgutil, sys

class NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"ray is not importable in the core: {name}")
        return None

sys.meta_path.insert(0, NoRay())
import lookalike

names = ["lookalike"] + [m.name for m in pkgutil.walk_packages(lookalike.__path__, "lookalike.")]
failed = []
for name in names:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
assert not [m for m in sys.modules if m == "ray" or m.startswith("ray.")]
print(len(names))
print("\n".join(failed))
"""


def test_every_core_module_imports_without_ray() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-4000:]
    count, *failed = out.stdout.strip().splitlines()
    assert not failed, "\n".join(failed)
    # The walk found the packages' modules, not just the top level (a broken walk tests nothing).
    modules = {p.relative_to(REPO) for p in (REPO / "lookalike").rglob("*.py")}
    assert int(count) == len(modules), (count, len(modules))


def test_the_finder_does_refuse_ray() -> None:
    """The guard itself works: the same finder makes `import ray` fail."""
    code = SCRIPT.split("import lookalike")[0] + "import ray\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "ray is not importable in the core" in out.stderr


# The one core module allowed to reach the Ray side, inside its functions: the `lookalike`
# command, which starts the local Ray, deploys the app and submits the ingest job (launch/).
ENTRY_POINTS = {"lookalike/cli.py"}
RAY_SIDE = ("ray", "launch", "pipelines", "deployments", "serve_app", "ingest_job",
            "lookalike.launch", "lookalike.pipelines", "lookalike.deployments", "lookalike.app")


def test_no_core_module_imports_the_ray_side_even_lazily() -> None:
    """Imports inside functions count too: a lazy `import ray` is still Ray in the core."""
    import ast

    found = []
    for path in sorted((REPO / "lookalike").rglob("*.py")):
        rel = str(path.relative_to(REPO))
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or "", *(f"{node.module}.{a.name}" for a in node.names)]
                     if isinstance(node, ast.ImportFrom) and not node.level else [])
            for name in names:
                parts = name.split(".")
                if {parts[0], ".".join(parts[:2])} & set(RAY_SIDE) and rel not in ENTRY_POINTS:
                    found.append(f"{rel}:{node.lineno} imports {name}")
    assert not found, "\n".join(found)
