"""Make milvus-lite's search cost independent of the number of stored rows.

Applied only inside the milvus-lite server process that lookalike starts
(lite_launcher.main), never in a caller's process. Rationale, measurements and the
upstreamable diff: docs/milvus-lite-patch.md.

milvus-lite 3.2.2 walks every stored row in Python on every search to decide which rows are
visible (upsert de-dup by seq, delete checks). This module replaces that with cached,
vectorised masks (lookalike/store/lite_masks.py):

* per segment, the "is the newest copy among the segments" mask is cached for a given set of
  segments (segments are immutable, so only flush/compaction changes it);
* per segment, the masks from the delete map and from the unflushed memtable are cached and
  keyed by write-version counters that every write bumps;
* the memtable's search snapshot is built with numpy instead of one ``as_py()`` per vector,
  and cached until the next write;
* brute force (memtable, segments whose index is still building) no longer copies and
  re-normalises the candidate matrix per query; HNSW pre-filters use a bitmap selector
  instead of building a hash set of every visible id per query;
* a scalar query uses the same cached visibility masks and materialises only the matching
  rows' returned columns: milvus-lite walked every row, concatenated every vector and
  converted both vectors of every match before projecting them away;
* BM25 full-text search uses the same cached visibility masks and materialises only the
  projected columns of its hits (milvus-lite's walked every row and converted every column).

It also holds one correctness fix, `serialize_writes` (concurrent writes lost acknowledged
rows after a crash), which the launcher applies whatever the switch below says.

The executor and its caches live in lite_executor.py; this module installs them plus the
write-version hooks, the index-side fixes and DescribeIndex progress. Filters, merge order
and projection stay milvus-lite's own code.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from typing import Any

import numpy as np

from lookalike.store import lite_executor
from lookalike.store import lite_masks as lm
from lookalike.store.lite_version import SUPPORTED_VERSION, installed_version

log = logging.getLogger(__name__)

ENV_SWITCH = "LOOKALIKE_LITE_PATCH"
_applied = False
_apply_lock = threading.Lock()


def enabled_by_env() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def is_applied() -> bool:
    return _applied


def apply() -> bool:
    """Install the patch into this process. Returns True if applied.

    Exact version pin: the patch reimplements private internals, so on any other milvus-lite
    it stays out (logged) rather than risk wrong answers.
    """
    global _applied
    with _apply_lock:
        if _applied:
            return True
        if not enabled_by_env():
            log.warning("%s=0: milvus-lite runs unpatched (slow search at scale)", ENV_SWITCH)
            return False
        version = installed_version()
        if version != SUPPORTED_VERSION:
            log.warning("milvus-lite %s is not %s: search patch not applied, running unpatched",
                        version, SUPPORTED_VERSION)
            return False
        _install()
        _applied = True
        log.info("milvus-lite %s search patch applied", version)
        return True


# -- one write at a time per collection (always applied) ------------------------------------------

# A write, and the flush that swaps the memtable and the WAL a write appends to (insert may run
# it; so do flush, close and drop_partition).
_WRITES = ("insert", "upsert", "delete")
_FLUSH = "_trigger_flush"


def serialize_writes() -> bool:
    """Run a collection's writes and flushes one at a time. A correctness fix, so applied
    whatever the search patch's switch or milvus-lite's version says: a lock cannot change an
    answer.

    milvus-lite 3.2.2 serves each gRPC request on a thread of a pool and takes no lock around a
    write: concurrent upserts allocate sequence numbers and append Arrow record batches to the
    same WAL file at once, and a flush swaps the memtable and the WAL outside any lock. Readers
    see the right rows (the memtable has its own lock), but the WAL stream is interleaved, and
    after a crash its recovery stops at the first unreadable batch: acknowledged writes are
    lost. Measured on the unpatched server: 8 clients, 800 acknowledged upserts, the server
    SIGKILLed, 3 rows came back ("WAL recovery stopped at batch boundary 3";
    tests/integration/test_lite_writes.py). Any deployment writes concurrently: two router
    replicas, PUTs, the ingest job's writer, the routers' flushes.

    Its own re-entrant lock per collection (upsert calls insert; insert may flush), taken before
    milvus-lite's `_maintenance_lock`, never after: compaction holds only that one, so writes do
    not wait for a compaction.
    """
    from milvus_lite.engine import collection as collection_mod

    cls = collection_mod.Collection
    if getattr(cls, "_lk_serialized", False):
        return True
    missing = [name for name in _WRITES if not callable(getattr(cls, name, None))]
    if missing:
        log.warning("milvus-lite Collection has no %s: writes are not serialized", missing)
        return False
    if not callable(getattr(cls, _FLUSH, None)):
        log.warning("milvus-lite Collection has no %s: flushes are not serialized with writes",
                    _FLUSH)
    def lock_of(col: Any) -> Any:
        # dict.setdefault is atomic: two first writers still end up with the same lock.
        return col.__dict__.setdefault("_lk_write_lock", threading.RLock())

    def serialized(write: Any) -> Any:
        @functools.wraps(write)
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            with lock_of(self):
                return write(self, *args, **kwargs)
        return method

    for name in (*_WRITES, _FLUSH):
        if callable(getattr(cls, name, None)):
            setattr(cls, name, serialized(getattr(cls, name)))
    cls._lk_serialized = True
    return True


# -- write-version tracking -------------------------------------------------------------------


def _install() -> None:
    from milvus_lite.adapter.grpc import servicer as servicer_mod
    from milvus_lite.engine import collection as collection_mod
    from milvus_lite.index import brute_force, faiss_hnsw
    from milvus_lite.search import executor_indexed
    from milvus_lite.storage import delta_index, memtable, segment

    _track_memtable(memtable.MemTable)
    _track_delta_index(delta_index.DeltaIndex)
    collection_mod.Segment = lite_executor.cached_segment_class(segment.Segment)
    collection_mod.Collection.query = lite_executor.query
    collection_mod.project_record = lite_executor.project_record  # what search projects hits with
    collection_mod.Collection._search_sparse = lite_executor.search_sparse
    executor_indexed.execute_search_with_index = lite_executor.execute_search_with_index
    collection_mod.execute_search_with_index = lite_executor.execute_search_with_index
    _patch_brute_force(brute_force.BruteForceIndex)
    _patch_faiss_hnsw(faiss_hnsw.FaissHnswIndex)
    _patch_describe_index(servicer_mod.MilvusServicer)


def _track_memtable(cls: Any) -> None:
    """Give each MemTable a unique serial and a version bumped by every write.

    The bump happens under the memtable's own (re-entrant) lock together with the write, so
    a reader that holds that lock sees a version that matches the contents.
    """
    init, ins, dele = cls.__init__, cls.apply_insert, cls.apply_delete

    def __init__(self: Any, *a: Any, **kw: Any) -> None:
        init(self, *a, **kw)
        self._lk_serial = next(lite_executor.serials)
        self._lk_version = 0
        self._lk_cache: dict[Any, Any] = {}

    def apply_insert(self: Any, batch: Any) -> None:
        with self._lock:
            ins(self, batch)
            self._lk_version += 1

    def apply_delete(self: Any, batch: Any) -> None:
        with self._lock:
            dele(self, batch)
            self._lk_version += 1

    cls.__init__, cls.apply_insert, cls.apply_delete = __init__, apply_insert, apply_delete


def _track_delta_index(cls: Any) -> None:
    """Reuse one frozen copy of the delete map until the live map changes.

    milvus-lite copies the whole delete map for every search (O(tombstones)); the copy is
    read-only by contract, so handing out the same copy until the next add/GC is equivalent,
    and its serial lets the executor cache masks derived from it.
    """
    add_batch, gc_below = cls.add_batch, cls.gc_below
    frozen_copy = cls.frozen_copy

    def _bump(self: Any) -> None:
        self._lk_version = getattr(self, "_lk_version", 0) + 1

    def add_batch_(self: Any, batch: Any) -> None:
        add_batch(self, batch)
        if batch.num_rows:
            _bump(self)

    def gc_below_(self: Any, min_active_data_seq: int) -> int:
        removed = gc_below(self, min_active_data_seq)
        if removed:
            _bump(self)
        return removed

    def frozen_copy_(self: Any) -> Any:
        version = getattr(self, "_lk_version", 0)
        cached = getattr(self, "_lk_frozen", None)
        if cached is not None and cached[0] == version:
            return cached[1]
        copy = frozen_copy(self)
        copy._lk_serial = next(lite_executor.serials)
        self._lk_frozen = (version, copy)
        return copy

    cls.add_batch, cls.gc_below, cls.frozen_copy = add_batch_, gc_below_, frozen_copy_


# -- index-side fixes -------------------------------------------------------------------------


def _patch_brute_force(cls: Any) -> None:
    """No copy of the candidate matrix when every row is valid (milvus-lite gathers
    ``vectors[arange(n)]`` on every query even then)."""
    original = cls.search

    def search(self: Any, queries: np.ndarray, top_k: int, valid_mask: Any = None,
               params: Any = None) -> Any:
        if self.metric == "COSINE" and self.num_vectors and top_k > 0:
            q = queries.reshape(1, -1) if queries.ndim == 1 else queries
            return lm.cosine_topk(q, self._vectors, lm.inverse_norms(self._vectors), top_k,
                                  None if valid_mask is None else valid_mask.astype(bool))
        return original(self, queries, top_k, valid_mask, params)

    cls.search = search


def _patch_faiss_hnsw(cls: Any) -> None:
    """HNSW pre-filter through a bitmap, and vectorised distance conversion.

    milvus-lite builds ``IDSelectorBatch(flatnonzero(mask))`` per query: a C++ hash set of
    every visible id (~8 ms at 86k ids). A packed bitmap is the same predicate for ~15 us.
    """
    import faiss

    def search(self: Any, queries: np.ndarray, top_k: int, valid_mask: Any = None,
               params: Any = None) -> Any:
        if queries.ndim == 1:
            queries = queries.reshape(1, -1)
        if queries.dtype != np.float32:
            queries = queries.astype(np.float32, copy=False)
        nq = int(queries.shape[0])
        result_ids = np.full((nq, top_k), -1, dtype=np.int64)
        result_dists = np.full((nq, top_k), np.inf, dtype=np.float32)
        if self.num_vectors == 0 or top_k <= 0:
            return result_ids, result_dists
        if self.metric == "COSINE":
            norms = np.linalg.norm(queries, axis=1, keepdims=True)
            queries = queries / np.where(norms == 0, 1.0, norms)
        ef = int((params or {}).get("ef", 64))
        self._index.hnsw.efSearch = ef
        queries_c = np.ascontiguousarray(queries, dtype=np.float32)
        if valid_mask is not None:
            if valid_mask.shape[0] != self.num_vectors:
                raise ValueError(f"valid_mask length {valid_mask.shape[0]} != num_vectors "
                                 f"{self.num_vectors}")
            mask = valid_mask.astype(bool, copy=False)
            if not mask.any():
                return result_ids, result_dists
            bits = np.packbits(mask, bitorder="little")
            sel = faiss.IDSelectorBitmap(self.num_vectors, faiss.swig_ptr(bits))
            sp = faiss.SearchParametersHNSW(sel=sel, efSearch=ef)
            d, i = self._index.search(queries_c, top_k, params=sp)
            del sel, bits  # kept alive through the search above
        else:
            d, i = self._index.search(queries_c, top_k)
        ok = (i >= 0) & (d < 1e30)
        d64 = d.astype(np.float64)
        if self.metric == "L2":
            conv = np.sqrt(np.maximum(d64, 0.0))
        elif self.metric == "IP":
            conv = -d64
        elif self.metric == "COSINE":
            conv = 1.0 - d64
        else:
            conv = d64
        result_ids[ok] = i[ok]
        result_dists[ok] = conv[ok]
        return result_ids, result_dists

    cls.search = search


# -- index readiness ----------------------------------------------------------------------------


def index_progress(col: Any, field_name: str) -> tuple[int, int]:
    """(indexed_rows, total_rows) over flushed segments for one indexed field.

    Memtable rows are not counted: milvus-lite never indexes them (they are brute-forced
    until a flush turns them into a segment, whose index the background worker then builds).
    """
    total = indexed = 0
    for seg in col._segments_snapshot():
        if seg.num_rows == 0:
            continue
        total += seg.num_rows
        if field_name in seg.indexes or field_name in seg.scalar_indexes:
            indexed += seg.num_rows
    return indexed, total


def _patch_describe_index(cls: Any) -> None:
    """DescribeIndex reports real progress instead of always "Finished".

    milvus-lite answers Finished with indexed_rows == total_rows == num_entities while the
    background worker may still be building HNSW for freshly flushed or compacted segments.
    """
    from pymilvus.grpc_gen import common_pb2

    original = cls.DescribeIndex

    def DescribeIndex(self: Any, request: Any, context: Any) -> Any:
        response = original(self, request, context)
        if response.status.code != 0 or not response.index_descriptions:
            return response
        try:
            col = self._get_collection(request, context)
            if col.load_state != "loaded":
                return response
            for desc in response.index_descriptions:
                spec = col._index_specs.get(desc.field_name)
                if spec is None or spec.index_type == "SPARSE_INVERTED_INDEX":
                    continue  # built lazily at search time: nothing to wait for
                indexed, total = index_progress(col, desc.field_name)
                desc.indexed_rows, desc.total_rows = indexed, total
                desc.pending_index_rows = total - indexed
                desc.state = (common_pb2.IndexState.Finished if indexed == total
                              else common_pb2.IndexState.InProgress)
        except Exception:  # progress is advisory: never fail DescribeIndex because of it
            log.exception("index progress failed")
        return response

    cls.DescribeIndex = DescribeIndex
