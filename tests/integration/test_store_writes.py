"""Product writes are atomic per product, against the real milvus-lite server.

A write is two requests (insert the new version's rows, delete older versions). These tests
kill a real writer process between the two, and race two writer processes on one product,
while checking that every read sees exactly one whole write.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lookalike.catalog import Product
from lookalike.config import Settings
from lookalike.ingest.worklist import store_lookup
from lookalike.store import MilvusStore, StoredProduct
from lookalike.store.base import API_SOURCE

IMG, TXT = 8, 8
REPO = Path(__file__).resolve().parents[2]

# A writer process: writes product "p" as variant NAME (its own title, photo count, vectors)
# ROUNDS times; with CRASH it kills itself between the insert and the cleanup of its first write.
WRITER = r'''
import json, os, signal, sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from tests.integration.test_store_writes import variant, open_store
from lookalike.config import Settings
from lookalike.store.milvus import MilvusStore
args = json.loads(sys.argv[1])
store = open_store(Settings(**args["settings"]))
if args["crash"]:
    MilvusStore._retire_older = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
for _ in range(args["rounds"]):
    store.upsert([variant(args["name"])])
'''

VARIANTS = {"A": 3, "B": 1, "C": 2}  # name -> number of photos


def variant(name: str) -> StoredProduct:
    """Product "p" as written by writer NAME: title, photo count and vectors all say NAME."""
    rng = np.random.default_rng(ord(name))
    k = VARIANTS[name]
    photos = rng.normal(size=(k, IMG)).astype(np.float32)
    photos /= np.linalg.norm(photos, axis=1, keepdims=True)
    text = rng.normal(size=TXT).astype(np.float32)
    return StoredProduct(Product("p", title=name, color="red",
                                 images=tuple(f"/img/{name}-{i}.jpg" for i in range(k))),
                         photos, text / np.linalg.norm(text), f"h-{name}", "v", API_SOURCE)


def open_store(settings: Settings) -> MilvusStore:
    store = MilvusStore.from_settings(settings, image_dim=IMG, text_dim=TXT)
    store.ensure_collection()
    return store


@pytest.fixture
def store(store_factory) -> MilvusStore:
    return store_factory(IMG, TXT)


def run_writer(settings: Settings, name: str, *, rounds: int = 1, crash: bool = False) -> subprocess.Popen:
    args = {"settings": settings.model_dump(mode="json", exclude={"admin_key"}), "name": name,
            "rounds": rounds, "crash": crash}
    return subprocess.Popen([sys.executable, "-c", WRITER, json.dumps(args), str(REPO)], cwd=REPO)


def assert_coherent(store: MilvusStore) -> str:
    """Every way of reading "p" sees one whole write; returns which one."""
    rec = store.get(["p"], with_vectors=True)["p"]
    name = rec.product.title
    want = variant(name)
    assert rec.product.images == want.product.images
    assert len(rec.image_vectors) == VARIANTS[name]
    assert np.allclose(np.stack(rec.image_vectors), want.image_vectors, atol=1e-5)
    assert rec.content_hash == f"h-{name}"
    for other in VARIANTS:  # a search by any variant's photo sees a whole write
        for photo in variant(other).image_vectors:
            for hit in store.search(image_vector=photo, top_k=3):
                if hit.product.product_id == "p":
                    assert hit.image_index < len(hit.product.images)
                    assert hit.product.images == variant(hit.product.title).product.images
    return name


def test_a_writer_killed_between_insert_and_cleanup_leaves_one_whole_product(
        store: MilvusStore, settings: Settings) -> None:
    store.upsert([variant("A")])  # three photos
    writer = run_writer(settings, "B", crash=True)  # one photo; dies before the cleanup
    assert writer.wait(timeout=120) == -9
    rec = store.get(["p"])["p"]
    assert rec.versions == 2 and not rec.intact  # both writes are stored, side by side
    # The newest write is what every read sees, including a search by A's third photo, which
    # only the older version's rows match.
    hits = store.search(image_vector=variant("A").image_vectors[2], top_k=5)
    p = [h for h in hits if h.product.product_id == "p"]
    assert p and p[0].product.title == "B" and p[0].image_index == 0
    assert assert_coherent(store) == "B"
    # That search finished the dead writer's cleanup.
    assert store.get(["p"])["p"].intact
    assert store.count() == 1


def test_resume_lookup_distrusts_an_interrupted_write(store: MilvusStore, settings: Settings) -> None:
    store.upsert([variant("A")])
    assert store_lookup(store, API_SOURCE)(["p"]) == {"p": ("h-A", "v", variant("A").product.images)}
    assert run_writer(settings, "B", crash=True).wait(timeout=120) == -9
    assert store_lookup(store, API_SOURCE)(["p"]) == {}  # re-embed and rewrite it whole
    assert store_lookup(store, "catalog:other")(["p"]) == {}  # another source's product
    store.repair(["p"])
    assert store_lookup(store, API_SOURCE)(["p"]) == {"p": ("h-B", "v", variant("B").product.images)}


def test_concurrent_writes_from_two_processes_never_mix(store: MilvusStore, settings: Settings) -> None:
    store.upsert([variant("C")])
    writers = [run_writer(settings, name, rounds=15) for name in ("A", "B")]
    seen: set[str] = set()
    deadline = time.monotonic() + 180
    while any(w.poll() is None for w in writers):
        assert time.monotonic() < deadline, "writers did not finish"
        seen.add(assert_coherent(store))
    assert [w.wait(timeout=10) for w in writers] == [0, 0]
    final = assert_coherent(store)
    rec = store.get(["p"])["p"]
    assert rec.intact and rec.versions == 1  # the racing writes cleaned up after each other
    assert store.count() == 1
    assert final in ("A", "B") and seen <= set(VARIANTS)
