"""The ingest job's pure helpers, without Ray: sizing, image reads, prepare, regrouping, counts."""

from __future__ import annotations

import http.server
import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from lookalike.catalog.product import Product
from lookalike.ingest.fetch import FetchLimits, ImageFetchError, fetch, image_digest
from lookalike.ingest.plan import (
    NoRoom,
    Plan,
    Room,
    check,
    fits_on_nodes,
    plan_resources,
    wait_for_plan,
)
from lookalike.ingest.stages import (
    EMBED,
    FAILED,
    UNCHANGED,
    _LazyStage,
    prepare_batch,
    prepare_product,
    product_from_json,
    product_to_json,
    read_images,
)
from lookalike.ingest.summary import ErrorSink, IngestError, Summary
from lookalike.ingest.worklist import iter_chunks
from lookalike.ingest.writer import StoreWriter, flush_and_wait_for_index
from lookalike.store.base import StoreError
from tests.checks import all_of

RESIZE = {"short_side": 256, "interpolation": "bicubic"}  # tf_efficientnet_lite0's first step

# -- resource sizing --------------------------------------------------------------------------


@pytest.mark.parametrize("cpus", [1, 2, 3, 4, 8, 16, 64])
def test_plan_leaves_room_for_tasks_on_every_cluster_size(cpus: int) -> None:
    plan = plan_resources(cpus)
    assert plan.reserved_cpus() + plan.read_cpus <= cpus  # a read task always fits
    assert plan.read_cpus < 1 and plan.prepare_actors >= 1
    assert plan.image_actors >= 1 and plan.device == "cpu"


def test_two_cpu_plan_matches_the_measured_sweet_spot() -> None:
    # One one-thread image actor per core (bench/p3_ingest.py: steady 33.7 -> 46.8 img/s
    # against one actor with two threads).
    plan = plan_resources(2)
    assert (plan.image_actors, plan.image_threads, plan.image_batch) == (2, 1, 8)
    assert plan.prepare_actors == 2 and plan.reserved_cpus() + 2 * plan.read_cpus <= 2


def test_one_thread_image_actors_stop_at_the_nodes_cores() -> None:
    # `lookalike demo`'s Ray has the 2 cores plus the app's replica slots: 3.5 CPUs free.
    assert plan_resources(3.5).image_actors == 3
    capped = plan_resources(3.5, cores=2)
    assert (capped.image_actors, capped.image_threads) == (2, 1)
    assert capped.image_cpus >= plan_resources(3.5).image_cpus  # the free share goes to fewer


def test_check_rejects_the_plan_that_hung() -> None:
    # Embedders 2 x 0.5 CPU + writers 2 x 0.25 reserved 1.5 of 2 CPUs; reads asked for 1 CPU.
    hung = Plan(image_actors=2, image_cpus=0.5, image_gpus=0, image_threads=1, image_batch=32,
                text_actors=2, text_cpus=0.25, text_gpus=0, text_threads=1, text_batch=256,
                prepare_actors=0, prepare_cpus=0, read_cpus=1.0, device="cpu")
    with pytest.raises(ValueError, match="CPUs"):
        check(hung, 2)


def test_plan_fits_actors_node_by_node() -> None:
    assert fits_on_nodes([1.0, 0.5], [1.0, 0.5]) and not fits_on_nodes([1.5], [1.0, 1.0])
    # 6 CPUs free in all but 1.5 on each node: no 2-CPU image actor, one that fits.
    whole = plan_resources(6)
    split = plan_resources(6, node_cpus=[1.5] * 4)
    assert whole.image_cpus > 1.5 >= split.image_cpus
    assert fits_on_nodes([split.image_cpus] * split.image_actors + [split.text_cpus]
                         + [split.prepare_cpus] * split.prepare_actors + [split.read_cpus],
                         [1.5] * 4)
    # Free CPUs in slivers no actor fits in: refused with the reason, not left to hang.
    with pytest.raises(ValueError, match="do not fit on the nodes"):
        plan_resources(1.2, node_cpus=[0.2] * 6)


def test_plan_counts_free_cpus_not_the_cluster() -> None:
    with pytest.raises(ValueError, match="1 free CPU, 0.25 are free"):
        plan_resources(0.25)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def make(room: Room) -> Plan:
    return plan_resources(room.cpus, room.gpus, node_cpus=room.node_cpus)


def test_wait_for_plan_waits_for_room_then_plans() -> None:
    clock, said = FakeClock(), []
    rooms = iter([Room((0.25,), total_cpus=2), Room((0.25,), total_cpus=2), Room((2.0,), total_cpus=2)])
    plan = wait_for_plan(lambda: next(rooms), make, wait_s=30, say=said.append, clock=clock,
                         sleep=clock.sleep)
    assert plan == plan_resources(2.0) and clock.now == 2.0
    assert len(said) == 1 and "0.25 of the cluster's 2 CPUs are free" in said[0]


def test_wait_for_plan_gives_up_with_what_it_waited_for() -> None:
    clock, said = FakeClock(), []
    held = Room((0.25, 0.0), total_cpus=2)  # the Serve replicas hold 1.75 of 2 CPUs
    with pytest.raises(NoRoom) as caught:
        wait_for_plan(lambda: held, make, wait_s=25, say=said.append, clock=clock,
                      sleep=clock.sleep)
    message = str(caught.value)
    assert 25 <= clock.now <= 26 and len(said) == 3  # said so at 0, 10 and 20 s
    assert "after waiting 25 s" in message and "1 free CPU, 0.25 are free" in message
    assert "Serve app" in message and "--wait-s" in message


def test_gpu_plan_splits_gpus_between_embedders() -> None:
    plan = plan_resources(16, 2, num_gpus=2)
    assert plan.device == "cuda" and plan.image_actors == 2
    assert plan.image_actors * plan.image_gpus + plan.text_gpus <= 2
    assert plan.image_batch > 8
    with pytest.raises(ValueError, match="GPUs"):
        plan_resources(16, 0, num_gpus=1)


# -- image reads ------------------------------------------------------------------------------


def _jpeg(color: tuple[int, int, int] = (200, 30, 40), size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="JPEG")
    return buf.getvalue()


def test_read_local_limits_and_reasons(tmp_path: Path) -> None:
    ok = tmp_path / "a.jpg"
    ok.write_bytes(_jpeg())
    limits = FetchLimits(max_bytes=100_000)
    assert fetch(str(ok), limits) == ok.read_bytes()
    with pytest.raises(ImageFetchError, match="no such file"):
        fetch(str(tmp_path / "missing.jpg"), limits)
    with pytest.raises(ImageFetchError, match="is a directory"):
        fetch(str(tmp_path), limits)
    with pytest.raises(ImageFetchError, match="limit"):
        fetch(str(ok), FetchLimits(max_bytes=10))


def test_catalog_refs_are_read_under_this_nodes_catalog_root(tmp_path: Path) -> None:
    (tmp_path / "cat" / "m").mkdir(parents=True)
    (tmp_path / "cat" / "m" / "a.jpg").write_bytes(_jpeg())
    limits = FetchLimits(max_bytes=100_000, catalog_root=str(tmp_path / "cat"))
    assert fetch("catalog:m/a.jpg", limits) == _jpeg()
    with pytest.raises(ImageFetchError, match="not under"):
        fetch("catalog:../cat/m/a.jpg", limits)
    with pytest.raises(ImageFetchError, match="CATALOG_ROOT is not set"):
        fetch("catalog:m/a.jpg", FetchLimits())


class _Handler(http.server.BaseHTTPRequestHandler):
    calls: ClassVar[dict[str, int]] = {}
    body = _jpeg()

    def do_GET(self) -> None:  # http.server's naming
        n = self.calls[self.path] = self.calls.get(self.path, 0) + 1
        if self.path.startswith("/flaky") and n == 1:
            self.send_error(503)
            return
        if self.path == "/slow":
            time.sleep(1.0)
        if self.path == "/gone":
            self.send_error(404)
            return
        body = self.body * (50 if self.path == "/big" else 1)
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_retries_then_succeeds_and_fails_fast_on_404(http_base: str) -> None:
    limits = FetchLimits(max_bytes=100_000, timeout_s=5, retries=2, backoff_s=0.01)
    assert fetch(f"{http_base}/flaky", limits) == _Handler.body
    assert _Handler.calls["/flaky"] == 2
    with pytest.raises(ImageFetchError, match=r"HTTP 404 \(1 attempt\)"):
        fetch(f"{http_base}/gone", limits)
    assert _Handler.calls["/gone"] == 1


def test_download_size_limit_and_timeout(http_base: str) -> None:
    with pytest.raises(ImageFetchError, match="limit"):
        fetch(f"{http_base}/big", FetchLimits(max_bytes=len(_Handler.body) * 10, retries=0))
    with pytest.raises(ImageFetchError, match=r"timed out .*\(2 attempts\)"):
        fetch(f"{http_base}/slow", FetchLimits(timeout_s=0.2, retries=1, backoff_s=0.01))


# -- prepare ----------------------------------------------------------------------------------


def test_prepare_product_embed_unchanged_failed(tmp_path: Path) -> None:
    a, b, bad = tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "bad.jpg"
    a.write_bytes(_jpeg((10, 10, 10)))
    b.write_bytes(_jpeg((250, 250, 250)))
    bad.write_bytes(b"not an image")
    limits, model = FetchLimits(), RESIZE
    p = Product("p1", title="Red dress", images=(str(a), str(b)))
    status, chash, reason, pixels = prepare_product(p, "", read_images(p, limits), model)
    assert status == EMBED and reason == "" and len(pixels) == 2
    assert chash == p.content_hash((image_digest(a.read_bytes()), image_digest(b.read_bytes())))
    # The model's resize only (short side 256, as the router sends it): uint8 RGB, no torch.
    assert pixels[0].dtype == np.uint8 and pixels[0].shape == (256, 256, 3)
    assert prepare_product(p, chash, read_images(p, limits), model)[:3] == (UNCHANGED, chash, "")
    # Same metadata, new photo bytes: the hash changes, so it is re-embedded.
    b.write_bytes(_jpeg((0, 0, 250)))
    assert prepare_product(p, chash, read_images(p, limits), model)[0] == EMBED
    corrupt = Product("p2", images=(str(bad),))
    status, _, reason, _ = prepare_product(corrupt, "", read_images(corrupt, limits), model)
    assert status == FAILED and "bad.jpg" in reason  # the decoder's own words follow the path
    missing = Product("p3", images=(str(a), str(tmp_path / "nope.jpg")))
    assert read_images(missing, limits) == f"{tmp_path / 'nope.jpg'}: no such file"


def test_the_image_stage_ends_with_the_very_pixels_of_the_models_whole_transform(tmp_path: Path) -> None:
    # Prepare resizes in PIL (no torch); the image stage runs the model's preprocessing on that.
    # Together they must give exactly what the model's transform gives on the decoded photo.
    import skimage

    from lookalike.embedding.image import ImagePreprocessor
    from lookalike.images import decode_image

    pre = ImagePreprocessor()
    assert pre.resize == RESIZE
    files = []
    for i, (arr, fmt) in enumerate([(skimage.data.coffee(), "JPEG"), (skimage.data.chelsea(), "PNG"),
                                    (skimage.data.camera(), "PNG"), (skimage.data.astronaut()[:90], "JPEG")]):
        files.append(tmp_path / f"{i}.{fmt.lower()}")
        Image.fromarray(arr).save(files[-1], fmt)
    p = Product("p", images=tuple(map(str, files)))
    status, _, _, pixels = prepare_product(p, "", read_images(p, FetchLimits()), RESIZE)
    assert status == EMBED
    all_of(pixels, lambda px: px.dtype == np.uint8 and 256 in px.shape[:2], "images")
    expected = pre([decode_image(f.read_bytes()) for f in files])
    np.testing.assert_array_equal(pre(pixels), expected)


def test_a_stage_told_to_load_now_loads_in_a_thread_and_a_failed_load_raises_on_use() -> None:
    made: list[str] = []

    class Stage(_LazyStage):
        def _make(self) -> str:
            made.append(threading.current_thread().name)
            return "model"

    class Broken(_LazyStage):
        def _make(self) -> str:
            raise RuntimeError("no weights here")

    eager = Stage(None, 1, 4, load_now=True)
    eager._loading.result()
    assert len(made) == 1 and made[0] != threading.main_thread().name
    assert eager.embedder == "model" and eager.embedder == "model" and len(made) == 1
    lazy = Stage(None, 1, 4)
    assert len(made) == 1  # nothing loaded until a batch needs it
    assert lazy.embedder == "model" and len(made) == 2
    with pytest.raises(RuntimeError, match="no weights here"):
        _ = Broken(None, 1, 4, load_now=True).embedder


def test_prepare_batch_one_row_per_image_and_markers(tmp_path: Path) -> None:
    a = tmp_path / "a.jpg"
    a.write_bytes(_jpeg())
    products = [Product("two", title="t", images=(str(a), str(a))),
                Product("gone", images=(str(tmp_path / "nope.jpg"),))]
    batch = {"row": np.array([4, 7]), "product_id": np.array(["two", "gone"], dtype=object),
             "product": np.array([product_to_json(p) for p in products], dtype=object),
             "stored_hash": np.array(["", ""], dtype=object)}
    with ThreadPoolExecutor(4) as pool:
        out = prepare_batch(batch, limits=FetchLimits(), resize=RESIZE, pool=pool)
    assert list(out["product_id"]) == ["two", "two", "gone"]
    assert list(out["image_index"]) == [0, 1, -1]
    assert list(out["status"]) == [EMBED, EMBED, FAILED]
    assert list(out["row"]) == [4, 4, 7]
    assert [bool(t) for t in out["text"]] == [True, False, False]  # text once per product
    assert out["pixels"][2] == b"" and (out["height"][0], out["width"][0]) == (256, 256)
    assert product_from_json(out["product"][0]) == products[0]


def test_prepare_batch_reads_urls_through_the_shared_fetcher(http_base: str) -> None:
    # The ingest's URL reads go through lookalike.fetch (OPERATOR policy: loopback allowed,
    # any port): one fetcher for the batch, used from the pool's threads.
    products = [Product("u1", images=(f"{http_base}/u1.jpg", f"{http_base}/flaky-u1")),
                Product("u2", images=(f"{http_base}/gone",))]
    batch = {"row": np.array([1, 2]), "product_id": np.array(["u1", "u2"], dtype=object),
             "product": np.array([product_to_json(p) for p in products], dtype=object),
             "stored_hash": np.array(["", ""], dtype=object)}
    with ThreadPoolExecutor(4) as pool:
        out = prepare_batch(batch, limits=FetchLimits(backoff_s=0.01),
                            resize=RESIZE, pool=pool)
    assert list(out["status"]) == [EMBED, EMBED, FAILED]
    assert _Handler.calls["/flaky-u1"] == 2  # a 503, then the retry


# -- manifest pre-pass --------------------------------------------------------------------------


def test_iter_chunks_keeps_row_numbers_and_ignores_hashes_from_other_models(tmp_path: Path) -> None:
    lines = [json.dumps({"product_id": f"p{i}", "images": ["x.jpg"]}) for i in range(5)]
    lines.insert(2, json.dumps({"product_id": "bad", "price": "abc", "images": ["x.jpg"]}))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    x = str(tmp_path / "x.jpg")
    stored = {"p0": ("h0", "v1", (x,)), "p1": ("h1", "old-model", (x,)),
              "p3": ("h3", "v1", ("/old/place/x.jpg",))}
    summary = Summary()
    errors = ErrorSink(summary)
    seen: set[str] = set()
    tables = list(iter_chunks(manifest, lambda ids: {i: stored[i] for i in ids if i in stored},
                              "v1", summary, errors, seen, chunk_rows=2))
    rows = [r for t in tables for r in t.to_pylist()]
    assert [r["row"] for r in rows] == [1, 2, 4, 5, 6]
    assert [r["stored_hash"] for r in rows[:2]] == ["h0", ""]  # p1 was made by another model
    # p3's images moved: its hash still counts (pixels decide), and it is marked for relinking.
    assert [(r["product_id"], r["relink"]) for r in rows] == [
        ("p0", False), ("p1", False), ("p2", False), ("p3", True), ("p4", False)]
    assert rows[3]["stored_hash"] == "h3"
    assert summary.read == 6 and summary.failed == 1
    assert seen == {f"p{i}" for i in range(5)} | {"bad"}  # still listed, so never deleted


# -- the writer ---------------------------------------------------------------------------------


class _ListStore:
    """A stand-in that records upsert calls (the real store is covered by integration tests)."""

    def __init__(self, reject: set[str] = frozenset(), down: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.reject, self.down = reject, down

    def upsert(self, items: list) -> int:
        ids = [it.product.product_id for it in items]
        if self.down or self.reject & set(ids):
            raise StoreError("rejected")
        self.calls.append(ids)
        return len(items)


def _rows(spec: list[tuple[str, int, int, str]]) -> dict[str, np.ndarray]:
    """(product_id, n_images, image_index, status) -> an output batch of the pipeline."""
    n = len(spec)
    return {
        "row": np.arange(1, n + 1), "product_id": np.array([s[0] for s in spec], dtype=object),
        "product": np.array([product_to_json(Product(s[0], images=("x",) * max(s[1], 1)))
                             for s in spec], dtype=object),
        "content_hash": np.array(["h"] * n, dtype=object),
        "status": np.array([s[3] for s in spec], dtype=object),
        "reason": np.array(["boom" if s[3] == FAILED else "" for s in spec], dtype=object),
        "n_images": np.array([s[1] for s in spec]), "image_index": np.array([s[2] for s in spec]),
        "image_vector": np.array([[float(s[2])] * 4 for s in spec], dtype=np.float32),
        "text_vector": np.ones((n, 3), dtype=np.float32),
    }


def test_writer_regroups_out_of_order_images_and_never_splits_a_product() -> None:
    store, summary = _ListStore(), Summary()
    writer = StoreWriter(store, summary, ErrorSink(summary), "v", batch_rows=3)
    writer.consume(_rows([("a", 2, 1, EMBED), ("b", 1, 0, EMBED), ("c", 0, -1, UNCHANGED)]))
    writer.consume(_rows([("d", 2, 0, EMBED), ("a", 2, 0, EMBED), ("e", 0, -1, FAILED)]))
    writer.consume(_rows([("d", 2, 1, EMBED)]))
    writer.close()
    assert store.calls == [["b", "a"], ["d"]]  # 3 rows then 2: "d" did not fit beside them
    assert (summary.embedded, summary.images_embedded, summary.written) == (3, 5, 3)
    assert (summary.skipped, summary.failed) == (1, 1)


def test_writer_isolates_a_rejected_product_and_stops_when_the_store_is_down() -> None:
    store, summary = _ListStore(reject={"b"}), Summary()
    writer = StoreWriter(store, summary, ErrorSink(summary), "v")
    writer.consume(_rows([("a", 1, 0, EMBED), ("b", 1, 0, EMBED)]))
    writer.close()
    assert store.calls == [["a"]] and summary.written == 1 and summary.failed == 1
    down = StoreWriter(_ListStore(down=True), Summary(), ErrorSink(Summary()), "v")
    down.consume(_rows([("a", 1, 0, EMBED)]))
    with pytest.raises(StoreError, match="every write"):
        down.close()


# -- reporting ----------------------------------------------------------------------------------


def test_summary_is_one_json_line_and_errors_go_to_jsonl(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    from lookalike.logs import JsonFormatter

    summary = Summary(read=10, embedded=7, images_embedded=9, written=7, skipped=2)
    sink = ErrorSink(summary, tmp_path / "errors.jsonl")
    sink.add(IngestError(3, "price", "not a number", "p3"))
    sink.close()
    assert json.loads((tmp_path / "errors.jsonl").read_text()) == {
        "row": 3, "field": "price", "reason": "not a number", "product_id": "p3"}
    summary.finish()
    with caplog.at_level(logging.INFO, logger="lookalike.ingest"):
        summary.emit()
    line = JsonFormatter().format(caplog.records[-1])
    data = json.loads(line)
    assert "\n" not in line and data["event"] == "ingest_summary" and data["logger"] == "lookalike.ingest"
    assert (data["read"], data["written"], data["skipped_unchanged"], data["failed"]) == (10, 7, 2, 1)
    assert "written" in summary.table() and "skipped (unchanged)" in summary.table()


def test_the_summary_splits_the_warm_up_into_its_parts() -> None:
    summary = Summary(probe_s=2.0, collection_s=1.0, worklist_s=0.5)
    assert summary.as_dict()["warmup_s"] is None and summary.as_dict()["pipeline_start_s"] is None
    summary.first_vector_at = summary.last_vector_at = summary.started + 6.0
    d = summary.as_dict()
    assert (d["warmup_s"], d["probe_s"], d["collection_s"], d["worklist_s"], d["pipeline_start_s"]) == (
        6.0, 2.0, 1.0, 0.5, 2.5)
    assert "model probe 2.0 s, collection 1.0 s, manifest pass 0.5 s, pipeline start 2.5 s" in summary.table()


class _IndexStore:
    """Records flush/wait calls; `ready` is what wait_index_ready answers."""

    def __init__(self, ready: bool) -> None:
        self.ready, self.calls = ready, []

    def flush(self) -> None:
        self.calls.append("flush")

    def wait_index_ready(self, timeout_s: float) -> bool:
        self.calls.append(("wait", timeout_s))
        return self.ready


@pytest.mark.parametrize(("wait", "ready", "calls", "says"), [
    (True, True, ["flush", ("wait", 5.0)], "ready"),
    (True, False, ["flush", ("wait", 5.0)], "still building after 5 s"),
    (False, True, ["flush"], "not waited for (--no-wait-index)"),
])
def test_the_job_flushes_then_waits_for_the_index_and_says_so(wait: bool, ready: bool,
                                                               calls: list, says: str) -> None:
    store, summary = _IndexStore(ready), Summary()
    flush_and_wait_for_index(store, summary, wait=wait, timeout_s=5.0)
    assert store.calls == calls and summary.index == says
    assert summary.as_dict()["index"] == says and f"indexes              {says}" in summary.table()


def test_a_row_that_went_bad_still_counts_as_listed_for_delete_missing(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"product_id": "ok", "images": ["a.jpg"]}\n'
                        '{"product_id": "typo", "price": "12,50", "images": ["b.jpg"]}\n'
                        '{"product_id": "", "images": ["c.jpg"]}\n')
    summary = Summary()
    seen: set[str] = set()
    list(iter_chunks(manifest, lambda ids: {}, "v", summary, ErrorSink(summary), seen))
    assert seen == {"ok", "typo"}


def test_variant_detection_runs_on_flushed_rows_and_its_time_is_in_the_summary(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Over rows still in milvus-lite's write buffer each detection search cost several times
    # the CPU (52.6 s against ~14 s for 2,000 products): the writer flushes first.
    from lookalike import variants
    from lookalike.config import Settings

    store, summary = _IndexStore(True), Summary()

    def detect(s: object, ids: list[str], thresholds: object) -> dict[str, int]:
        store.calls.append(("detect", tuple(ids)))
        return {"products": 2, "groups": 1}

    monkeypatch.setattr(variants, "detect", detect)
    writer = StoreWriter(store, summary, ErrorSink(summary), "v1", 8)
    writer.embedded_ids = ["a", "b"]
    writer.group_variants(Settings(variant_detection=True))
    assert store.calls == ["flush", ("detect", ("a", "b"))]
    assert summary.variants_relabelled == 2 and summary.as_dict()["variants_s"] >= 0
    assert "2  relabelled, 1 groups" in summary.table()
