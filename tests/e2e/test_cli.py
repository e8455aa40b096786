"""The `lookalike` command for real, as a user runs it: `python -m lookalike.cli serve` in its
own process group on a private local Ray, then `ingest`, `status` and the page against it, a
Ctrl-C (`lookalike demo` stopped by `lookalike stop` runs from an installed wheel:
tests/e2e/test_installed_wheel.py). Every process the command started
must be gone afterwards (read from the process table); how long a stop took is printed, never
asserted.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lookalike import procs
from lookalike.catalog import demo
from lookalike.dashboard import read_token
from lookalike.ports import free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("LOOKALIKE_CHROMIUM", "/usr/bin/chromium"))
READY_TIMEOUT_S = 400
STOP_TIMEOUT_S = 60
N_PRODUCTS = 12


class App:
    """One `python -m lookalike.cli ...` (or another `lookalike` command: `command`, run in
    `cwd`) in its own session (a terminal's foreground group)."""

    def __init__(self, env: dict[str, str], args: list[str], log: Path, *,
                 command: tuple[str, ...] = (sys.executable, "-m", "lookalike.cli"),
                 cwd: Path = REPO) -> None:
        self.env, self.log = env, log
        self.out = log.open("w")
        self.proc = subprocess.Popen([*command, *args], cwd=cwd, env=env, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{env['LOOKALIKE_PORT']}"
        self.dashboard = f"http://127.0.0.1:{env['LOOKALIKE_DASHBOARD_PORT']}"
        self.tree: set[int] = set()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "lookalike is ready:" not in self.text():
            if self.proc.poll() is not None:
                pytest.fail(f"lookalike exited with {self.proc.returncode}:\n{self.text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"not ready in {READY_TIMEOUT_S} s:\n{self.text()[-4000:]}")
            self.snapshot()
            time.sleep(1)
        self.snapshot()

    def snapshot(self) -> None:
        """Everything the command has started so far (processes come and go: keep adding)."""
        self.tree.update(procs.descendants(self.proc.pid))

    def leftovers(self) -> list[str]:
        return [f"{p} {procs.command_line(p)[:160]}" for p in sorted(self.tree) if procs.alive(p)]

    def wait_exit(self) -> float:
        started = time.monotonic()
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        finally:
            self.out.close()
        return time.monotonic() - started

    def kill(self) -> None:
        """Teardown after a failed test: nothing may outlive the module, whatever happened."""
        if self.proc.poll() is None:
            self.snapshot()
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        procs.end([p for p in self.tree if procs.alive(p)], grace_s=1)


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lookalike.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def port_open(port: str) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
        return True
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {**os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "RAY_USAGE_STATS_ENABLED": "0",
            "LOOKALIKE_DATA_DIR": str(tmp_path_factory.mktemp("cli_data")),
            "LOOKALIKE_PORT": str(free_port()), "LOOKALIKE_LITE_PORT": str(free_port()),
            "LOOKALIKE_DASHBOARD_PORT": str(free_port()),
            "LOOKALIKE_METRICS_PORT": str(free_port()),
            "LOOKALIKE_COLLECTION": "e2e_cli", "LOOKALIKE_ADMIN_KEY": "cli-e2e-admin-key-0",
            "LOOKALIKE_DEMO_SOURCE": "vendored"}


@pytest.fixture(scope="module")
def app(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """`lookalike serve` on an empty collection; the milvus-lite server is its own too."""
    app = App(env, ["serve"], tmp_path_factory.mktemp("cli_logs") / "serve.log")
    try:
        app.wait_ready()
        yield app
    finally:
        app.kill()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo.build(tmp_path_factory.mktemp("cli_catalogue"), N_PRODUCTS, source="vendored")


def page_texts(app: App) -> dict[str, object]:
    """The search page in headless Chromium: its catalogue line and empty-catalogue notice."""
    if not CHROMIUM.exists() or importlib.util.find_spec("playwright") is None:
        pytest.skip(f"{CHROMIUM} or playwright missing (`make browser`)")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM),
                                     args=["--headless=new", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(locale="en-US")
            page.goto(app.url + "/")
            line = page.locator("#catalogue-line")
            expect(line).to_be_visible(timeout=30_000)
            return {"line": line.inner_text(),
                    "empty_notice": page.locator("#catalogue-empty").is_visible(),
                    "notice_text": page.locator("#catalogue-empty").inner_text(),
                    "welcome": page.locator("#welcome").is_visible()}
        finally:
            browser.close()


@pytest.mark.timeout(READY_TIMEOUT_S + 60)
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


def test_an_empty_catalogue_page_says_how_to_load_one(app: App) -> None:
    assert httpx.get(app.url + "/v1/info", timeout=10).json()["products"] == 0
    page = page_texts(app)
    assert page["line"].startswith("0 products searchable")
    assert "no catalogue ingest yet" in page["line"]
    assert page["empty_notice"] and not page["welcome"]
    assert "lookalike ingest" in page["notice_text"]


@pytest.mark.timeout(600)
def test_ingest_runs_as_a_job_on_the_running_app(app: App, env: dict[str, str],
                                                  manifest: Path) -> None:
    done = cli(env, "ingest", str(manifest), timeout=540)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "submitted to the running app's Ray" in done.stdout
    app.snapshot()
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
    page = page_texts(app)
    assert page["line"].startswith(f"{N_PRODUCTS} products searchable")
    assert "model tf_efficientnet_lite0 + all-MiniLM-L6-v2" in page["line"]
    assert "catalogue ingested" in page["line"]
    assert not page["empty_notice"] and page["welcome"]


def test_status_reports_store_products_serve_and_dashboards(app: App, env: dict[str, str]) -> None:
    done = cli(env, "status")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"{app.url} ready" in out
    assert f"e2e_cli: {N_PRODUCTS} products" in out
    assert "tf_efficientnet_lite0:packaged@" in out  # the model version in use
    assert f"manifest.jsonl (catalog:default): read {N_PRODUCTS}, written {N_PRODUCTS}" in out
    assert "Serve app 'lookalike':" in out and "RUNNING" in out
    for deployment in ("ImageEmbedderDeployment", "TextEmbedderDeployment", "SearchRouter"):
        (row,) = [r for r in out.splitlines() if r.strip().startswith(deployment)]
        assert "HEALTHY" in row and "RUNNING" in row
    assert app.dashboard in out and env["LOOKALIKE_METRICS_PORT"] in out


@pytest.mark.timeout(STOP_TIMEOUT_S + 30)
def test_ctrl_c_stops_everything_and_says_what(app: App, env: dict[str, str]) -> None:
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
