"""The whole app over real HTTP, deployed once for the tier as a user deploys it:
`lookalike serve` (serve_config.yaml, its own private local Ray, milvus-lite and front proxy),
filled by `lookalike ingest` (the Ray Data job, on the app's Ray) with a small demo catalogue.

One deployment for every module, session-scoped: a deploy costs minutes on a small machine.
A module that writes (PUTs, deletes) removes what it wrote, so the next sees the catalogue the
ingest made; faults (a killed replica, milvus-lite) heal in the running app by design. The one
test that stops the app (test_cli's Ctrl-C, marker `stops_the_app`) runs after every other.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lookalike.catalog import demo, load_manifest
from lookalike.catalog.product import Product
from lookalike.config import Settings
from lookalike.ports import free_port
from tests.e2e.served import REPO, App, cli

ADMIN_KEY = "e2e-admin-key-0123"
COLLECTION = "e2e_products"
N_PRODUCTS = 60
INGEST_TIMEOUT_S = 540
CHROMIUM = Path(os.environ.get("LOOKALIKE_CHROMIUM", "/usr/bin/chromium"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that stops the shared app runs last (after it, the app is gone)."""
    last = [item for item in items if item.get_closest_marker("stops_the_app")]
    if last:
        items[:] = [item for item in items if item not in last] + last


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Product]]:
    manifest = demo.build(tmp_path_factory.mktemp("catalogue"), N_PRODUCTS, second_image_share=0.3)
    products, errors = load_manifest(manifest)
    assert not errors
    return manifest, products


@pytest.fixture(scope="session")
def app_env(tmp_path_factory: pytest.TempPathFactory,
            catalogue: tuple[Path, list[Product]]) -> dict[str, str]:
    """The app's LOOKALIKE_* settings, as a user exports them. The tests fetch image_urls from
    the app itself (loopback, its own port) and it serves the catalogue from its folder."""
    port = free_port()
    # A short data dir: the front proxy's admin socket lives there (a Unix socket path).
    data_dir = tmp_path_factory.mktemp("app")
    return {**os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "RAY_USAGE_STATS_ENABLED": "0",
            "LOOKALIKE_DATA_DIR": str(data_dir), "LOOKALIKE_PORT": str(port),
            "LOOKALIKE_LITE_PORT": str(free_port()),
            "LOOKALIKE_DASHBOARD_PORT": str(free_port()),
            "LOOKALIKE_METRICS_PORT": str(free_port()),
            "LOOKALIKE_COLLECTION": COLLECTION, "LOOKALIKE_ADMIN_KEY": ADMIN_KEY,
            "LOOKALIKE_ALLOW_PRIVATE_IMAGE_URLS": "true",
            "LOOKALIKE_IMAGE_URL_PORTS": json.dumps([port]),
            "LOOKALIKE_IMAGE_ROOTS": json.dumps([str(catalogue[0].parent)])}


@pytest.fixture(scope="session")
def app_settings(app_env: dict[str, str]) -> Settings:
    """The same settings in this process (for reading the app's store directly)."""
    return Settings(data_dir=Path(app_env["LOOKALIKE_DATA_DIR"]),
                    lite_port=int(app_env["LOOKALIKE_LITE_PORT"]), collection=COLLECTION,
                    port=int(app_env["LOOKALIKE_PORT"]), admin_key=ADMIN_KEY)


@pytest.fixture(scope="session")
def served(app_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """`lookalike serve`, ready, on an empty collection (the ingest comes in `app`)."""
    app = App(app_env, ["serve"], tmp_path_factory.mktemp("app_logs") / "serve.log")
    try:
        app.wait_ready()
        yield app
    finally:
        app.kill()


@dataclass(frozen=True)
class BeforeIngest:
    """What the app showed with no catalogue yet (test_cli asserts on it)."""
    info: dict[str, object]
    page: dict[str, object] | None  # None: no Chromium or playwright here


def page_texts(url: str) -> dict[str, object] | None:
    """The search page in headless Chromium: its catalogue line and empty-catalogue notice."""
    if not CHROMIUM.exists() or importlib.util.find_spec("playwright") is None:
        return None
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM),
                                     args=["--headless=new", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(locale="en-US")
            page.goto(url + "/")
            line = page.locator("#catalogue-line")
            expect(line).to_be_visible(timeout=30_000)
            return {"line": line.inner_text(),
                    "empty_notice": page.locator("#catalogue-empty").is_visible(),
                    "notice_text": page.locator("#catalogue-empty").inner_text(),
                    "welcome": page.locator("#welcome").is_visible()}
        finally:
            browser.close()


@pytest.fixture(scope="session")
def before_ingest(served: App) -> BeforeIngest:
    return BeforeIngest(info=httpx.get(served.url + "/v1/info", timeout=10).json(),
                        page=page_texts(served.url))


@pytest.fixture(scope="session")
def ingest(served: App, before_ingest: BeforeIngest,
           catalogue: tuple[Path, list[Product]]) -> subprocess.CompletedProcess:
    """`lookalike ingest MANIFEST` against the running app (a Ray job on its Ray)."""
    done = cli(served.env, "ingest", str(catalogue[0]), timeout=INGEST_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    served.snapshot()
    return done


@pytest.fixture(scope="session")
def app(served: App, ingest: subprocess.CompletedProcess) -> App:
    """The running app with the catalogue ingested."""
    return served


@pytest.fixture(scope="session")
def app_url(app: App) -> str:
    return app.url


@pytest.fixture
def client(app_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app_url, timeout=60) as c:
        yield c


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}
