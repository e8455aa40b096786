"""The patched milvus-lite server against exact search and against the unpatched server.

Real servers started the way lookalike starts them (LiteServer -> lite_launcher), real
pymilvus over gRPC. Small data (a few thousand 16-d rows) keeps this fast on 2 cores; the
scale numbers live in bench/p4_store.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymilvus import DataType, Function, FunctionType, MilvusClient

from lookalike.catalog.product import Product
from lookalike.config import Settings
from lookalike.ports import free_port
from lookalike.store import lite_executor
from lookalike.store.base import StoredProduct
from lookalike.store.lite_server import LiteServer
from lookalike.store.milvus import MilvusStore
from tests.checks import all_of

DIM = 16
SEARCH = {"metric_type": "COSINE", "params": {"ef": 4096}}  # ef >= segment size: exact HNSW


@pytest.fixture(scope="module")
def unpatched_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiteServer]:
    server = LiteServer(tmp_path_factory.mktemp("lite_unpatched"), free_port())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOOKALIKE_LITE_PATCH", "0")  # inherited by the supervisor and the server
        server.ensure_running()
    yield server
    server.stop()


def server_log(server: LiteServer) -> str:
    return server.logfile.read_text(errors="replace") if server.logfile.exists() else ""


class Writer:
    """Applies one scripted history of writes and tracks the live rows it should leave."""

    def __init__(self, client: MilvusClient, name: str) -> None:
        self.client, self.name = client, name
        self.live: dict[str, tuple[str, np.ndarray]] = {}
        self.rng = np.random.default_rng(42)  # same history on every server
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=32)
        schema.add_field("cat", DataType.VARCHAR, max_length=8)
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
        index = client.prepare_index_params()
        index.add_index(field_name="v", index_type="HNSW", metric_type="COSINE",
                        params={"params": {"M": 16, "efConstruction": 100}})
        client.create_collection(name, schema=schema, index_params=index,
                                 consistency_level="Strong")
        client.load_collection(name)

    def _rows(self, ids: range | list[int]) -> list[dict]:
        rows = []
        for i in ids:
            vec = self.rng.standard_normal(DIM).astype(np.float32)
            rows.append({"pk": f"p{i}", "cat": "ab"[i % 2], "v": vec.tolist()})
        return rows

    def upsert(self, ids: range | list[int]) -> None:
        rows = self._rows(ids)
        self.client.upsert(self.name, rows)
        for r in rows:
            self.live[r["pk"]] = (r["cat"], np.asarray(r["v"], dtype=np.float32))

    def delete(self, ids: range | list[int]) -> None:
        pks = [f"p{i}" for i in ids]
        self.client.delete(self.name, ids=pks)
        for pk in pks:
            self.live.pop(pk, None)

    def flush(self) -> None:
        self.client.flush(self.name)

    def history(self) -> None:
        self.upsert(range(1200))
        self.flush()
        self.upsert(range(100, 400))          # upserts of flushed ids: old copies stay behind
        self.flush()
        self.delete(range(350, 500))          # tombstones for rows in two segments
        self.upsert(range(1200, 1600))
        self.flush()
        self.upsert(range(200, 260))
        self.flush()
        self.upsert(range(1000, 1100))        # 5 flushes: background compaction kicks in
        self.flush()
        # Left in the unflushed buffer: upserts and deletes of flushed ids, new ids, and
        # writes to ids that only live in the buffer.
        self.upsert(range(500, 560))
        self.delete(range(1500, 1520))
        self.upsert(range(1600, 1650))
        self.delete([1610, 1611])
        self.upsert([1620, 1621, 360])       # 360 was deleted above: back again


def exact(live: dict, queries: np.ndarray, k: int, cat: str | None = None) -> list[list[str]]:
    pks = [pk for pk, (c, _) in live.items() if cat is None or c == cat]
    mat = np.stack([live[pk][1] for pk in pks])
    mat /= np.linalg.norm(mat, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = q @ mat.T
    return [[pks[j] for j in np.argsort(-row, kind="stable")[:k]] for row in sims], sims, pks


def search(client: MilvusClient, name: str, queries: np.ndarray, k: int,
           expr: str = "") -> list[list[tuple[str, float]]]:
    res = client.search(name, data=queries.tolist(), anns_field="v", limit=k, filter=expr,
                        search_params=SEARCH, output_fields=["cat"], consistency_level="Strong")
    for hits in res:  # entities are materialised for the returned rows
        all_of(hits, lambda h: h["entity"]["cat"] == "ab"[int(h["pk"][1:]) % 2], "hits")
    return [[(h["pk"], float(h["distance"])) for h in hits] for hits in res]


def assert_matches_exact(got, live, queries, k, cat=None) -> None:
    want, sims, pks = exact(live, queries, k, cat)
    col = {pk: j for j, pk in enumerate(pks)}
    for q, (g, w) in enumerate(zip(got, want)):
        assert [pk for pk, _ in g] == w, f"query {q}"
        np.testing.assert_allclose([d for _, d in g], [sims[q, col[pk]] for pk in w], atol=1e-4)


def wait_indexed(client: MilvusClient, name: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        info = client.describe_index(name, index_name="v")
        if info["state"] == "Finished" and info["pending_index_rows"] == 0:
            return info
        assert time.monotonic() < deadline, info
        time.sleep(0.2)


def test_lookalike_server_runs_patched(lite_server: LiteServer, unpatched_server: LiteServer
                                       ) -> None:
    assert "search patch applied" in server_log(lite_server)
    assert "runs unpatched" in server_log(unpatched_server)


def test_patched_results_equal_exact_search_and_unpatched(
        lite_server: LiteServer, unpatched_server: LiteServer) -> None:
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((12, DIM)).astype(np.float32)
    k = 10
    results = {}
    for label, server in (("patched", lite_server), ("unpatched", unpatched_server)):
        client = MilvusClient(uri=server.uri, token=server.token())
        name = "lite_patch_history"
        if client.has_collection(name):
            client.drop_collection(name)
        writer = Writer(client, name)
        writer.history()
        live = writer.live
        # Searched twice: the second run answers from the cached masks.
        for _ in range(2):
            got = search(client, name, queries, k)
            assert_matches_exact(got, live, queries, k)
        got_a = search(client, name, queries, k, expr='cat == "a"')
        assert_matches_exact(got_a, live, queries, k, cat="a")
        results[label] = (got, got_a)
        # Scalar queries (the patch materialises only the output fields, from cached columns):
        # twice, the second from the cache, for every projection, against the live rows.
        ids = [f"p{i}" for i in (5, 150, 355, 520, 1210, 1605, 1620, 360, 9999)]
        for fields in (["cat"], ["cat", "v"], ["pk"], None, ["*"]):
            for _ in range(2):
                rows = sorted(client.query(name, filter=f"pk in {ids} and cat in ['a', 'b']",
                                           output_fields=fields, consistency_level="Strong"),
                              key=lambda r: r["pk"])
                assert [r["pk"] for r in rows] == sorted(pk for pk in ids if pk in live)
                for r in rows:
                    if fields != ["pk"]:
                        assert r["cat"] == live[r["pk"]][0]
                    if fields != ["cat"] and fields != ["pk"]:
                        np.testing.assert_allclose(r["v"], live[r["pk"]][1], atol=1e-6)
                    want = {"pk", "cat"} if fields == ["cat"] else {"pk"} if fields == ["pk"] \
                        else {"pk", "cat", "v"}
                    assert set(r) == want, (fields, r.keys())
        cats = client.query(name, filter='cat == "b"', output_fields=["cat"],
                            consistency_level="Strong")
        assert sorted(r["pk"] for r in cats) == sorted(pk for pk, (c, _) in live.items()
                                                      if c == "b")
        # A write after cached searches must show at once (cache invalidated by the write).
        writer.delete([int(got[0][0][0][1:])])
        assert_matches_exact(search(client, name, queries, k), live, queries, k)
        client.flush(name)
        if label == "patched":
            info = wait_indexed(client, name)
            assert info["indexed_rows"] == info["total_rows"] > 0
        assert_matches_exact(search(client, name, queries, k), live, queries, k)
        client.drop_collection(name)
        client.close()
    for (p, u) in zip(results["patched"], results["unpatched"]):
        assert [[pk for pk, _ in r] for r in p] == [[pk for pk, _ in r] for r in u]
        np.testing.assert_allclose([[d for _, d in r] for r in p],
                                   [[d for _, d in r] for r in u], atol=1e-5)


# -- BM25 full-text search --------------------------------------------------------------------

WORDS = ["red", "blue", "linen", "dress", "coat", "wool", "boot", "leather", "silk", "scarf"]


def lexical_history(client: MilvusClient, name: str) -> dict[str, str]:
    """The same writes on any server (three flushes: no background compaction, so both servers
    hold the same segments and BM25's per-segment statistics agree); returns the live words."""
    rng = np.random.default_rng(7)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=32)
    schema.add_field("words", DataType.VARCHAR, max_length=256, enable_analyzer=True)
    schema.add_field("cat", DataType.VARCHAR, max_length=8)
    schema.add_field("lexical", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                 input_field_names=["words"], output_field_names=["lexical"]))
    index = client.prepare_index_params()
    index.add_index(field_name="v", index_type="HNSW", metric_type="COSINE",
                    params={"params": {"M": 16, "efConstruction": 100}})
    index.add_index(field_name="lexical", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
    client.load_collection(name)
    live: dict[str, str] = {}

    def upsert(ids: range | list[int]) -> None:
        rows = [{"pk": f"d{i}", "cat": "ab"[i % 2], "v": rng.standard_normal(DIM).tolist(),
                 "words": " ".join(rng.choice(WORDS, size=int(rng.integers(2, 6))))}
                for i in ids]
        client.upsert(name, rows)
        live.update({r["pk"]: r["words"] for r in rows})

    def delete(ids: range | list[int]) -> None:
        client.delete(name, ids=[f"d{i}" for i in ids])
        for i in ids:
            live.pop(f"d{i}", None)

    upsert(range(400))
    client.flush(name)
    upsert(range(50, 150))   # flushed ids rewritten: their old copies stay in the first segment
    delete(range(120, 170))
    client.flush(name)
    upsert(range(400, 450))
    client.flush(name)
    upsert(range(10, 30))    # left unflushed: memtable copies that shadow segment rows
    delete([0, 1, 2, 415])
    upsert(range(450, 470))
    return live


def on_both(lite_server: LiteServer, unpatched_server: LiteServer, name: str
            ) -> Iterator[tuple[str, MilvusClient, dict[str, str]]]:
    """Each server in turn, with lexical_history written into a new collection `name`."""
    for label, server in (("patched", lite_server), ("unpatched", unpatched_server)):
        client = MilvusClient(uri=server.uri, token=server.token())
        if client.has_collection(name):
            client.drop_collection(name)
        yield label, client, lexical_history(client, name)
        client.drop_collection(name)
        client.close()


def test_patched_bm25_search_equals_unpatched(lite_server: LiteServer,
                                              unpatched_server: LiteServer) -> None:
    queries = ["red dress", "wool coat", "leather boot", "silk"]
    results = {}
    name = "lite_patch_bm25"
    for label, client, live in on_both(lite_server, unpatched_server, name):
        got = []
        for expr in ("", 'cat == "a"'):
            for fields in (["words"], ["words", "v"]):
                res = client.search(name, data=queries, anns_field="lexical", limit=15,
                                    filter=expr, output_fields=fields,
                                    search_params={"metric_type": "BM25"},
                                    consistency_level="Strong")
                for hits in res:
                    for h in hits:  # only live rows, each with its newest words
                        assert h["entity"]["words"] == live[h["pk"]], (label, h)
                        assert set(h["entity"]) == set(fields), (label, h["entity"].keys())
                got.append([[(h["pk"], round(float(h["distance"]), 4)) for h in hits]
                            for hits in res])
        assert any(hits for run in got for hits in run)
        results[label] = got
    assert results["patched"] == results["unpatched"]


def test_patched_scalar_query_equals_unpatched(lite_server: LiteServer,
                                               unpatched_server: LiteServer) -> None:
    """The same rows in the same order, with every option the store uses (and the iterator's)."""
    calls = [dict(filter='pk in ["d5", "d15", "d60", "d125", "d0", "d460", "d999"]',
                  output_fields=["words", "cat"]),
             dict(filter='cat == "a"', output_fields=["words"]),
             dict(filter='cat == "b" and pk not in ["d11", "d12"]', output_fields=["pk"]),
             dict(filter='cat == "a"', output_fields=["words", "v"], limit=7, offset=3),
             dict(filter='pk in ["d20", "d21", "d130"]', output_fields=["*"])]
    results = {}
    name = "lite_patch_query"
    for label, client, live in on_both(lite_server, unpatched_server, name):
        got = []
        for call in calls:
            for _ in range(2):  # the second answers from the cached masks and columns
                rows = client.query(name, consistency_level="Strong", **call)
                for r in rows:
                    assert r["pk"] in live, (label, call, r["pk"])
                    if "words" in r:
                        assert r["words"] == live[r["pk"]], (label, r)
                got.append([{k: (np.round(v, 5).tolist() if k == "v" else v)
                             for k, v in sorted(r.items())} for r in rows])
        # A query iterator: the server sorts by pk (order_by_pk) and pages by limit.
        it = client.query_iterator(name, batch_size=40, filter='cat == "a"',
                                   output_fields=["words"], consistency_level="Strong")
        pages = []
        while page := it.next():
            pages.append([(r["pk"], r["words"]) for r in page])
        it.close()
        assert [pk for page in pages for pk, _ in page] == sorted(
            pk for pk in live if int(pk[1:]) % 2 == 0)
        got.append(pages)
        # got holds each call twice; the third is every live "b" row but d11 (d12 is an "a").
        assert {r["pk"] for r in got[4]} == {pk for pk in live if int(pk[1:]) % 2} - {"d11"}
        results[label] = got
    assert results["patched"] == results["unpatched"]


# -- index parameters -------------------------------------------------------------------------


def products(n: int, rng: np.random.Generator, image_dim: int, text_dim: int
             ) -> list[StoredProduct]:
    # One category: the partition key then puts every row in one segment, big enough for IVF.
    return [StoredProduct(Product(product_id=f"sku{i}", title=f"item {i}", category="shoes"),
                          rng.standard_normal((1, image_dim)).astype(np.float32),
                          rng.standard_normal(text_dim).astype(np.float32))
            for i in range(n)]


def test_build_params_reach_the_server_side_index(lite_server: LiteServer, tmp_path: Path) -> None:
    """M/efConstruction (HNSW) and nlist (IVF) as written by the server that lookalike runs:
    read back from the index files it built, after the store says the index is ready."""
    import faiss

    rng = np.random.default_rng(5)
    cases = {"HNSW": dict(hnsw_m=12, hnsw_ef_construction=77),
             "IVF_FLAT": dict(ivf_nlist=8, ivf_nprobe=3)}
    for index_type, knobs in cases.items():
        name = f"t_params_{index_type.lower()}"
        settings = Settings(data_dir=lite_server.data_dir, lite_port=lite_server.port,
                            collection=name, port=free_port(), admin_key="lite-patch-admin-key",
                            index_type=index_type, **knobs)
        store = MilvusStore.from_settings(settings, image_dim=32, text_dim=8)
        try:
            store.drop()
            store.ensure_collection()
            store.upsert(products(40, rng, 32, 8))
            store.flush()
            assert store.wait_index_ready(timeout_s=60)
            files = sorted(lite_server.db_dir.rglob(f"*.image_vector.{index_type.lower()}.idx"))
            files = [f for f in files if name in str(f)]
            assert files, f"no {index_type} index file for {name}"
            index = faiss.read_index(str(files[0]))
            if index_type == "HNSW":
                hnsw = faiss.downcast_index(index).hnsw
                assert hnsw.efConstruction == 77
                assert hnsw.nb_neighbors(1) == 12  # M neighbours above level 0 (2*M at 0)
            else:
                assert faiss.extract_index_ivf(index).nlist == 8
        finally:
            store.drop()
            store.close()


def test_search_params_reach_the_server_side_index(tmp_path: Path) -> None:
    """ef (HNSW) and nprobe (IVF) are search-time knobs, never written to disk: run
    milvus-lite's own gRPC server in this process, search through MilvusStore, and read the
    knob off the live faiss object the server searched with."""
    from milvus_lite.adapter.grpc.server import start_server_in_thread

    server, db, port = start_server_in_thread(str(tmp_path / "db"))
    rng = np.random.default_rng(6)
    try:
        for index_type, knobs, check in (
                ("HNSW", dict(search_ef=55), lambda ix: ix.hnsw.efSearch == 55),
                ("IVF_FLAT", dict(ivf_nlist=8, ivf_nprobe=3), lambda ix: ix.nprobe == 3)):
            name = f"t_search_{index_type.lower()}"
            settings = Settings(milvus_uri=f"http://127.0.0.1:{port}", collection=name,
                                data_dir=tmp_path, admin_key="lite-patch-admin-key",
                                index_type=index_type, **knobs)
            store = MilvusStore.from_settings(settings, image_dim=32, text_dim=8)
            store.ensure_collection()
            items = products(40, rng, 32, 8)
            store.upsert(items)
            store.flush()
            col = db.get_collection(name)
            col._wait_for_bg()  # in-process: wait for the background build
            hits = store.search(image_vector=items[0].image_vectors[0], top_k=5)
            assert hits and hits[0].product.product_id == "sku0"
            segments = col._segments_snapshot()
            indexes = [seg.indexes["image_vector"] for seg in segments]
            assert indexes and all(check(ix._index) for ix in indexes)
            store.close()
    finally:
        server.stop(grace=1)
        db.close()


def test_describe_index_reports_real_progress(lite_server: LiteServer,
                                              unpatched_server: LiteServer) -> None:
    """Patched DescribeIndex counts the stored rows that have an index (old upserted copies
    included) and says InProgress until all do; stock milvus-lite echoes the live row count
    with Finished at once. Two flushed segments of 300 + 100 rows, 300 live."""
    for server, want_total in ((lite_server, 400), (unpatched_server, 300)):
        client = MilvusClient(uri=server.uri, token=server.token())
        name = "lite_patch_progress"
        if client.has_collection(name):
            client.drop_collection(name)
        writer = Writer(client, name)
        writer.upsert(range(300))
        writer.flush()
        writer.upsert(range(100))
        writer.flush()
        info = wait_indexed(client, name)
        assert (info["indexed_rows"], info["total_rows"]) == (want_total, want_total), info
        client.drop_collection(name)
        client.close()


@contextmanager
def in_process_collection(tmp_path: Path, dim: int) -> Iterator[Any]:
    """A real milvus-lite Collection in this process (pk, cat, v), unpatched: the tests call
    lite_executor's functions on it directly."""
    from milvus_lite.db import MilvusLite
    from milvus_lite.schema.types import CollectionSchema, DataType, FieldSchema

    db = MilvusLite(str(tmp_path / "db"))
    try:
        yield db.create_collection("c", CollectionSchema(fields=[
            FieldSchema("pk", DataType.VARCHAR, is_primary=True, max_length=32),
            FieldSchema("cat", DataType.VARCHAR, max_length=8),
            FieldSchema("v", DataType.FLOAT_VECTOR, dim=dim)]))
    finally:
        db.close()


def test_memtable_snapshot_matches_milvus_lite(tmp_path: Path) -> None:
    """The numpy memtable snapshot equals MemTable.to_search_snapshot on a real Collection."""
    rng = np.random.default_rng(1)
    with in_process_collection(tmp_path, dim=8) as col:
        col.create_partition("p2")

        def rows(ids):
            return [{"pk": f"k{i}", "cat": "ab"[i % 2], "v": rng.standard_normal(8).tolist()}
                    for i in ids]

        col.insert(rows(range(50)))
        col.insert(rows(range(40, 70)), partition_name="p2")
        col.upsert(rows(range(10, 20)))
        col.delete(["k3", "k45", "k99"])
        mt = col._memtable
        for parts in (None, ["_default"], ["p2"]):
            for include_table in (False, True):
                want = mt.to_search_snapshot("v", parts, include_table)
                got = lite_executor._search_snapshot(mt, "v", parts, include_table)
                assert got[0] == want[0] and got[3] == want[3]
                np.testing.assert_array_equal(got[1], want[1])
                np.testing.assert_array_equal(got[2], want[2])
                if include_table:
                    assert got[4].equals(want[4])


def test_patched_query_survives_a_flush_between_its_view_and_its_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush swaps in a new, empty MemTable; a query that looked at the old one must read its
    rows from it (it read `self._memtable` again and failed with IndexError under writes)."""
    with in_process_collection(tmp_path, dim=4) as col:
        col.insert([{"pk": f"k{i}", "cat": "ab"[i % 2], "v": [1.0, i, 0.0, 0.0]}
                    for i in range(10)])
        view = lite_executor._memtable_view

        def view_then_flush(*args, **kwargs):
            out = view(*args, **kwargs)
            col.flush()  # the flush policy's, between this query's two reads
            return out

        monkeypatch.setattr(lite_executor, "_memtable_view", view_then_flush)
        rows = lite_executor.query(col, 'cat == "a"', output_fields=["pk", "cat"])
        assert sorted(r["pk"] for r in rows) == [f"k{i}" for i in range(0, 10, 2)]
