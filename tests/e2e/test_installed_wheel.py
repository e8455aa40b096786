"""The product as a user installs it: the wheel built from this checkout, installed (not
editable) into a new venv, runs `lookalike demo --products 60` from an empty directory, answers
a text search whose words carry a colour and a price with those inferred, a photo search, the
page, and `lookalike stop` leaves no process and no port behind. Its dependencies come from the
test environment (tests/wheel.py says why); the package itself only from the wheel."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lookalike.ports import free_port
from tests.e2e.served import READY_TIMEOUT_S, STOP_TIMEOUT_S, App, port_open
from tests.wheel import build_wheel, venv_with

pytestmark = pytest.mark.slow
PRODUCTS = 60


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The new venv's bin/ folder."""
    wheel = build_wheel(tmp_path_factory.mktemp("wheel"))
    return venv_with(wheel, tmp_path_factory.mktemp("venv") / "v").parent


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing from the repo
    return {**base, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "RAY_USAGE_STATS_ENABLED": "0",
            "LOOKALIKE_DATA_DIR": str(tmp_path_factory.mktemp("wheel_data")),
            "LOOKALIKE_PORT": str(free_port()), "LOOKALIKE_LITE_PORT": str(free_port()),
            "LOOKALIKE_DASHBOARD_PORT": str(free_port()),
            "LOOKALIKE_METRICS_PORT": str(free_port()),
            "LOOKALIKE_COLLECTION": "e2e_wheel", "LOOKALIKE_ADMIN_KEY": "wheel-e2e-admin-key-0",
            "LOOKALIKE_DEMO_SOURCE": "vendored"}


@pytest.fixture(scope="module")
def demo(installed: Path, env: dict[str, str],
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = App(env, ["demo", "--products", str(PRODUCTS)],
              tmp_path_factory.mktemp("wheel_logs") / "demo.log",
              command=(str(installed / "lookalike"),), cwd=tmp_path_factory.mktemp("empty"))
    try:
        app.wait_ready()
        yield app
    finally:
        app.kill()


@pytest.mark.timeout(READY_TIMEOUT_S + 600)
def test_the_demo_runs_from_the_installed_wheel(demo: App) -> None:
    assert f"({PRODUCTS} products searchable)" in demo.text()
    info = httpx.get(demo.url + "/v1/info", timeout=10).json()
    assert info["products"] == PRODUCTS and info["warnings"] == []


def test_words_with_a_colour_and_a_price_are_understood(demo: App) -> None:
    facets = httpx.get(demo.url + "/v1/facets", timeout=10).json()
    colour = max(facets["color"], key=facets["color"].get)
    category = max(facets["category"], key=facets["category"].get)
    resp = httpx.get(demo.url + "/v1/search", timeout=30,
                     params={"q": f"{colour} {category} under 60", "top_k": 5})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["results"], body
    inferred = body["inferred"]
    assert inferred["colors"] == [colour] and inferred["categories"] == [category], inferred
    assert inferred["price"] == {"lte": 60.0}, inferred


def test_a_photo_search_answers(demo: App, env: dict[str, str]) -> None:
    photos = sorted((Path(env["LOOKALIKE_DATA_DIR"]) / "demo" / "images").glob("*.jpg"))
    assert photos
    with photos[0].open("rb") as f:
        resp = httpx.post(demo.url + "/v1/search", files={"image": (photos[0].name, f,
                                                                   "image/jpeg")}, timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json()["results"]


def test_the_page_and_its_script_are_served(demo: App) -> None:
    page = httpx.get(demo.url + "/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "<script" in page.text
    script = httpx.get(demo.url + "/static/app.js", timeout=10)
    assert script.status_code == 200 and len(script.content) > 1000


@pytest.mark.timeout(STOP_TIMEOUT_S + 60)
def test_stop_leaves_no_process_and_no_port(demo: App, installed: Path,
                                            env: dict[str, str]) -> None:
    demo.snapshot()
    assert demo.tree, "the demo started no process?"
    done = subprocess.run([str(installed / "lookalike"), "stop"], env=env, capture_output=True,
                          text=True, timeout=STOP_TIMEOUT_S + 30,
                          cwd=Path(env["LOOKALIKE_DATA_DIR"]).parent)
    assert done.returncode == 0, done.stdout + done.stderr
    took = demo.wait_exit()
    print(f"\n`lookalike stop`: {done.stdout.strip()} (the demo exited {took:.1f} s later)")
    assert "stopping lookalike (SIGTERM" in demo.text()
    assert demo.leftovers() == []
    for port in ("LOOKALIKE_PORT", "LOOKALIKE_DASHBOARD_PORT", "LOOKALIKE_LITE_PORT"):
        assert not port_open(env[port]), f"{port} still answers"
