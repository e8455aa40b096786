"""The deploy path docs/laptop-to-cluster.md gives, for real: `python ingest_job.py
--manifest ...` fills the store and `serve run serve_config.yaml` serves it, each a subprocess on
its own private local Ray, checked over HTTP. Nothing here calls the store or Serve in-process.

The YAML is the repository's own with only the port changed; settings come from LOOKALIKE_*
variables pointing at this session's milvus-lite server.
RAY_ADDRESS=local makes both subprocesses start a Ray of their own, whatever Ray this pytest
process (or a `ray start` on the machine) runs. Every wait is bounded, and teardown checks that
no process of those Ray sessions is left.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lookalike.catalog import demo, load_manifest
from lookalike.catalog.product import Product
from lookalike.ports import free_port
from lookalike.store.lite_server import LiteServer

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
N_PRODUCTS = 16
COLLECTION = "e2e_deploy_path"
INGEST_TIMEOUT_S = 300
READY_TIMEOUT_S = 300
STOP_TIMEOUT_S = 60


def session_processes(pid: int) -> list[str]:
    """Processes of the Ray session a driver with this pid started (session_<date>_<pid>)."""
    pattern = re.compile(rf"session_\d{{4}}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+_{pid}\b")
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [line.strip()[:200] for line in out.splitlines() if pattern.search(line)]


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGINT) -> None:
    """Ask the leader to stop (serve run shuts Serve and its Ray down on SIGINT), then kill
    its whole process group and whatever its Ray session still runs."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=STOP_TIMEOUT_S)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    for line in session_processes(proc.pid):  # outside the group (new sessions): kill them too
        try:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def env(lite_server: LiteServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "RAY_ADDRESS": "local", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            # Ray's node (GCS, raylet, object manager) on 127.0.0.1 rather than the LAN address.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_USAGE_STATS_ENABLED": "0",
            "LOOKALIKE_DATA_DIR": str(tmp_path_factory.mktemp("deploy_data")),
            "LOOKALIKE_LITE_PORT": str(lite_server.port), "LOOKALIKE_COLLECTION": COLLECTION,
            "LOOKALIKE_MILVUS_TOKEN": lite_server.token(),  # the session server's, not data_dir's
            "LOOKALIKE_ADMIN_KEY": "deploy-path-admin-key", "LOOKALIKE_DEMO_SOURCE": "vendored"}


@pytest.fixture(scope="module")
def products(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> list[Product]:
    """The demo catalogue, ingested by `python ingest_job.py --manifest ...`."""
    manifest = demo.build(tmp_path_factory.mktemp("deploy_catalogue"), N_PRODUCTS,
                          second_image_share=0.25, source="vendored")
    log = manifest.parent / "ingest.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "ingest_job.py", "--manifest", str(manifest),
                                 "--num-cpus", "2"], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=INGEST_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            stop_group(proc, signal.SIGTERM)
    leftovers = session_processes(proc.pid)
    assert code == 0, f"ingest_job.py exited with {code}:\n{log.read_text()[-4000:]}"
    assert leftovers == [], leftovers
    loaded, errors = load_manifest(manifest)
    assert not errors
    return loaded


@pytest.fixture(scope="module")
def app_url(env: dict[str, str], products: list[Product],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`serve run <serve_config.yaml with another port>`, ready with the whole catalogue."""
    port = free_port()
    work = tmp_path_factory.mktemp("deploy_serve")
    config = work / "serve_config.yaml"
    text = (REPO / "serve_config.yaml").read_text()
    assert text.count("port: 8000") == 1
    config.write_text(text.replace("port: 8000", f"port: {port}"))
    serve = Path(sys.executable).with_name("serve")  # the CLI the deploy path runs, this venv's
    log = work / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        proc = subprocess.Popen([str(serve), "run", str(config)], cwd=REPO,
                                env={**env, "LOOKALIKE_PORT": str(port)}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_ready(url, proc, log, len(products))
            yield url
        finally:
            stop_group(proc)
    assert session_processes(proc.pid) == [], "the serve run session left processes behind"


def wait_ready(url: str, proc: subprocess.Popen, log: Path, n_products: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"serve run exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            resp = httpx.get(url + "/readyz", timeout=5)
            last = f"{resp.status_code} {resp.text[:200]}"
            if resp.status_code == 200 and resp.json()["products"] == n_products:
                return
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(1)
    pytest.fail(f"not ready with {n_products} products in {READY_TIMEOUT_S}s (last: {last}):\n"
                f"{log.read_text()[-4000:]}")


@pytest.fixture
def client(app_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app_url, timeout=60) as c:
        yield c


@pytest.mark.timeout(INGEST_TIMEOUT_S + READY_TIMEOUT_S + 4 * STOP_TIMEOUT_S)
def test_ready_with_the_ingested_catalogue(client: httpx.Client, products: list[Product]) -> None:
    assert client.get("/readyz").json() == {"status": "ready", "products": N_PRODUCTS}


@pytest.mark.parametrize("index", [0, 9])
def test_catalogue_photo_finds_its_product_first(client: httpx.Client, products: list[Product],
                                                 index: int) -> None:
    target = products[index]
    resp = client.post("/v1/search", data={"top_k": "5"},
                       files={"image": ("q.jpg", Path(target.images[0]).read_bytes(), "image/jpeg")})
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert results[0]["product_id"] == target.product_id
    assert results[0]["score"] > 0.99  # the very photo that was ingested


def test_filtered_text_search_honours_the_filter(client: httpx.Client, products: list[Product]) -> None:
    colour, n_colour = Counter(p.color for p in products).most_common(1)[0]
    resp = client.get("/v1/search", params={"q": "comfortable everyday clothes", "color": colour,
                                            "top_k": 10})
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert 1 <= len(results) <= n_colour
    assert {r["color"] for r in results} == {colour}
    # Halfway between two prices: prices are float32 in Milvus, so a bound equal to a price
    # would test rounding, not the filter.
    prices = sorted(p.price for p in products)
    max_price = round((prices[N_PRODUCTS // 2] + prices[N_PRODUCTS // 2 + 1]) / 2, 3)
    cheap = client.get("/v1/search", params={"q": "dress", "max_price": max_price, "top_k": 20})
    assert cheap.status_code == 200, cheap.text
    prices = [r["price"] for r in cheap.json()["results"]]
    assert prices and max(prices) <= max_price
    assert len(prices) == sum(p.price <= max_price for p in products)
