"""Every benchmark under bench/ imports: none is run by the suite, so an import broken by a
refactor would otherwise show only when someone runs `make report` (p3 and p6 once did)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_bench_module_imports() -> None:
    names = sorted(p.stem for p in (REPO / "bench").glob("*.py") if p.stem != "__init__")
    assert {"p1_p2_serve", "p3_ingest", "report"} <= set(names)
    # One child process for all: their imports (torch, Ray) stay out of the test process.
    code = "import importlib, sys\nfor n in sys.argv[1:]: importlib.import_module('bench.' + n)"
    done = subprocess.run([sys.executable, "-c", code, *names], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
