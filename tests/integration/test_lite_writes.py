"""Concurrent writes to the embedded milvus-lite server survive a crash of the server.

milvus-lite 3.2.2 takes no lock around a write, so concurrent upserts interleave their record
batches in the WAL, and a restart's recovery stops at the first unreadable one: on the unpatched
server, 795 of 800 acknowledged upserts were gone after a SIGKILL. lookalike's server runs each
collection's writes one at a time (lookalike/store/lite_patch.py::serialize_writes). Every
deployment writes concurrently: router replicas, PUTs, the ingest job's writer, flushes.
"""

from __future__ import annotations

import threading
import time

from pymilvus import DataType, MilvusClient

from lookalike.ports import free_port
from lookalike.store.lite_server import LiteServer

WRITERS = 8
WRITES_EACH = 40
DIM = 64
BACK_WITHIN_S = 60.0


def _schema(client: MilvusClient) -> tuple[object, object]:
    schema = client.create_schema(auto_id=False)
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("title", DataType.VARCHAR, max_length=512)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    index = client.prepare_index_params()
    index.add_index("v", index_type="FLAT", metric_type="COSINE")
    return schema, index


def _all_pks(client: MilvusClient) -> set[str]:
    rows = client.query("t", filter="pk != ''", output_fields=["pk"],
                        limit=WRITERS * WRITES_EACH + 10)
    return {r["pk"] for r in rows}


def test_acknowledged_concurrent_upserts_survive_a_killed_server(tmp_path) -> None:
    server = LiteServer(tmp_path, free_port())
    server.ensure_running()
    try:
        client = MilvusClient(uri=server.uri, token=server.token())
        schema, index = _schema(client)
        client.create_collection("t", schema=schema, index_params=index)
        acked: list[str] = []
        errors: list[BaseException] = []

        def writer(w: int) -> None:
            own = MilvusClient(uri=server.uri, token=server.token())  # a connection each
            try:
                for i in range(WRITES_EACH):
                    pk = f"w{w}-{i}"
                    # Strings of varying length: an interleaved batch is unreadable, not lucky.
                    own.upsert("t", [{"pk": pk, "title": "x" * (50 + i * 7) + pk,
                                      "v": [float(w + 1)] * (DIM - 1) + [float(i)]}])
                    acked.append(pk)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                own.close()

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert len(acked) == WRITERS * WRITES_EACH
        assert _all_pks(client) == set(acked)  # all there before the crash (nothing flushed)
        client.close()

        server.kill_server()  # SIGKILL: no flush, no clean close; its supervisor restarts it
        deadline, seen = time.monotonic() + BACK_WITHIN_S, None
        while time.monotonic() < deadline:
            try:
                back = MilvusClient(uri=server.uri, token=server.token())
                back.load_collection("t")
                seen = _all_pks(back)
                back.close()
                break
            except Exception as exc:  # noqa: BLE001 - still coming back
                seen = exc
                time.sleep(0.5)
        assert isinstance(seen, set), f"the server did not come back: {seen!r}"
        lost = set(acked) - seen
        assert not lost, f"{len(lost)} of {len(acked)} acknowledged upserts lost after the crash"
        assert "WAL recovery stopped" not in server.logfile.read_text()
    finally:
        server.stop()
