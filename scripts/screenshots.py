"""Screenshots for docs/observability.md "Watching it": the Ray dashboard's Serve and Jobs
pages and the search page, from a running `lookalike demo` (headless Chromium, Debian's).

    python scripts/screenshots.py [--out docs/screenshots]     (LOOKALIKE_* as for the demo)

The dashboard is signed in the way a browser is after its "Authentication Token" box: with the
cookie Ray sets for a valid token (ray-authentication-token).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from lookalike import runfile
from lookalike.config import Settings
from lookalike.dashboard import read_token

CHROMIUM = os.environ.get("LOOKALIKE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    p.add_argument("--query", default="red dress")
    args = p.parse_args(argv)
    run = runfile.read(Settings().data_dir)
    if run is None:
        print("no running `lookalike demo` for this data dir", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US")
        token = read_token()
        if token:
            ctx.add_cookies([{"name": "ray-authentication-token", "value": token,
                              "url": run.dashboard_url}])
        page = ctx.new_page()
        page.goto(f"{run.dashboard_url}/#/serve")
        page.get_by_text("SearchRouter").first.wait_for(timeout=60_000)
        page.wait_for_timeout(2000)
        page.screenshot(path=args.out / "ray-serve.png", full_page=True)
        page.goto(f"{run.dashboard_url}/#/jobs")
        page.get_by_text("lookalike-ingest").first.wait_for(timeout=60_000)
        page.wait_for_timeout(2000)
        page.screenshot(path=args.out / "ray-jobs.png", full_page=True)
        page.get_by_text("lookalike-ingest").first.click()
        page.wait_for_timeout(4000)
        page.screenshot(path=args.out / "ray-ingest-job.png", full_page=True)
        page.goto(run.app_url + "/")
        page.locator("#catalogue-line").wait_for(timeout=30_000)
        page.fill("#text-query", args.query)
        page.get_by_role("button", name="Search", exact=True).click()
        page.locator("#results .card").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=args.out / "search-page.png")
        browser.close()
    for name in ("ray-serve.png", "ray-jobs.png", "ray-ingest-job.png", "search-page.png"):
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
