"""The Ray Data ingest job for real: local Ray with 2 CPUs, milvus-lite, packaged weights.

One Ray instance serves the whole module (the kill-and-resume and lifetime drivers join it as
subprocesses),
and it has exactly 2 CPUs on purpose: an earlier pipeline whose actors reserved most of a
2-CPU cluster never scheduled a read and hung, so every job here runs under a timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback-only local Ray

import ray

from lookalike.catalog import demo
from lookalike.catalog.product import Product
from lookalike.config import Settings
from lookalike.launch.local_ray import init_local
from lookalike.pipelines.ingest import IngestOptions, run_ingest
from lookalike.ports import free_port
from lookalike.store.base import API_SOURCE, StoredProduct, catalog_source
from lookalike.store.lite_server import LiteServer, port_open
from lookalike.store.milvus import MilvusStore

pytestmark = [pytest.mark.ray, pytest.mark.weights]  # Ray Data with the real models
REPO = Path(__file__).resolve().parents[2]
GOOD = 40  # valid products with readable images
IMAGE_DIM, TEXT_DIM = 1280, 384


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    if ray.is_initialized():
        ray.shutdown()
    init_local(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def make_catalogue(out: Path, n_good: int) -> tuple[Path, dict[int, str]]:
    """demo.build's real photos plus deliberately bad rows; returns (manifest, {row: field})."""
    manifest = demo.build(out, n_good)
    (out / "images" / "corrupt.jpg").write_bytes(b"this is not a jpeg")
    good = manifest.read_text().splitlines()
    bad = [
        json.dumps({"title": "no id", "images": ["images/fm-00000-0.jpg"]}),             # product_id
        json.dumps({"product_id": "neg", "price": -3, "images": ["images/fm-00000-0.jpg"]}),  # price
        '{"product_id": "broken", ',                                                     # invalid JSON
        json.dumps({"product_id": "missing-image", "images": ["images/nope.jpg"]}),      # images
        json.dumps({"product_id": "corrupt-image", "images": ["images/corrupt.jpg"]}),   # images
        good[0],                                                                         # duplicate id
    ]
    fields = ["product_id", "price", "*", "images", "images", "product_id"]
    # Bad rows interleaved at known 1-based positions: 3, 6, 9, ...
    lines, expected = [], {}
    bad_iter = iter(zip(bad, fields))
    for line in good:
        lines.append(line)
        if len(lines) % 3 == 2:
            nxt = next(bad_iter, None)
            if nxt:
                lines.append(nxt[0])
                expected[len(lines)] = nxt[1]
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, expected


def settings_for(lite_server, name: str) -> Settings:
    return Settings(data_dir=lite_server.data_dir, lite_port=lite_server.port, collection=name,
                    port=free_port())


def open_store(settings: Settings) -> MilvusStore:
    return MilvusStore.from_settings(settings, image_dim=IMAGE_DIM, text_dim=TEXT_DIM)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, str]]:
    return make_catalogue(tmp_path_factory.mktemp("catalogue"), GOOD)


@pytest.mark.timeout(420)
def test_ingest_counts_rerun_changes_and_delete_missing(ray_cluster, lite_server, catalogue,
                                                         tmp_path: Path) -> None:
    manifest, bad_rows = catalogue
    settings = settings_for(lite_server, "t_ingest_main")
    errors_out = tmp_path / "errors.jsonl"

    first = run_ingest(IngestOptions(manifest, errors_out=errors_out), settings)
    assert (first.read, first.embedded, first.written, first.skipped, first.failed) == (
        GOOD + len(bad_rows), GOOD, GOOD, 0, len(bad_rows))
    reported = {e["row"]: e["field"] for e in map(json.loads, errors_out.read_text().splitlines())}
    assert reported == bad_rows
    store = open_store(settings)
    try:
        assert store.count() == GOOD
        # Done means indexed: the job waited for both vector indexes and says so.
        assert first.index == "ready" and first.as_dict()["index"] == "ready"
        assert store.wait_index_ready(timeout_s=0) and store.flushed_rows() >= GOOD
        assert "indexes              ready" in first.table()
        # Vectors are the embedders' own, per image, in image order (regrouping is right).
        two = next(r for r in store.get([f"fm-{i:05d}" for i in range(GOOD)], with_vectors=True).values()
                   if len(r.product.images) == 2)
        assert len(two.image_vectors) == 2
        assert two.model_version == first.model_version
        from lookalike.embedding import ImageEmbedder
        from lookalike.images import decode_image

        direct = ImageEmbedder(num_threads=1).embed(
            [decode_image(Path(p).read_bytes()) for p in two.product.images])
        np.testing.assert_allclose(np.stack(two.image_vectors), direct, atol=1e-4)

        again = run_ingest(IngestOptions(manifest, wait_index=False), settings)
        assert (again.embedded, again.written, again.skipped, again.failed) == (0, 0, GOOD, len(bad_rows))
        assert again.index == "not waited for (--no-wait-index)" and again.index_wait_s == 0
        assert store.count() == GOOD

        # Moving the catalogue folder re-embeds nothing (the hash follows the pixels), and the
        # stored references follow the manifest to the new place.
        moved = tmp_path / "moved"
        shutil.copytree(manifest.parent, moved)
        after_move = run_ingest(IngestOptions(moved / manifest.name), settings)
        assert (after_move.embedded, after_move.relinked, after_move.written) == (0, GOOD, GOOD)
        rec = store.get([two.product.product_id])[two.product.product_id]
        assert all(ref.startswith(str(moved)) for ref in rec.product.images)
        assert rec.intact and rec.content_hash == two.content_hash
        manifest = moved / manifest.name

        # The migration step of docs/laptop-to-cluster.md: with LOOKALIKE_CATALOG_ROOT set, the
        # same catalogue is relinked to logical `catalog:` references that any node resolves
        # under its own root; nothing is re-embedded. The rest of this test runs with it.
        settings = settings.model_copy(update={"catalog_root": moved})
        rooted = run_ingest(IngestOptions(manifest), settings)
        assert (rooted.embedded, rooted.relinked, rooted.written) == (0, GOOD, GOOD)
        rec = store.get([two.product.product_id])[two.product.product_id]
        assert [r.split(":", 1)[0] for r in rec.product.images] == ["catalog", "catalog"]
        assert rec.intact and rec.content_hash == two.content_hash

        # Products of other sources: one PUT through the API, one from another catalogue.
        others = [StoredProduct(Product(pid, title=pid, images=("/elsewhere.jpg",)),
                                np.ones((1, IMAGE_DIM), np.float32) / IMAGE_DIM ** 0.5,
                                np.ones(TEXT_DIM, np.float32) / TEXT_DIM ** 0.5, "h", "v", source)
                  for pid, source in (("api-made", API_SOURCE), ("other-feed", catalog_source("b")))]
        store.upsert(others)

        # Change two titles and one photo, drop three products, then --delete-missing.
        by_id: dict[str, dict] = {}
        for line in manifest.read_text().splitlines():
            if line.startswith('{"product_id": "fm-'):
                by_id.setdefault(json.loads(line)["product_id"], json.loads(line))
        rows = list(by_id.values())
        assert len(rows) == GOOD
        rows[1]["title"] = "Renamed one"
        rows[2]["title"] = "Renamed two"
        photo = manifest.parent / rows[3]["images"][0]
        shutil.copy(manifest.parent / rows[4]["images"][0], photo)
        kept = rows[:-3]
        # Image paths are relative to the manifest: the new one sits beside the images.
        changed = manifest.parent / "changed.jsonl"
        changed.write_text("\n".join(json.dumps(r) for r in kept) + "\n")
        third = run_ingest(IngestOptions(changed, delete_missing=True), settings)
        assert (third.embedded, third.written, third.skipped, third.deleted, third.failed) == (
            3, 3, len(kept) - 3, 3, 0)
        assert store.count() == len(kept) + 2
        # --delete-missing deleted only this catalogue's products.
        assert set(store.get(["api-made", "other-feed"])) == {"api-made", "other-feed"}
        assert store.get([rows[1]["product_id"]])[rows[1]["product_id"]].product.title == "Renamed one"
    finally:
        store.drop()
        store.close()


def _summary_from(stderr: str) -> dict:
    for line in stderr.splitlines():
        if line.startswith("{") and '"event":"ingest_summary"' in line:
            return json.loads(line)
    raise AssertionError(f"no ingest_summary line in:\n{stderr[-3000:]}")


@pytest.mark.timeout(420)
def test_killed_job_resumes_exactly_without_re_embedding(ray_cluster, lite_server,
                                                          tmp_path: Path) -> None:
    n = 120
    manifest = demo.build(tmp_path / "cat", n)
    settings = settings_for(lite_server, "t_ingest_resume")
    env = {**os.environ, "LOOKALIKE_DATA_DIR": str(settings.data_dir),
           "LOOKALIKE_LITE_PORT": str(settings.lite_port), "LOOKALIKE_COLLECTION": settings.collection,
           "LOOKALIKE_PORT": str(settings.port), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(REPO / "ingest_job.py"), "--manifest", str(manifest),
           "--ray-address", ray_cluster, "--write-batch", "8"]
    store = open_store(settings)
    try:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        written = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if store.client.has_collection(settings.collection):
                written = store.count()
                if written > 0:
                    break
            time.sleep(0.1)
        assert proc.poll() is None, "the job finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        time.sleep(1.0)  # a request already sent when the driver died still lands
        before = store.count()
        assert 0 < before < n

        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        summary = _summary_from(done.stderr)
        assert store.count() == n
        assert summary["skipped_unchanged"] == before  # nothing written before was re-embedded
        assert summary["embedded"] == summary["written"] == n - before
        assert summary["failed"] == 0
    finally:
        if store.client.has_collection(settings.collection):
            store.drop()
        store.close()


@pytest.mark.timeout(420)
def test_ingest_groups_variants_and_a_manifest_group_id_wins(ray_cluster, lite_server,
                                                             tmp_path: Path) -> None:
    """The Ray job hashes photos in its prepare stage and groups near-duplicates after every
    batch is written (lookalike/variants.py); a manifest's group_id is kept as given."""
    manifest = demo.build(tmp_path / "cat", 24, variant_share=0.5)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[0]["group_id"] = rows[1]["group_id"] = "manifest-group"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # This test is about the job's wiring (hashes, the pass after the writes, explicit groups,
    # re-runs), not detection's quality (tests/integration/test_variants.py): thresholds loose
    # enough to group every colour of an article here, as there.
    settings = settings_for(lite_server, "t_ingest_variants").model_copy(update=dict(
        variant_hash_distance=2, variant_min_cosine=0.6, variant_reshoot_cosine=0.88,
        variant_reshoot_hash_distance=20))
    summary = run_ingest(IngestOptions(manifest), settings)
    assert summary.failed == 0 and summary.variant_groups >= 1
    store = open_store(settings)
    try:
        stored = store.get([r["product_id"] for r in rows])
        assert {pid for pid, r in stored.items() if r.group_id == "manifest-group"} == {
            rows[0]["product_id"], rows[1]["product_id"]}
        by_article: dict[str, set[str]] = {}
        for r in rows[2:]:
            by_article.setdefault(r["article"], set()).add(r["product_id"])
        # Every article sold in several colours (beyond the two the manifest grouped) is one
        # detected group.
        for members in (m for m in by_article.values() if len(m) > 1):
            labels = {stored[pid].group_id for pid in members}
            assert len(labels) == 1 and next(iter(labels)).startswith("~"), (members, labels)
        # A re-run embeds nothing and leaves the groups as they are.
        again = run_ingest(IngestOptions(manifest), settings)
        assert again.embedded == 0 and again.variants_relabelled == 0
        assert {pid: r.group_id for pid, r in store.get(list(stored)).items()} == {
            pid: r.group_id for pid, r in stored.items()}
    finally:
        store.drop()
        store.close()


# `python ingest_job.py` leaves nothing running that it started, and leaves alone an embedded
# server it found serving (the demo starts one before ingesting). Its embedded server's lifetime
# is the job's own whichever Ray it runs on, so these jobs join the module's Ray; a job on a
# private Ray, and that it leaves none of that Ray behind, is tests/e2e/test_deploy_path.py's.
LIFETIME_PRODUCTS = 4


def lite_processes(data_dir: Path) -> list[str]:
    """Supervisor and launcher command lines that name this data directory."""
    out = subprocess.run(["pgrep", "-af", f"--data-dir {data_dir.resolve()}"],
                         capture_output=True, text=True)
    return [line for line in out.stdout.splitlines()
            if "lite_server" in line or "lite_launcher" in line]


def run_job_on(server: LiteServer, ray_address: str,
               tmp_path: Path) -> subprocess.CompletedProcess[str]:
    manifest = demo.build(tmp_path / "cat", LIFETIME_PRODUCTS, source="vendored")
    env = {**os.environ, "LOOKALIKE_DATA_DIR": str(server.data_dir),
           "LOOKALIKE_LITE_PORT": str(server.port), "LOOKALIKE_COLLECTION": "t_lifetime",
           "LOOKALIKE_PORT": str(free_port()), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(REPO / "ingest_job.py"), "--manifest", str(manifest),
                           "--ray-address", ray_address], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.timeout(360)
def test_job_stops_the_embedded_server_it_started(ray_cluster, tmp_path: Path) -> None:
    server = LiteServer(tmp_path / "data", free_port())
    assert not server.is_serving()
    try:
        done = run_job_on(server, ray_cluster, tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert _summary_from(done.stderr)["written"] == LIFETIME_PRODUCTS
        assert not port_open(server.port), "the job left milvus-lite serving"
        assert server.supervisor_pid() is None
        assert lite_processes(server.data_dir) == []
    finally:
        server.stop()  # only if the assertion above failed


@pytest.mark.timeout(360)
def test_job_leaves_a_server_it_found_running(ray_cluster, tmp_path: Path) -> None:
    server = LiteServer(tmp_path / "data", free_port())
    assert server.ensure_running() is True
    supervisor = server.supervisor_pid()
    try:
        assert server.ensure_running() is False  # found serving: not ours to stop
        done = run_job_on(server, ray_cluster, tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert _summary_from(done.stderr)["written"] == LIFETIME_PRODUCTS
        assert server.is_serving()
        assert server.supervisor_pid() == supervisor
    finally:
        server.stop()
    assert lite_processes(server.data_dir) == []
