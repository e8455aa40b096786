"""The app on a Ray cluster of three nodes on this machine, deployed the way a cluster user does:
`ray start` (a head with no CPUs for work, two workers of 2 logical CPUs), `serve deploy` of the
repository's serve_config.yaml, `ray job submit -- python -m ingest_job` while the app serves.

Shown, in order (the tests share one cluster and run in file order): the ingest job finishes
and is listed by `ray job list`; embedder replicas run on both workers; a worker lost under
bounded load costs <= 1% of requests and its replicas are rescheduled on the other; the ingest
on the cluster that is then left, whose CPUs the replicas hold, fails within --wait-s with a
message saying what it waited for. The figures are printed (run with -s) for the notes.
Not here yet: autoscaling seen under load (the image embedder did grow 2 -> 3 and back in a
run before the node loss, but after it, with a replacement worker, it stayed at 2 in 150 s;
and Serve's downscaling left both image replicas on one node, so losing that node then was an
outage of image search until they were rescheduled).

Only what the test must is overridden in the YAML: the HTTP port (and shorter autoscaling
delays for the image embedder, for the autoscaling check still to come). The store is the session's milvus-lite (embedded, one host:
every node reaches it on loopback). Loopback traffic only; every wait is bounded; teardown
checks that no process of the cluster is left.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from lookalike.catalog import demo, load_manifest
from lookalike.catalog.product import Product
from lookalike.store.lite_server import LiteServer
from tests.conftest import free_port
from tests.e2e import fault_load
from tests.e2e.loopback_cluster import LoopbackCluster

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
N_PRODUCTS = 12
COLLECTION = "e2e_multi_node"
WORKERS = {"a": 2, "b": 2}
IMAGE = "ImageEmbedderDeployment"
DEPLOY_TIMEOUT_S = 300
JOB_TIMEOUT_S = 300
RESCHEDULE_TIMEOUT_S = 120
NO_ROOM_WAIT_S = 15
LOAD_AFTER_KILL_S = 40.0
FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Product]]:
    manifest = demo.build(tmp_path_factory.mktemp("mn_catalogue"), N_PRODUCTS,
                          second_image_share=0.25, source="vendored")
    products, errors = load_manifest(manifest)
    assert not errors
    return manifest, products


@pytest.fixture(scope="module")
def cluster(lite_server: LiteServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackCluster]:
    work = tmp_path_factory.mktemp("multi_node")
    base = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env = {**base, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), base.get("PYTHONPATH")])),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "LOOKALIKE_DATA_DIR": str(work / "data"), "LOOKALIKE_LITE_PORT": str(lite_server.port),
           "LOOKALIKE_COLLECTION": COLLECTION, "LOOKALIKE_ADMIN_KEY": "multi-node-admin-key-01",
           "LOOKALIKE_PORT": str(free_port())}
    c = LoopbackCluster.create(work, env)
    try:
        c.start(WORKERS, head_cpus=0)
        yield c
    finally:
        left = c.stop()
        print(f"\nmulti-node figures: {json.dumps(FIGURES, indent=1)}")
    assert left == [], f"processes of the cluster left behind: {left}"


@pytest.fixture(scope="module")
def app_url(cluster: LoopbackCluster) -> str:
    """`serve deploy` of serve_config.yaml with another port and short autoscaling delays."""
    port = int(cluster.env["LOOKALIKE_PORT"])
    config = yaml.safe_load((REPO / "serve_config.yaml").read_text())
    config["http_options"]["port"] = port
    (app,) = config["applications"]
    image = next(d for d in app["deployments"] if d["name"] == IMAGE)
    assert image["autoscaling_config"]["max_replicas"] > image["autoscaling_config"]["min_replicas"]
    image["autoscaling_config"].update(upscale_delay_s=2, downscale_delay_s=5, look_back_period_s=3)
    path = cluster.work / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    done = cluster.cli("serve", "deploy", str(path), "--address", cluster.dashboard_url)
    assert done.returncode == 0, done.stdout + done.stderr
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(url + "/readyz", timeout=5)
            last = f"{resp.status_code} {resp.text[:200]}"
            if resp.status_code == 200:
                return url
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(1)
    status = cluster.cli("serve", "status", "--address", cluster.dashboard_url)
    pytest.fail(f"not ready in {DEPLOY_TIMEOUT_S}s (last: {last}):\n{status.stdout[-3000:]}")


def running(cluster: LoopbackCluster) -> dict[str, list[str]]:
    """{deployment: the node of each RUNNING replica}."""
    replicas = {name: [r["pid"] for r in reps if r.get("state") == "RUNNING"]
                for name, reps in cluster.serve_replicas().items()}
    nodes = iter(cluster.nodes_of(sum(replicas.values(), [])))
    return {name: sorted(next(nodes) or "?" for _ in pids) for name, pids in replicas.items()}


def submit_ingest(cluster: LoopbackCluster, job_id: str, manifest: Path, *extra: str) -> None:
    done = cluster.cli("ray", "job", "submit", "--address", cluster.dashboard_url,
                       "--submission-id", job_id, "--no-wait", "--", "python", "-m", "ingest_job",
                       "--manifest", str(manifest), "--ray-address", cluster.address, *extra)
    assert done.returncode == 0, done.stdout + done.stderr


def wait_job(cluster: LoopbackCluster, job_id: str) -> tuple[str, str]:
    """(final status, log) of a job, within JOB_TIMEOUT_S."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job = httpx.get(f"{cluster.dashboard_url}/api/jobs/{job_id}", headers=cluster.headers,
                        timeout=10).json()
        if job["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
            logs = httpx.get(f"{cluster.dashboard_url}/api/jobs/{job_id}/logs",
                             headers=cluster.headers, timeout=10).json()["logs"]
            return job["status"], logs
        time.sleep(1)
    pytest.fail(f"job {job_id} not finished in {JOB_TIMEOUT_S}s")


class Searches:
    """Closed-loop searches from `concurrency` threads until stopped (bounded by the caller)."""

    def __init__(self, url: str, photos: list[bytes], concurrency: int, image_share: float) -> None:
        self.url, self.photos, self.image_share = url, photos, image_share
        self.statuses: list[int] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(concurrency)]

    def _run(self) -> None:
        rng = random.Random()
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stop.is_set():
                try:
                    if rng.random() < self.image_share:
                        resp = client.post("/v1/search", data={"top_k": "5"}, files={
                            "image": ("q.jpg", rng.choice(self.photos), "image/jpeg")})
                    else:
                        resp = client.get("/v1/search", params={"q": "summer dress", "top_k": 5})
                    self.statuses.append(resp.status_code)
                except httpx.HTTPError:
                    self.statuses.append(0)

    def __enter__(self) -> Searches:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=90)


def photos(products: list[Product]) -> list[bytes]:
    return [Path(p.images[0]).read_bytes() for p in products]


@pytest.mark.timeout(DEPLOY_TIMEOUT_S + JOB_TIMEOUT_S + 120)
def test_ingest_job_runs_while_the_app_serves(cluster: LoopbackCluster, app_url: str,
                                              catalogue: tuple[Path, list[Product]]) -> None:
    manifest, products = catalogue
    started = time.monotonic()
    with Searches(app_url, photos(products), concurrency=1, image_share=0.0) as load:
        submit_ingest(cluster, "mn-ingest", manifest)
        status, logs = wait_job(cluster, "mn-ingest")
    FIGURES["ingest_job_s"] = round(time.monotonic() - started, 1)
    assert status == "SUCCEEDED", logs[-4000:]
    assert load.statuses and set(load.statuses) == {200}, "searches failed while the job ran"
    listed = cluster.cli("ray", "job", "list", "--address", cluster.dashboard_url)
    assert listed.returncode == 0, listed.stderr
    assert "mn-ingest" in listed.stdout and "SUCCEEDED" in listed.stdout
    assert httpx.get(app_url + "/readyz", timeout=10).json()["products"] == N_PRODUCTS


def test_embedder_replicas_run_on_both_workers(cluster: LoopbackCluster, app_url: str) -> None:
    placed = running(cluster)
    FIGURES["placement"] = placed
    for name in (IMAGE, "TextEmbedderDeployment"):
        assert set(placed[name]) == set(WORKERS), placed  # spread over both workers
    assert "head" not in sum(placed.values(), []), placed  # the head runs no replica (0 CPUs)


@pytest.mark.timeout(fault_load.KILL_AT_S + LOAD_AFTER_KILL_S + RESCHEDULE_TIMEOUT_S + 60)
def test_losing_a_worker_under_load(cluster: LoopbackCluster, app_url: str,
                                    catalogue: tuple[Path, list[Product]],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Long enough after the kill for a few hundred requests on a small busy box: the requests
    # in flight on the lost node's router and proxy are what fails.
    monkeypatch.setattr(fault_load, "AFTER_KILL_S", LOAD_AFTER_KILL_S)
    before = running(cluster)
    want = {name: len(nodes) for name, nodes in before.items()}
    victim = "b"
    pictures = photos(catalogue[1])
    samples: list[tuple[float, dict[str, list[str]]]] = []
    killed_at: list[float] = []
    stop = threading.Event()

    def watch() -> None:  # replica placement every half second, from before the kill on
        while not stop.is_set():
            try:
                samples.append((time.monotonic(), running(cluster)))
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.5)

    def kill() -> None:
        killed_at.append(time.monotonic())
        cluster.kill(victim)

    def searches(client: httpx.AsyncClient, n: int):
        if n % 8 == 0:
            return (client.post("/v1/search", data={"top_k": "5"},
                                files={"image": ("q.jpg", pictures[n % len(pictures)], "image/jpeg")}),
                    fault_load.Outcome("image"))
        return client.get("/v1/search", params={"q": "warm coat", "top_k": 5}), fault_load.Outcome("text")

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        run = fault_load.run_with_fault(app_url, searches, kill)
        deadline = time.monotonic() + RESCHEDULE_TIMEOUT_S

        def rescheduled(placed: dict[str, list[str]]) -> bool:
            # On a live node ("?": a replica the controller still lists on the lost node).
            return all(len([n for n in placed.get(name, []) if n not in (victim, "?")]) >= count
                       for name, count in want.items())

        while time.monotonic() < deadline and not any(
                t > killed_at[0] and rescheduled(p) for t, p in samples):
            time.sleep(0.5)
    finally:
        stop.set()
        watcher.join(timeout=30)
    after = next(((t, p) for t, p in samples if t > killed_at[0] and rescheduled(p)), None)
    figures = fault_load.figures(run)
    FIGURES["node_loss"] = {**figures, "victim": victim, "before": before,
                            "victim_held": {n: nodes.count(victim) for n, nodes in before.items()},
                            "rescheduled_s": round(after[0] - killed_at[0], 1) if after else None,
                            "after": after[1] if after else samples[-1][1] if samples else None}
    assert before[IMAGE].count(victim) >= 1, before  # the node lost held embedder replicas
    assert figures["failed_pct"] <= 1.0, FIGURES["node_loss"]
    assert after is not None, f"not rescheduled in {RESCHEDULE_TIMEOUT_S}s: {FIGURES['node_loss']}"
    assert set(sum(after[1].values(), [])) == {"a"}, after[1]


@pytest.mark.timeout(JOB_TIMEOUT_S + 60)
def test_ingest_on_a_cluster_the_replicas_fill_fails_clearly(
        cluster: LoopbackCluster, app_url: str, catalogue: tuple[Path, list[Product]]) -> None:
    # After the node loss: worker a (2 CPUs) holds every replica, 2 CPUs' worth.
    started = time.monotonic()
    submit_ingest(cluster, "mn-ingest-no-room", catalogue[0], "--wait-s", str(NO_ROOM_WAIT_S))
    status, logs = wait_job(cluster, "mn-ingest-no-room")
    FIGURES["no_room_job_s"] = round(time.monotonic() - started, 1)
    assert status == "FAILED", logs[-3000:]
    assert f"no room for the ingest after waiting {NO_ROOM_WAIT_S} s" in logs, logs[-3000:]
    assert "waiting up to" in logs and "Serve app" in logs, logs[-3000:]
    assert "Traceback" not in logs, logs[-3000:]
