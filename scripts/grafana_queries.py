"""Evaluate every query of lookalike/grafana/lookalike-dashboard.json against a Prometheus that
scrapes a running lookalike, and say per panel whether it would show data.

    python scripts/grafana_queries.py --prometheus http://127.0.0.1:9090 [--screenshots DIR]

Grafana's variables are filled in as Grafana would with "All": $session -> .*,
$__rate_interval -> 1m. With --screenshots, a few panels' queries are also captured from
Prometheus' own graph page (headless Chromium). That is Prometheus drawing the dashboard's
queries, not Grafana drawing the dashboard: it shows the data the panels would get.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
from pathlib import Path

import httpx

DASHBOARD = Path(__file__).resolve().parents[1] / "lookalike/grafana/lookalike-dashboard.json"
SHOTS = {"Requests/s by type": "prometheus-requests-by-type.png",
         "Request latency (router, total)": "prometheus-request-latency.png",
         "Embedder batch size": "prometheus-batch-size.png"}


def fill(expr: str) -> str:
    return expr.replace('"$session"', '".*"').replace("$__rate_interval", "1m")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--prometheus", required=True)
    p.add_argument("--screenshots", type=Path)
    args = p.parse_args(argv)
    panels = json.loads(DASHBOARD.read_text())["panels"]
    empty = 0
    for panel in panels:
        counts = []
        for target in panel.get("targets", []):
            resp = httpx.get(f"{args.prometheus}/api/v1/query",
                             params={"query": fill(target["expr"])}, timeout=10).json()
            counts.append(len(resp["data"]["result"]) if resp.get("status") == "success" else -1)
        has_data = any(c > 0 for c in counts)
        empty += not has_data
        print(f"{panel['title']:<38} series per query {counts}  {'data' if has_data else 'EMPTY'}")
    if args.screenshots:
        from playwright.sync_api import sync_playwright

        args.screenshots.mkdir(parents=True, exist_ok=True)
        by_title = {pnl["title"]: pnl for pnl in panels}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=os.environ.get("LOOKALIKE_CHROMIUM", "/usr/bin/chromium"),
                args=["--headless=new", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 640})
            for title, name in SHOTS.items():
                # The panel's first query (a full page would put the fixed navbar mid-image).
                expr = fill(by_title[title]["targets"][0]["expr"])
                query = {"g0.expr": expr, "g0.tab": "0", "g0.range_input": "15m"}
                page.goto(f"{args.prometheus}/graph?{urllib.parse.urlencode(query)}")
                page.wait_for_timeout(4000)
                page.screenshot(path=args.screenshots / name)
                print(args.screenshots / name)
            browser.close()
    return 1 if empty else 0


if __name__ == "__main__":
    sys.exit(main())
