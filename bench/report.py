"""One command for the benchmark report: P1-P3, P5, P9 and issue 29's one-client latency and
original-design comparison on this machine, one after the other.

    .venv/bin/python -m bench.report                 # full sizes (tens of minutes on 2 cores)
    .venv/bin/python -m bench.report --quick         # small sizes, to check the pipeline
    .venv/bin/python -m bench.report --only p5
    .venv/bin/python -m bench.report --only p9_one latency original   # issue 29's

Each benchmark runs as its own subprocess (never two at once: they would share the cores) and
writes its JSON under bench/results/; the report includes that JSON as written. A benchmark
whose script is missing, that fails, or that leaves no fresh JSON is reported as such - its
numbers are never filled in from an older run. Writes bench/results/report.json and report.md
(gitignored) with the machine's description and the load average around each run: the
machine may be shared, and a loaded machine is a different measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/report.py` as well as `python -m bench.report`
RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Bench:
    key: str
    title: str
    script: str  # path relative to ROOT
    result: str  # JSON it writes, relative to RESULTS
    full_args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ()
    timeout_s: float = 3600.0
    as_module: bool = False  # `python -m bench.<name>`: it imports bench.* as a package


BENCHES = (
    Bench("p1_p2", "P1/P2: Serve app vs raw models (image saturation, text latency overhead)",
          "bench/p1_p2_serve.py", "p1_p2.json", (), ("--products", "200", "--duration", "5",
                                                     "--concurrency", "8")),
    Bench("p3", "P3: ingest job throughput and memory", "bench/p3_ingest.py", "p3_ingest.json",
          (), ("--sizes", "200")),
    Bench("p5", "P5: lookalike (Ray Serve) vs one-process baseline, image search",
          "bench/p5_compare.py", "p5.json", (), ("--products", "300", "--duration", "10",
                                                 "--warmup", "5"), as_module=True),
    Bench("p9", "P9: the fixed shape's floor (the app's topology, no model, no app logic)",
          "bench/p9_floor.py", "p9_floor.json", (), ("--products", "200", "--duration", "5",
                                                     "--concurrency", "8")),
    # Issue 29's one-client latency: the floor first, which bench/latency.py reads.
    Bench("p9_one", "P9 one client: the floor's text and photo latency",
          "bench/p9_floor.py", "p9_floor_one_client.json", ("--one-client", "200"),
          ("--products", "200", "--one-client", "30")),
    Bench("latency", "One client: lookalike's text and photo p50 against their raw parts",
          "bench/latency.py", "latency_one_client.json", (),
          ("--products", "200", "--requests", "30")),
    Bench("original", "lookalike vs the original design (one WSGI process), photo search",
          "bench/original_compare.py", "original_compare.json", (),
          ("--products", "200", "--duration", "10", "--warmup", "3"), as_module=True),
)


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, Python and torch versions (torch read in a child: keep this light)."""
    from bench.common import host

    versions = subprocess.run(
        [sys.executable, "-c", ("import json, platform, torch, ray; print(json.dumps({"
                                "'python': platform.python_version(), 'torch': torch.__version__, "
                                "'ray': ray.__version__}))")],
        capture_output=True, text=True, timeout=120)
    info = json.loads(versions.stdout) if versions.returncode == 0 else {}
    return {**host(), **info,
            "platform": f"{os.uname().sysname} {os.uname().release}"}


def run_bench(b: Bench, extra: list[str], quick: bool) -> dict[str, Any]:
    script = ROOT / b.script
    if not script.exists():
        return {"status": "missing", "detail": f"{b.script} is not in this checkout"}
    args = [*(b.quick_args if quick else b.full_args), *extra]
    if b.as_module:
        cmd = [sys.executable, "-m", "bench." + Path(b.script).stem, *args]
    else:
        cmd = [sys.executable, b.script, *args]
    result = RESULTS / b.result
    log_path = RESULTS / f"report_{b.key}.log"
    started = time.time()
    load_before = os.getloadavg()
    print(f"\n=== {b.title}\n$ {shlex.join(cmd)}", flush=True)
    with log_path.open("w") as log:
        try:
            proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=b.timeout_s,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
            rc: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            rc = None
    out = {"command": shlex.join(cmd), "seconds": round(time.time() - started, 1), "rc": rc,
           "load_avg_before": [round(x, 2) for x in load_before],
           "load_avg_after": [round(x, 2) for x in os.getloadavg()],
           "log": str(log_path.relative_to(ROOT)),
           "log_tail": tail(log_path, 40)}
    fresh = result.exists() and result.stat().st_mtime >= started
    if rc == 0 and fresh:
        out.update(status="ok", result=json.loads(result.read_text()))
    else:
        why = "timed out" if rc is None else f"exit code {rc}"
        out.update(status="failed", detail=f"{why}; " + ("fresh JSON written" if fresh else
                                                        f"no fresh {b.result}"))
    print(f"--> {out['status']} in {out['seconds']} s", flush=True)
    return out


def tail(path: Path, n: int) -> str:
    lines = [ln for ln in path.read_text(errors="replace").splitlines()
             if ln.strip() and "Loading weights" not in ln]
    return "\n".join(lines[-n:])


def headline(key: str, r: dict[str, Any]) -> list[str]:
    """The few numbers each benchmark is judged by (read defensively: schemas are the owners')."""
    if key == "p1_p2":
        best = max(r.get("image_saturation", []), key=lambda run: run.get("qps", 0), default={})
        return [(f"P1 = {r.get('P1')} (target {r.get('P1_target')}; ceiling "
                 f"{r.get('raw_best_img_per_s')} img/s, {r.get('raw_best_config')})"),
                (f"CPU per image search outside the model = {best.get('cpu_ms_outside_model')} ms "
                 f"at c={best.get('concurrency')} (target <= 8 ms)"),
                (f"P2 = {r.get('P2_ms')} ms (target {r.get('P2_target')}); a repeated text "
                 f"{(r.get('text_search_http_repeated') or {}).get('p50_ms')} ms p50 against "
                 f"{(r.get('text_search_http') or {}).get('p50_ms')} first time")]
    if key == "p3":
        return [f"{run.get('products')} products: {run.get('ingest_images_per_s')} img/s end to end "
                f"({run.get('ratio_vs_image_model')} of the raw ceiling), steady "
                f"{run.get('steady_images_per_s')} ({run.get('steady_ratio_vs_image_model')}; target "
                f">= 0.8), warm-up {(run.get('summary') or {}).get('warmup_s')} s (target <= 10 s)"
                for run in r.get("runs", [])]
    if key == "p5":
        lk, bl = r.get("lookalike", {}), r.get("baseline", {})
        return [(f"lookalike {lk.get('qps')} QPS, p99 {lk.get('latency_ms', {}).get('p99')} ms; "
                 f"baseline {bl.get('qps')} QPS, p99 {bl.get('latency_ms', {}).get('p99')} ms"),
                (f"QPS ratio {r.get('qps_ratio')}, lookalike p99/p50 {r.get('p99_over_p50')} "
                 f"(target >= 1.3, p99 no worse, p99/p50 <= 1.5): "
                 f"{'met' if r.get('meets_target') else 'not met'}")]
    if key == "p9":
        return [f"{level}: {run.get('cpu_ms_outside_model')} ms of CPU per image search outside "
                f"the model at {run.get('qps')} QPS (target for the app <= 8 ms)"
                for level, run in (r.get("levels") or {}).items()]
    if key == "p9_one":
        return [f"floor, one client, {kind}: p50 {(r.get(kind) or {}).get('p50_ms')} ms, p99 "
                f"{(r.get(kind) or {}).get('p99_ms')} ms, request-path CPU "
                f"{(r.get(kind) or {}).get('request_path_cpu_ms')} ms" for kind in ("text", "photo")]
    if key == "latency":
        t = r.get("targets") or {}
        lines = [f"{kind} p50 {(t.get(kind) or {}).get('p50_ms')} ms = "
                 f"{(t.get(kind) or {}).get('over_parts')} x its raw parts, limit "
                 f"{(t.get(kind) or {}).get('limit_ms')} ms: "
                 f"{'met' if (t.get(kind) or {}).get('met') else 'not met'}"
                 for kind in ("text", "photo")]
        cpu = t.get("photo_cpu_above_floor")
        lines.append(f"photo CPU above the floor {cpu['ms']} ms (target <= {cpu['limit_ms']} ms): "
                     f"{'met' if cpu['met'] else 'not met'}" if cpu else
                     "photo CPU above the floor: no floor measured")
        return lines
    if key == "original":
        lk, og = r.get("lookalike", {}), r.get("original", {})
        return [(f"lookalike {lk.get('qps')} QPS, p99 {lk.get('p99_ms')} ms; original "
                 f"{og.get('qps')} QPS, p99 {og.get('p99_ms')} ms"),
                (f"QPS ratio {r.get('qps_ratio')} ({r.get('target')}): "
                 f"{'met' if r.get('met') else 'not met'}")]
    return []


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = ["# lookalike benchmark report", "",
             f"Generated {report['generated']} by `{report['command']}`"
             + (" (quick sizes)" if report["quick"] else ""), "",
             "| machine | |", "| --- | --- |",
             *(f"| {k} | {v} |" for k, v in m.items()), ""]
    for b in BENCHES:
        if b.key not in report["benches"]:
            continue
        r = report["benches"][b.key]
        lines += [f"## {b.title}", "", f"Status: **{r['status']}**"
                  + (f" - {r['detail']}" if r.get("detail") else ""), ""]
        if r["status"] == "missing":
            continue
        lines += [(f"Command: `{r['command']}` ({r['seconds']} s); load average before "
                   f"{r['load_avg_before']}, after {r['load_avg_after']}."), ""]
        if r["status"] == "ok":
            lines += [f"* {h}" for h in headline(b.key, r["result"])] + [""]
        lines += ["Output (tail):", "", "```", r["log_tail"], "```", ""]
        if r["status"] == "ok":
            lines += ["<details><summary>JSON</summary>", "", "```json",
                      json.dumps(r["result"], indent=2), "```", "", "</details>", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", nargs="+", choices=[b.key for b in BENCHES], default=None)
    p.add_argument("--quick", action="store_true", help="small sizes: checks the pipeline only")
    for b in BENCHES:
        p.add_argument(f"--{b.key.replace('_', '-')}-args", default="",
                       help=f"extra arguments for {b.script}")
    args = p.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "quick": args.quick,
        "command": shlex.join(["python", "-m", "bench.report", *(argv or sys.argv[1:])]),
        "machine": machine(), "benches": {}}
    for b in BENCHES:
        if args.only and b.key not in args.only:
            continue
        extra = shlex.split(getattr(args, f"{b.key}_args"))
        report["benches"][b.key] = run_bench(b, extra, args.quick)
        # Written after each benchmark, so an interrupted report keeps what finished.
        (RESULTS / "report.json").write_text(json.dumps(report, indent=2))
        (RESULTS / "report.md").write_text(markdown(report))
    print(f"\nwrote {RESULTS / 'report.md'} and report.json")
    for key, r in report["benches"].items():
        print(f"{key}: {r['status']}" + "".join(f"\n  {h}" for h in
                                                 headline(key, r.get("result", {}))
                                                 if r["status"] == "ok"))
    return 0 if all(r["status"] == "ok" for r in report["benches"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
