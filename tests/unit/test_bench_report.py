"""bench/report.py never reports numbers a benchmark did not just produce."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import report
from bench.report import Bench, markdown, run_bench

WRITER = "import json, sys; open(sys.argv[1], 'w').write(json.dumps({'P1': 0.9, 'P2_ms': 1.5}))"


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    monkeypatch.setattr(report, "ROOT", tmp_path)
    return tmp_path


def bench(tmp_path: Path, body: str | None) -> Bench:
    script = tmp_path / "b.py"
    if body is not None:
        script.write_text(body)
    return Bench("p1_p2", "P1/P2", str(script), "out.json")


def test_missing_script_is_reported_missing(results: Path) -> None:
    assert run_bench(bench(results, None), [], quick=True)["status"] == "missing"


def test_fresh_json_is_included(results: Path) -> None:
    out = run_bench(bench(results, WRITER), [str(results / "out.json")], quick=True)
    assert out["status"] == "ok" and out["result"] == {"P1": 0.9, "P2_ms": 1.5}
    assert len(out["load_avg_before"]) == 3


def test_stale_json_from_an_older_run_is_not_reused(results: Path) -> None:
    (results / "out.json").write_text(json.dumps({"P1": 123}))
    os.utime(results / "out.json", (1, 1))
    out = run_bench(bench(results, "print('did nothing')"), [], quick=True)
    assert out["status"] == "failed" and "no fresh" in out["detail"] and "result" not in out


def test_a_failing_benchmark_is_failed_with_its_output(results: Path) -> None:
    out = run_bench(bench(results, "raise SystemExit('boom: no GPU')"), [], quick=True)
    assert out["status"] == "failed" and "exit code 1" in out["detail"]
    assert "boom: no GPU" in out["log_tail"]


def test_markdown_lists_machine_and_statuses(results: Path) -> None:
    ok = run_bench(bench(results, WRITER), [str(results / "out.json")], quick=True)
    md = markdown({"generated": "now", "command": "python -m bench.report", "quick": True,
                   "machine": {"cpu": "AMD EPYC", "cores": 2},
                   "benches": {"p1_p2": ok, "p5": {"status": "missing", "detail": "not here"}}})
    assert "| cpu | AMD EPYC |" in md and "P1 = 0.9" in md and "Status: **missing**" in md


def test_the_p3_headline_says_the_steady_ratio_and_the_warm_up_it_is_judged_by() -> None:
    run = {"products": 2000, "ingest_images_per_s": 24.7, "ratio_vs_image_model": 0.32,
           "steady_images_per_s": 46.8, "steady_ratio_vs_image_model": 0.61,
           "summary": {"warmup_s": 29.8}}
    (line,) = report.headline("p3", {"runs": [run]})
    assert "steady 46.8 (0.61; target >= 0.8)" in line and "warm-up 29.8 s (target <= 10 s)" in line
