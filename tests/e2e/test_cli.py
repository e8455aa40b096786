"""The `lookalike` command for real, as a user runs it: the tier's shared app
(tests/e2e/conftest.py) is `python -m lookalike.cli serve` in its own process group on a private
local Ray, filled by `lookalike ingest`; here its banner, the page before and after the ingest,
the ingest job, `status`, and last (marker `stops_the_app`) a Ctrl-C (`lookalike demo` stopped
by `lookalike stop` runs from an installed wheel: tests/e2e/test_installed_wheel.py). Every
process the command started must be gone afterwards (read from the process table); how long a
stop took is printed, never asserted.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from lookalike.dashboard import read_token
from tests.e2e.conftest import COLLECTION, N_PRODUCTS, BeforeIngest, page_texts
from tests.e2e.served import STOP_TIMEOUT_S, App, cli, port_open

pytestmark = pytest.mark.slow


def browser_page(app: App) -> dict[str, object]:
    page = page_texts(app.url)
    if page is None:
        pytest.skip("Chromium or playwright missing (`make browser`)")
    return page


def test_banner_gives_a_dashboard_url_and_a_sign_in_that_work(app: App) -> None:
    banner = app.text()
    (dash,) = [row for row in banner.splitlines() if row.strip().startswith("Ray dashboard:")]
    assert app.dashboard in dash
    (signin,) = [row for row in banner.splitlines() if row.strip().startswith("sign in:")]
    token_file = signin.split("paste the token from ", 1)[1].split(" into ", 1)[0]
    token = Path(token_file).read_text().strip()
    # The dashboard refuses without the token and opens with the one the banner points at.
    assert httpx.get(app.dashboard + "/api/version", timeout=10).status_code == 401
    resp = httpx.get(app.dashboard + "/api/version",
                     headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert "Prometheus scrape:" in banner and "Grafana dashboard:" in banner


def test_the_local_ray_is_on_loopback(app: App) -> None:
    nodes = httpx.get(app.dashboard + "/nodes?view=summary", timeout=10,
                      headers={"Authorization": f"Bearer {read_token()}"}).json()
    assert [n["raylet"]["nodeManagerAddress"] for n in nodes["data"]["summary"]] == ["127.0.0.1"]


def test_an_empty_catalogue_page_says_how_to_load_one(before_ingest: BeforeIngest) -> None:
    # Seen on the running app before the ingest (the session's `before_ingest` fixture).
    assert before_ingest.info["products"] == 0
    page = before_ingest.page
    if page is None:
        pytest.skip("Chromium or playwright missing (`make browser`)")
    assert page["line"].startswith("0 products searchable")
    assert "no catalogue ingest yet" in page["line"]
    assert page["empty_notice"] and not page["welcome"]
    assert "lookalike ingest" in page["notice_text"]


def test_ingest_runs_as_a_job_on_the_running_app(app: App,
                                                  ingest: subprocess.CompletedProcess) -> None:
    # `lookalike ingest MANIFEST` ran in the session's `ingest` fixture, on this app.
    assert "submitted to the running app's Ray" in ingest.stdout
    # The job is in the dashboard's job list (what its Jobs page shows), and succeeded.
    jobs = httpx.get(app.dashboard + "/api/jobs/", timeout=10,
                     headers={"Authorization": f"Bearer {read_token()}"}).json()
    assert [j["status"] for j in jobs if (j.get("submission_id") or "").startswith(
        "lookalike-ingest-")] == ["SUCCEEDED"]
    info = httpx.get(app.url + "/v1/info", timeout=10).json()
    assert info["products"] == N_PRODUCTS
    assert info["last_ingest"]["written"] == N_PRODUCTS
    assert info["last_ingest"]["manifest"] == "manifest.jsonl"


def test_the_page_shows_products_model_and_last_ingest(app: App) -> None:
    page = browser_page(app)
    assert page["line"].startswith(f"{N_PRODUCTS} products searchable")
    assert "model tf_efficientnet_lite0 + all-MiniLM-L6-v2" in page["line"]
    assert "catalogue ingested" in page["line"]
    assert not page["empty_notice"] and page["welcome"]


def test_status_reports_store_products_serve_and_dashboards(app: App) -> None:
    env = app.env
    done = cli(env, "status")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"{app.url} ready" in out
    assert f"{COLLECTION}: {N_PRODUCTS} products" in out
    assert "tf_efficientnet_lite0:packaged@" in out  # the model version in use
    assert f"manifest.jsonl (catalog:default): read {N_PRODUCTS}, written {N_PRODUCTS}" in out
    assert "Serve app 'lookalike':" in out and "RUNNING" in out
    for deployment in ("ImageEmbedderDeployment", "TextEmbedderDeployment", "SearchRouter"):
        (row,) = [r for r in out.splitlines() if r.strip().startswith(deployment)]
        assert "HEALTHY" in row and "RUNNING" in row
    assert app.dashboard in out and env["LOOKALIKE_METRICS_PORT"] in out


@pytest.mark.stops_the_app  # after every other test of the session (tests/e2e/conftest.py)
@pytest.mark.timeout(STOP_TIMEOUT_S + 30)
def test_ctrl_c_stops_everything_and_says_what(app: App) -> None:
    env = app.env
    app.snapshot()
    assert app.tree, "the serve command started no process?"
    os.killpg(app.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    took = app.wait_exit()
    print(f"\nCtrl-C to exit of `lookalike serve`: {took:.1f} s "
          f"({len(app.tree)} processes started)")
    assert app.proc.returncode == 0
    out = app.text()
    assert "stopping lookalike (Ctrl-C):" in out
    assert "the Serve app" in out and "milvus-lite on 127.0.0.1:" in out
    assert app.leftovers() == []
    for port in ("LOOKALIKE_PORT", "LOOKALIKE_DASHBOARD_PORT", "LOOKALIKE_LITE_PORT"):
        assert not port_open(env[port]), f"{port} still answers"
    assert cli(env, "status").returncode == 1
