"""The search executor that lite_patch installs into milvus-lite 3.2.2's server process.

A drop-in for ``milvus_lite.search.executor_indexed.execute_search_with_index``: steps 1-3
(visibility, recall) use the cached, vectorised masks of lite_masks.py; step 4 keeps
milvus-lite's merge order and projection. The per-segment caches live on a Segment subclass
(one extra slot) and are keyed by the write versions lite_patch adds to MemTable and
DeltaIndex. See docs/milvus-lite-patch.md. Imported only by lite_patch.apply() (and tests).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
from milvus_lite.engine.projection import _INTERNAL_FIELDS, decode_meta

from lookalike.store import lite_masks as lm

# Process-wide serials: segments, memtables and frozen delete maps get unique cache keys.
serials = itertools.count(1)
_SET_CACHE_SIZE = 8  # distinct in-scope segment sets remembered per segment (partition searches)


def cached_segment_class(base: Any) -> Any:
    """Segment with one extra slot holding lookalike's per-segment caches."""

    class CachedSegment(base):  # type: ignore[misc, valid-type]
        __slots__ = ("_lk",)

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self._lk = _SegmentCache(next(serials))

    CachedSegment.__name__ = CachedSegment.__qualname__ = "Segment"
    return CachedSegment


def _query_row(seg: Any, row_idx: int, needed: set) -> dict:
    """One row of a scalar query, as Segment.row_to_dict gives it, but only the needed columns.
    Scalar columns are converted once per segment and kept (segments are immutable), so a
    query's rows are list lookups; vector columns, rarely asked for and large, cell by cell."""
    import pyarrow as pa

    columns = seg._lk.columns
    row: dict = {}
    for name in seg.table.schema.names:
        if name == "_seq" or name not in needed:
            continue
        values = columns.get(name)
        if values is None:
            column = seg.table.column(name)
            if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type) \
                    or pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
                row[name] = column[row_idx].as_py()
                continue
            values = columns[name] = column.to_pylist()
        row[name] = values[row_idx]
    return _unpack_meta(row)


def _unpack_meta(row: dict) -> dict:
    """Dynamic fields unpacked to the top level, as Segment.row_to_dict does."""
    import json

    meta = row.get("$meta")
    if isinstance(meta, str):
        try:
            decoded = json.loads(meta)
        except (json.JSONDecodeError, ValueError):
            decoded = None
        if isinstance(decoded, dict):
            row.update(decoded)
    elif isinstance(meta, dict):
        row.update(meta)
    return row


class _SegmentCache:
    __slots__ = ("columns", "deletes", "inv_norms", "memtable", "pk_arrow", "serial", "sets")

    def __init__(self, serial: int) -> None:
        self.serial = serial
        self.pk_arrow: Any = None
        self.sets: dict[tuple[int, ...], np.ndarray | None] = {}
        self.deletes: tuple[Any, np.ndarray | None] = (None, None)
        self.memtable: tuple[Any, np.ndarray | None] = (None, None)
        self.inv_norms: dict[str, np.ndarray] = {}
        self.columns: dict[str, list] = {}  # scalar columns as Python values (_query_row)


def _seg_cache(seg: Any) -> _SegmentCache:
    # Segments created before apply() (or by tests) get a throw-away cache: correct, uncached.
    return getattr(seg, "_lk", None) or _SegmentCache(0)


def _pk_arrow(seg: Any, pk_field: str, cache: _SegmentCache) -> Any:
    if cache.pk_arrow is None:
        cache.pk_arrow = lm.as_arrow(seg.table.column(pk_field))
    return cache.pk_arrow


# -- projection -------------------------------------------------------------------------------

_SCHEMAS: dict[int, tuple[Any, frozenset, str]] = {}


def _schema_names(schema: Any) -> tuple[frozenset, str]:
    """(every schema field's name, the primary key's), computed once per schema object."""
    hit = _SCHEMAS.get(id(schema))
    if hit is None or hit[0] is not schema:
        hit = _SCHEMAS[id(schema)] = (schema, frozenset(f.name for f in schema.fields),
                                      next(f.name for f in schema.fields if f.is_primary))
    return hit[1], hit[2]


def project_record(record: dict[str, Any], schema: Any, plan: Any) -> dict[str, Any]:
    """milvus-lite 3.2.2's projection.project_record, same output: it rescanned the schema's
    fields for every field of every hit (a third of a grouped search's server CPU)."""
    names, pk_name = _schema_names(schema)
    dynamic = decode_meta(record.get("$meta"))
    dynamic.update({k: v for k, v in record.items()
                    if k not in names and k not in _INTERNAL_FIELDS})
    for name in names.intersection(dynamic):
        del dynamic[name]
    if plan.include_all_dynamic:
        result: dict[str, Any] = dict(dynamic)
    else:
        result = {name: dynamic[name] for name in plan.explicit_dynamic_fields if name in dynamic}
    search = plan.api_kind == "search"
    for name in plan.response_schema_fields:
        if search and name == pk_name:
            continue
        if name in record:
            result[name] = record[name]
    if not search and pk_name in record:
        result[pk_name] = record[pk_name]
    result.pop("$meta", None)
    return result


# -- visibility masks -------------------------------------------------------------------------


def _segment_set_masks(segs: list[Any], pk_field: str) -> list[np.ndarray | None]:
    """Newest-copy masks among the in-scope segments, cached per set of segments."""
    caches = [_seg_cache(s) for s in segs]
    key = tuple(c.serial for c in caches)
    cacheable = all(key)
    if cacheable and all(key in c.sets for c in caches):
        return [c.sets[key] for c in caches]
    masks = lm.max_seq_masks([_pk_arrow(s, pk_field, c) for s, c in zip(segs, caches)],
                             [s.seqs for s in segs])
    if cacheable:
        for c, m in zip(caches, masks):
            if len(c.sets) >= _SET_CACHE_SIZE:
                try:  # concurrent searches may evict the same entry
                    c.sets.pop(next(iter(c.sets)), None)
                except (RuntimeError, StopIteration):
                    pass
            c.sets[key] = m
    return masks


def _shadow(seg: Any, pk_field: str, slot: str, key: Any, newer: tuple[list, np.ndarray]
            ) -> np.ndarray | None:
    """Rows of *seg* whose pk has a newer entry in *newer* (keys, seqs), cached in the
    segment's *slot* ("deletes" or "memtable") for as long as *key* (the write version) holds."""
    cache = _seg_cache(seg)
    cached_key, cached_mask = getattr(cache, slot)
    if key is not None and cache.serial and cached_key == key:
        return cached_mask
    keys, seqs = newer
    mask = lm.newer_mask(_pk_arrow(seg, pk_field, cache), seg.seqs, keys, seqs,
                         target_index=seg.pk_to_row)
    if key is not None and cache.serial:
        setattr(cache, slot, (key, mask))
    return mask


def _delete_shadow(seg: Any, pk_field: str, delta_index: Any, delete_keys: tuple[list, np.ndarray]
                   ) -> np.ndarray | None:
    """Rows of *seg* with a flushed delete of larger seq (cached per frozen delete map)."""
    return _shadow(seg, pk_field, "deletes", getattr(delta_index, "_lk_serial", None), delete_keys)


def _memtable_shadow(seg: Any, pk_field: str, mt_key: Any, mt_keys: tuple[list, np.ndarray]
                     ) -> np.ndarray | None:
    """Rows of *seg* shadowed by a newer memtable insert or delete (cached per memtable write)."""
    return _shadow(seg, pk_field, "memtable", mt_key, mt_keys)


def _delete_map_arrays(delta_index: Any) -> tuple[list, np.ndarray]:
    cached = getattr(delta_index, "_lk_arrays", None)
    if cached is not None:
        return cached
    m = delta_index._map  # private: read-only use of the frozen copy
    out = (list(m.keys()), np.fromiter(m.values(), dtype=np.uint64, count=len(m)))
    if getattr(delta_index, "_lk_serial", None) is not None:
        delta_index._lk_arrays = out
    return out


# -- memtable snapshot ------------------------------------------------------------------------


class _MemtableView:
    """Everything the executor needs from the memtable, computed once per memtable write."""

    __slots__ = (
        "deletes",
        "inv_norms",
        "masks",
        "pk_arrow",
        "pk_index",
        "pks",
        "row_refs",
        "seqs",
        "shadow_keys",
        "table",
        "vecs",
    )

    def __init__(self, pks: list, seqs: np.ndarray, vecs: np.ndarray, row_refs: list,
                 table: Any, deletes: dict[Any, tuple[int, str]]) -> None:
        self.pks, self.seqs, self.vecs, self.row_refs, self.table = pks, seqs, vecs, row_refs, table
        self.deletes = deletes
        # Newest memtable seq per pk, from live rows and local deletes alike: what shadows a
        # segment row. (A pk is never both live and locally deleted in a MemTable.)
        newest: dict[Any, int] = {pk: int(s) for pk, s in zip(pks, seqs.tolist())}
        for pk, (dseq, _part) in deletes.items():
            if dseq > newest.get(pk, -1):
                newest[pk] = dseq
        self.shadow_keys = (list(newest), np.fromiter(newest.values(), dtype=np.uint64,
                                                      count=len(newest)))
        self.pk_arrow: Any = None
        self.pk_index: dict[Any, int] | None = None
        self.masks: dict[Any, np.ndarray | None] = {}
        self.inv_norms: np.ndarray | None = None


def _memtable_view(memtable: Any, vector_field: str, partition_names: list[str] | None,
                   include_table: bool) -> tuple[Any, _MemtableView]:
    """(cache key, view) for the memtable's current contents; key None when not trackable."""
    serial = getattr(memtable, "_lk_serial", None)
    with memtable._lock:  # private: version and contents read together
        if serial is None:
            pks, seqs, vecs, refs, table = memtable.to_search_snapshot(
                vector_field=vector_field, partition_names=partition_names,
                include_table=include_table)
            return None, _MemtableView(pks, seqs, vecs, refs, table,
                                       memtable.delete_index_snapshot())
        # The key names the memtable state (and partition scope) that segment masks depend
        # on; the view itself is also per vector field.
        key = (serial, memtable._lk_version,
               tuple(partition_names) if partition_names is not None else None)
        cache = memtable._lk_cache
        hit = cache.get((key, vector_field, include_table)) or (
            None if include_table else cache.get((key, vector_field, True)))
        if hit is not None:
            return key, hit
        pks, seqs, vecs, refs, table = _search_snapshot(memtable, vector_field, partition_names,
                                                        include_table)
        view = _MemtableView(pks, seqs, vecs, refs, table, memtable.delete_index_snapshot())
        for k in [k for k in cache if k[0] != key]:
            del cache[k]
        cache[(key, vector_field, include_table)] = view
        return key, view


def _search_snapshot(memtable: Any, vector_field: str | None,
                     partition_names: list[str] | None, include_table: bool) -> tuple:
    """MemTable.to_search_snapshot with the vectors gathered by numpy, not one as_py per row.

    Falls back to milvus-lite's own method for nullable vector columns with nulls.
    """
    import pyarrow as pa

    batches = tuple(memtable._insert_batches)  # private: caller holds the memtable lock
    items = list(memtable._pk_index.items())
    if vector_field is not None and any(
            b.column(vector_field).null_count for b in batches):
        return memtable.to_search_snapshot(vector_field=vector_field,
                                           partition_names=partition_names,
                                           include_table=include_table)
    if partition_names is not None:
        wanted = set(partition_names)
        parts: dict[int, list] = {}
        kept = []
        for item in items:
            b, r, _ = item[1]
            if b not in parts:
                parts[b] = batches[b].column("_partition").to_pylist()
            if parts[b][r] in wanted:
                kept.append(item)
        items = kept
    pks = [pk for pk, _ in items]
    m = len(items)
    b_idx = np.fromiter((p[0] for _, p in items), dtype=np.int64, count=m)
    r_idx = np.fromiter((p[1] for _, p in items), dtype=np.int64, count=m)
    seqs = np.fromiter((p[2] for _, p in items), dtype=np.uint64, count=m)
    row_refs = list(zip(b_idx.tolist(), r_idx.tolist()))
    if vector_field is not None and m:
        dim = batches[0].schema.field(vector_field).type.list_size
        vecs = np.empty((m, dim), dtype=np.float32)
        order = np.argsort(b_idx, kind="stable")
        bounds = np.flatnonzero(np.diff(b_idx[order])) + 1
        for group in np.split(order, bounds):
            col = batches[int(b_idx[group[0]])].column(vector_field)
            flat = col.flatten().to_numpy(zero_copy_only=False)
            vecs[group] = flat.reshape(len(col), dim)[r_idx[group]]
    else:
        vecs = np.zeros((0, 0), dtype=np.float32)
    table = None
    if include_table:
        if not m or not batches:
            table = memtable._data_schema.empty_table()
        else:
            offsets = np.cumsum([0] + [b.num_rows for b in batches])
            table = pa.Table.from_batches(batches).take(pa.array(offsets[b_idx] + r_idx))
            if "_partition" in table.column_names:
                table = table.drop(["_partition"])
    return pks, seqs, vecs, row_refs, table


def _visibility(in_scope: list[Any], mt_key: Any, mt: _MemtableView, delta_index: Any,
                pk_field: str) -> tuple[list[np.ndarray | None], np.ndarray | None]:
    """Which rows are the newest live copy of their pk: one mask per in-scope segment and one
    for the memtable (None: all rows), as milvus-lite's build_valid_mask decides it row by row."""
    set_masks = _segment_set_masks(in_scope, pk_field)
    delete_keys = _delete_map_arrays(delta_index)
    delta_token = getattr(delta_index, "_lk_serial", None)
    seg_visible: list[np.ndarray | None] = []
    for seg, set_mask in zip(in_scope, set_masks):
        seg_visible.append(lm.combine(
            set_mask,
            _delete_shadow(seg, pk_field, delta_index, delete_keys),
            _memtable_shadow(seg, pk_field, mt_key, mt.shadow_keys),
            invert=(False, True, True)))
    mt_visible: np.ndarray | None = None
    if mt.pks:
        mkey = (tuple(_seg_cache(s).serial for s in in_scope), delta_token)
        cacheable = mt_key is not None and delta_token is not None and all(mkey[0])
        if cacheable and mkey in mt.masks:
            mt_visible = mt.masks[mkey]
        else:
            mt_visible = _memtable_visible(mt, in_scope, pk_field, delete_keys)
            if cacheable:
                if len(mt.masks) >= _SET_CACHE_SIZE:
                    mt.masks.clear()
                mt.masks[mkey] = mt_visible
    return seg_visible, mt_visible


# -- the executor -----------------------------------------------------------------------------


def execute_search_with_index(
    query_vectors: np.ndarray,
    segments: Any,
    memtable: Any,
    delta_index: Any,
    top_k: int,
    metric_type: str,
    pk_field: str,
    vector_field: str,
    partition_names: list[str] | None = None,
    compiled_filter: Any = None,
    output_fields: list[str] | None = None,
    indexed_filter_plan: Any = None,
    project_record_fn: Callable[[dict], dict] | None = None,
    search_params: dict[str, Any] | None = None,
) -> list[list[dict]]:
    """Drop-in for milvus_lite.search.executor_indexed.execute_search_with_index (3.2.2).

    Same signature, same results; steps 1-3 (visibility + recall) are vectorised and cached,
    step 4 (merge + materialisation) is milvus-lite's code unchanged.
    """
    from milvus_lite.index.brute_force import BruteForceIndex

    if query_vectors.ndim == 1:
        query_vectors = query_vectors.reshape(1, -1)
    if query_vectors.dtype != np.float32:
        query_vectors = query_vectors.astype(np.float32, copy=False)
    nq = int(query_vectors.shape[0])
    if nq == 0 or top_k <= 0:
        return [[] for _ in range(nq)]

    partition_filter = set(partition_names) if partition_names else None
    in_scope = [s for s in segments
                if s.num_rows > 0 and (partition_filter is None or s.partition in partition_filter)]
    mt_key, mt = _memtable_view(memtable, vector_field, partition_names,
                                include_table=compiled_filter is not None)
    mt_pks = mt.pks
    if not in_scope and not mt_pks:
        return [[] for _ in range(nq)]

    # ── 1. visibility: newest copy, not deleted (vectorised, cached) ──
    seg_visible, mt_visible = _visibility(in_scope, mt_key, mt, delta_index, pk_field)

    # ── 2. optional per-source filter masks (milvus-lite's own evaluation) ──
    seg_filter_masks: dict[int, np.ndarray] = {}
    mt_filter_mask: np.ndarray | None = None
    if compiled_filter is not None:
        from milvus_lite.search.filter import evaluate_mask
        from milvus_lite.search.indexed_filter import evaluate_segment_filter
        for seg in in_scope:
            seg_filter_masks[id(seg)] = evaluate_segment_filter(seg, compiled_filter,
                                                                indexed_filter_plan)
        if mt_pks and mt.table is not None:
            mt_filter_mask = evaluate_mask(compiled_filter, mt.table)

    # ── 3. per-source recall ──
    per_query: list[list[tuple[float, int, int]]] = [[] for _ in range(nq)]
    sources: list[Any] = []

    def recall(source_idx: int, n: int, visible: np.ndarray | None, vectors: np.ndarray,
               index: Any, inv_norms: Callable[[], np.ndarray]) -> None:
        if n == 0:
            return
        if visible is not None and not visible.any():
            return
        if index is None and metric_type == "COSINE":
            local_ids, dists = lm.cosine_topk(query_vectors, vectors, inv_norms(), top_k, visible)
        else:
            if index is None:
                index = BruteForceIndex.build(vectors, metric_type)
            local_ids, dists = index.search(query_vectors, top_k, valid_mask=visible,
                                            params=search_params)
        ids_l, d_l = local_ids.tolist(), dists.tolist()
        for q in range(nq):
            out = per_query[q]
            for lid, dist in zip(ids_l[q], d_l[q]):
                if lid < 0:
                    break  # padding from here on
                out.append((float(dist), source_idx, lid))

    for seg, visible in zip(in_scope, seg_visible):
        seg_vectors, null_mask = seg.vector_data(vector_field)
        sources.append(seg)
        fmask = seg_filter_masks.get(id(seg))
        if null_mask is not None:
            fmask = null_mask if fmask is None else (fmask & null_mask)
        if fmask is not None:
            visible = lm.combine(visible, fmask.astype(bool))
        cache = _seg_cache(seg)
        index = seg.indexes.get(vector_field)

        def seg_norms(cache: _SegmentCache = cache, v: np.ndarray = seg_vectors) -> np.ndarray:
            if vector_field not in cache.inv_norms:
                cache.inv_norms[vector_field] = lm.inverse_norms(v)
            return cache.inv_norms[vector_field]

        if index is not None:
            cache.inv_norms.pop(vector_field, None)  # indexed now: the norms are dead weight
        recall(len(sources) - 1, seg.num_rows, visible, seg_vectors, index, seg_norms)

    if mt_pks:
        sources.append(None)
        visible = mt_visible
        if mt_filter_mask is not None:
            visible = lm.combine(visible, mt_filter_mask.astype(bool))

        def mt_norms() -> np.ndarray:
            if mt.inv_norms is None:
                mt.inv_norms = lm.inverse_norms(mt.vecs)
            return mt.inv_norms

        recall(len(sources) - 1, len(mt_pks), visible, mt.vecs, None, mt_norms)

    n_segments = len(in_scope)

    # ── 4. global merge + entity projection (milvus-lite's projection and order) ──
    if project_record_fn is not None:
        project_entity = project_record_fn
    elif output_fields is None:
        def project_entity(record: dict) -> dict:
            return {k: v for k, v in record.items() if k != pk_field and k != vector_field}
    else:
        keep = set(output_fields)
        keep.discard(pk_field)

        def project_entity(record: dict) -> dict:
            return {k: record[k] for k in keep if k in record}

    # Materialise only the winners, one Arrow take per segment, and only the columns the
    # projection can use: milvus-lite converts every column of every winner cell by cell,
    # vectors included, which costs more than the search itself (the product path over-fetches
    # 100 rows for group-by).
    needed = None
    if output_fields is not None and "*" not in output_fields:
        needed = set(output_fields) | {pk_field, "$meta"}
    winners: list[list[tuple[float, int, int]]] = []
    by_segment: dict[int, set] = {}
    for q in range(nq):
        candidates = per_query[q]
        candidates.sort(key=lambda c: (c[0], c[1], c[2]))
        winners.append(candidates[:top_k])
        for _dist, source_idx, local_id in winners[-1]:
            if source_idx < n_segments:
                by_segment.setdefault(source_idx, set()).add(local_id)
    records: dict[tuple[int, int], dict] = {}
    for source_idx, ids in by_segment.items():
        ordered = sorted(ids)
        for local_id, rec in zip(ordered, _segment_rows(in_scope[source_idx], ordered, needed)):
            records[(source_idx, local_id)] = rec

    def materialize(source_idx: int, local_id: int) -> dict:
        if source_idx < n_segments:
            return records[(source_idx, local_id)]
        batch_idx, row_idx = mt.row_refs[local_id]
        return memtable.materialize_row(batch_idx, row_idx)

    def source_pk(source_idx: int, local_id: int) -> Any:
        return in_scope[source_idx].pks[local_id] if source_idx < n_segments else mt_pks[local_id]

    results: list[list[dict]] = []
    for q in range(nq):
        hits: list[dict] = []
        for dist, source_idx, local_id in winners[q]:
            record = materialize(source_idx, local_id)
            pk = record.get(pk_field) if pk_field in record else source_pk(source_idx, local_id)
            hits.append({"id": pk, "distance": dist, "entity": project_entity(record)})
        results.append(hits)
    return results


def query(self: Any, expr: str | None = None, output_fields: list[str] | None = None,
          partition_names: list[str] | None = None, limit: int | None = None,
          offset: int = 0, timezone: str | None = None, order_by_pk: bool = False
          ) -> list[dict]:
    """Drop-in for milvus-lite 3.2.2's Collection.query (a scalar query).

    milvus-lite's walks every stored row in Python per query to decide visibility (and
    concatenates every row's vector on the way), so a read of one product by id cost as much
    as a scan. Here visibility comes from the dense executor's cached masks and only the
    matching rows are materialised, with only the output columns (from the per-segment column
    cache). Filter evaluation, row order (segments in snapshot order, then the memtable),
    limit/offset and projection are milvus-lite's.
    """
    from milvus_lite.engine.projection import build_projection_plan
    from milvus_lite.search.filter import evaluate_mask
    from milvus_lite.search.indexed_filter import evaluate_segment_filter

    if expr is not None and not isinstance(expr, str):
        raise TypeError("query() expr must be a string or None")
    self._require_loaded()
    compiled = self._compile_filter(expr, timezone=timezone) if expr else None
    plan = build_projection_plan(output_fields, self._schema, api_kind="query")
    indexed_plan = self._indexed_filter_plan(compiled)
    pk_field = self._pk_name
    needed = None
    if output_fields is not None and "*" not in output_fields:
        needed = set(output_fields) | {pk_field, "$meta"}

    seg_snap, delta_snap = self._read_snapshot()
    # Read once: a flush swaps in a new, empty MemTable, and the view's row references index
    # the one they came from (reading it twice failed queries with IndexError under writes).
    memtable = self._memtable
    partition_filter = set(partition_names) if partition_names else None
    in_scope = [s for s in seg_snap
                if s.num_rows > 0 and (partition_filter is None or s.partition in partition_filter)]
    mt_key, mt = _memtable_view(memtable, None, partition_names,
                                include_table=compiled is not None)
    seg_visible, mt_visible = _visibility(in_scope, mt_key, mt, delta_snap, pk_field)

    # (source, row) of every live matching row, in milvus-lite's order.
    live: list[tuple[Any, Any]] = []
    for seg, visible in zip(in_scope, seg_visible):
        if compiled is not None:
            visible = lm.combine(visible, evaluate_segment_filter(seg, compiled, indexed_plan)
                                 .astype(bool))
        ids = range(seg.num_rows) if visible is None else np.flatnonzero(visible).tolist()
        live.extend((seg, i) for i in ids)
    if mt.pks:
        visible = mt_visible
        if compiled is not None:
            visible = lm.combine(visible, evaluate_mask(compiled, mt.table).astype(bool))
        ids = range(len(mt.pks)) if visible is None else np.flatnonzero(visible).tolist()
        live.extend((None, i) for i in ids)
    if order_by_pk:
        live.sort(key=lambda src: src[0].pks[src[1]] if src[0] is not None else mt.pks[src[1]])
    if limit is not None:
        live = live[:offset + limit]

    out: list[dict] = []
    for seg, i in live:
        if seg is None:
            record = memtable.materialize_row(*mt.row_refs[i])
        else:
            record = seg.row_to_dict(i) if needed is None else _query_row(seg, i, needed)
        out.append(project_record(record, self._schema, plan))
    return out[offset:]


def _segment_rows(seg: Any, row_ids: list[int], needed: set | None) -> list[dict]:
    """Segment.row_to_dict for several rows at once, limited to *needed* columns (None: all)."""
    import pyarrow as pa

    names = [n for n in seg.table.schema.names
             if n != "_seq" and (needed is None or n in needed)]
    rows = seg.table.select(names).take(pa.array(row_ids, type=pa.int64())).to_pylist()
    return [_unpack_meta(row) for row in rows]


def _memtable_visible(mt: _MemtableView, segs: list[Any], pk_field: str,
                      delete_keys: tuple[list, np.ndarray]) -> np.ndarray | None:
    """Memtable rows not shadowed by a newer segment copy, flushed delete or local delete."""
    if mt.pk_arrow is None:
        import pyarrow as pa
        mt.pk_arrow = pa.array(mt.pks)
        mt.pk_index = {pk: i for i, pk in enumerate(mt.pks)}
    shadows = []
    for seg in segs:
        seg_pks = _pk_arrow(seg, pk_field, _seg_cache(seg))
        shadows.append(lm.newer_mask(mt.pk_arrow, mt.seqs, seg_pks, seg.seqs,
                                     target_index=mt.pk_index, key_index=seg.pk_to_row))
    keys, seqs = delete_keys
    shadows.append(lm.newer_mask(mt.pk_arrow, mt.seqs, keys, seqs, target_index=mt.pk_index))
    local = list(mt.deletes.items())
    shadows.append(lm.newer_mask(mt.pk_arrow, mt.seqs, [k for k, _ in local],
                                 np.fromiter((e[0] for _, e in local), dtype=np.uint64,
                                             count=len(local)),
                                 target_index=mt.pk_index))
    return lm.combine(*shadows, invert=[True] * len(shadows))


# -- sparse (BM25) search ---------------------------------------------------------------------


def search_sparse(self: Any, query_vectors: list, vector_field: str, top_k: int,
                  metric_type: str, partition_names: list[str] | None, expr: str | None,
                  output_fields: list[str] | None, timezone: str | None = None
                  ) -> list[list[dict]]:
    """Drop-in for milvus-lite 3.2.2's Collection._search_sparse (BM25 full-text search).

    milvus-lite's own walks every stored row in Python per search to decide visibility, and
    converts every column of every hit, both dense vectors included, for a projection that
    keeps a few. Here visibility comes from the dense executor's cached masks, and hits are
    materialised with the projected columns only (from the per-segment column cache). Scoring, the per-segment cached sparse
    index, the rebuilt memtable index, merge order and projection are milvus-lite's code.
    """
    from milvus_lite.analyzer.sparse import bytes_to_sparse
    from milvus_lite.engine.projection import build_projection_plan
    from milvus_lite.index.sparse_factory import (
        _search_prepared_sparse_index,
        create_sparse_index,
        sparse_index_matches,
    )

    pk_field = self._pk_name
    partition_filter = set(partition_names) if partition_names else None
    projection_plan = build_projection_plan(output_fields, self._schema, api_kind="search")
    sparse_spec = self._index_specs.get(vector_field)
    index_params = sparse_spec.build_params if sparse_spec else {}
    query_sparse = self._prepare_sparse_queries(query_vectors, vector_field)
    nq = len(query_sparse)
    compiled_filter = self._compile_filter(expr, timezone=timezone) if expr else None
    indexed_filter_plan = self._indexed_filter_plan(compiled_filter)
    needed = None
    if output_fields is not None and "*" not in output_fields:
        needed = set(output_fields) | {pk_field, "$meta"}

    seg_snapshot, delta_snap = self._read_snapshot()
    # Versions resolve collection-wide, before partition pruning (as milvus-lite does).
    segs = [s for s in seg_snapshot if s.table is not None and len(s.table) > 0]
    memtable = self._memtable  # once: a flush may swap it mid-search (see query)
    mt_key, mt = _memtable_view(memtable, None, None, include_table=False)
    seg_visible, mt_visible = _visibility(segs, mt_key, mt, delta_snap, pk_field)

    per_query: list[list[tuple[float, Any, Any]]] = [[] for _ in range(nq)]
    for seg, visible in zip(segs, seg_visible):
        if partition_filter is not None and seg.partition not in partition_filter:
            continue
        table = seg.table
        cached_idx = seg.sparse_indexes.get(vector_field)
        if not sparse_index_matches(cached_idx, metric_type, index_params):
            sparse_vecs = [bytes_to_sparse(r) if isinstance(r, bytes) else (r or {})
                           for r in table.column(vector_field).to_pylist()]
            cached_idx = create_sparse_index(metric_type, index_params)
            cached_idx.build(sparse_vecs)
            seg.sparse_indexes[vector_field] = cached_idx
        if visible is None:
            visible = np.ones(len(table), dtype=bool)
        if compiled_filter is not None:
            from milvus_lite.search.indexed_filter import evaluate_segment_filter
            visible = visible & evaluate_segment_filter(seg, compiled_filter, indexed_filter_plan)
        if not visible.any():
            continue
        local_ids, dists = _search_prepared_sparse_index(cached_idx, query_sparse, top_k,
                                                         valid_mask=visible)
        for qi in range(nq):
            for j in range(top_k):
                lid = int(local_ids[qi, j])
                if lid < 0:
                    break
                per_query[qi].append((float(dists[qi, j]), seg.pks[lid], (seg, lid)))

    # The memtable (small, mutable): its index is rebuilt per search, as milvus-lite does.
    mt_pks: list = []
    mt_sparse: list = []
    mt_refs: list = []
    for pk, seq, record in memtable.active_record_snapshots(partition_names=partition_names):
        at = mt.pk_index.get(pk) if mt.pk_index is not None else None
        if mt_visible is not None and at is not None and not mt_visible[at]:
            continue
        raw = record.get(vector_field)
        mt_pks.append(pk)
        mt_sparse.append(bytes_to_sparse(raw) if isinstance(raw, bytes) else (raw or {}))
        mt_refs.append((record, seq))
    if mt_pks:
        mt_valid = np.ones(len(mt_pks), dtype=bool)
        if compiled_filter is not None:
            from milvus_lite.search.filter.eval.python_backend import _eval_row
            for i, (record, _seq) in enumerate(mt_refs):
                if not _eval_row(compiled_filter.ast, record):
                    mt_valid[i] = False
        mt_idx = create_sparse_index(metric_type, index_params)
        mt_idx.build(mt_sparse, valid_mask=mt_valid)
        local_ids, dists = _search_prepared_sparse_index(mt_idx, query_sparse, top_k)
        for qi in range(nq):
            for j in range(top_k):
                lid = int(local_ids[qi, j])
                if lid < 0:
                    break
                per_query[qi].append((float(dists[qi, j]), mt_pks[lid], mt_refs[lid]))

    results: list[list[dict]] = []
    for qi in range(nq):
        best: dict[Any, tuple[int, tuple[float, Any, Any]]] = {}  # newest copy of each pk
        for cand in per_query[qi]:
            _dist, pk, source = cand
            if isinstance(source[0], dict):  # a memtable (record, seq)
                seq = int(source[1])
            else:
                seg, lid = source
                seq = int(seg.seqs[lid])
            if pk not in best or seq > best[pk][0]:
                best[pk] = (seq, cand)
        ordered = sorted((c for _, c in best.values()), key=lambda c: c[0])
        hits: list[dict] = []
        for dist, pk, source in ordered[:top_k]:
            if isinstance(source[0], dict):
                record = source[0]
            else:
                seg, lid = source
                record = (_segment_rows(seg, [lid], None)[0] if needed is None
                          else _query_row(seg, lid, needed))
                record.pop("_partition", None)
            hits.append({"id": pk, "distance": dist,
                         "entity": project_record(record, self._schema, projection_plan)})
        results.append(hits)
    return results
