"""Vectorised visibility masks for milvus-lite's search path (see docs/milvus-lite-patch.md).

milvus-lite decides which stored rows a search may return with two Python loops over every
row: a row is visible iff no other copy of its primary key has a larger sequence number
(upserts leave old copies behind) and no delete with a larger sequence number exists for it.
These helpers compute the same answer with numpy/pyarrow so the cost no longer grows with
the number of stored rows on every query. They know nothing about milvus-lite's classes, so
they are unit-tested on plain arrays.

Semantics kept exactly: "shadowed" always means a strictly larger seq (equal seqs never
shadow each other), and a mask of None means "every row visible".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Below this many Python dict probes, probing beats hashing a whole Arrow column.
DICT_PROBE_LIMIT = 4096


def as_arrow(pks: Any) -> pa.Array:
    """A flat Arrow array of primary keys (from a list or an Arrow column)."""
    if isinstance(pks, pa.ChunkedArray):
        return pks.combine_chunks() if pks.num_chunks != 1 else pks.chunk(0)
    if isinstance(pks, pa.Array):
        return pks
    return pa.array(list(pks))


def max_seq_masks(pk_arrays: Sequence[pa.Array], seq_arrays: Sequence[np.ndarray]
                  ) -> list[np.ndarray | None]:
    """Per source, True where the row's seq is the largest seq of its pk across all sources.

    The vector form of milvus-lite's ``global_max_seqs`` map: dictionary-encode every pk once
    (hashing in C), take the max seq per code, compare. None for a source means all its rows
    win, which is what a segment never touched by an upsert gets.
    """
    sizes = [len(a) for a in pk_arrays]
    total = sum(sizes)
    if total == 0 or len(pk_arrays) == 0:
        return [None] * len(pk_arrays)
    arrays = [a.cast(pk_arrays[0].type) if a.type != pk_arrays[0].type else a for a in pk_arrays]
    encoded = pc.dictionary_encode(pa.chunked_array(arrays)).combine_chunks()
    if len(encoded.dictionary) == total:
        return [None] * len(pk_arrays)  # every pk appears once: nothing to de-duplicate
    codes = np.asarray(encoded.indices, dtype=np.int64)
    seqs = np.concatenate([np.asarray(s, dtype=np.uint64) for s in seq_arrays])
    best = np.zeros(len(encoded.dictionary), dtype=np.uint64)
    np.maximum.at(best, codes, seqs)
    wins = seqs == best[codes]
    out: list[np.ndarray | None] = []
    start = 0
    for n in sizes:
        part = wins[start:start + n]
        out.append(None if part.all() else part.copy())
        start += n
    return out


def newer_mask(
    target_pks: pa.Array,
    target_seqs: np.ndarray,
    key_pks: Sequence[Any],
    key_seqs: np.ndarray,
    *,
    target_index: Mapping[Any, int] | None = None,
    key_index: Mapping[Any, int] | None = None,
) -> np.ndarray | None:
    """True where a target row's pk is among the keys with a strictly larger key seq.

    Keys are unique (a delete map, a memtable, a segment). Three equivalent strategies, the
    cheapest chosen by size: probe the target's pk->row dict with each key, probe the keys'
    pk->row dict with each target pk, or hash both sides in Arrow. None when nothing matches.
    """
    n_target, n_keys = len(target_pks), len(key_pks)
    if n_target == 0 or n_keys == 0:
        return None
    target_seqs = np.asarray(target_seqs, dtype=np.uint64)
    key_seqs = np.asarray(key_seqs, dtype=np.uint64)
    if target_index is not None and n_keys <= DICT_PROBE_LIMIT:
        rows, seqs = [], []
        for j, pk in enumerate(key_pks):
            row = target_index.get(pk)
            if row is not None:
                rows.append(row)
                seqs.append(j)
        if not rows:
            return None
        rows_a = np.asarray(rows, dtype=np.int64)
        hit = rows_a[key_seqs[np.asarray(seqs, dtype=np.int64)] > target_seqs[rows_a]]
        if hit.size == 0:
            return None
        mask = np.zeros(n_target, dtype=bool)
        mask[hit] = True
        return mask
    if key_index is not None and n_target <= DICT_PROBE_LIMIT:
        mask = np.zeros(n_target, dtype=bool)
        for i, pk in enumerate(target_pks.to_pylist()):
            j = key_index.get(pk)
            if j is not None and key_seqs[j] > target_seqs[i]:
                mask[i] = True
        return mask if mask.any() else None
    keys = (key_pks if isinstance(key_pks, pa.Array)
            else pa.array(list(key_pks), type=target_pks.type))
    if keys.type != target_pks.type:
        keys = keys.cast(target_pks.type)
    pos = pc.index_in(target_pks, value_set=keys)
    found = np.asarray(pos.is_valid())
    if not found.any():
        return None
    idx = np.asarray(pos.fill_null(0), dtype=np.int64)
    mask = found & (key_seqs[idx] > target_seqs)
    return mask if mask.any() else None


def combine(*masks: np.ndarray | None, invert: Sequence[bool] = ()) -> np.ndarray | None:
    """AND of visibility masks (None = all True); ``invert[i]`` turns a 'shadowed' mask into a
    'visible' one. Returns None when every row stays visible."""
    out: np.ndarray | None = None
    for i, m in enumerate(masks):
        if m is None:
            continue
        m = ~m if (i < len(invert) and invert[i]) else m
        out = m.copy() if out is None else (out & m)
    if out is not None and out.all():
        return None
    return out


def cosine_topk(queries: np.ndarray, vectors: np.ndarray, inv_norms: np.ndarray, top_k: int,
                valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force COSINE top-k without copying the candidate matrix.

    milvus-lite's BruteForceIndex gathers the valid rows (a copy) and divides every candidate
    by its norm (a second copy) on every query. Here the per-row inverse norms are computed
    once by the caller and applied to the (nq, n) similarity matrix instead; invalid rows get
    +inf. Output matches BruteForceIndex: (nq, top_k) ids padded with -1, distances with +inf.
    """
    nq = queries.shape[0]
    ids = np.full((nq, top_k), -1, dtype=np.int64)
    dists = np.full((nq, top_k), np.inf, dtype=np.float32)
    n_valid = vectors.shape[0] if valid is None else int(valid.sum())
    k = min(top_k, n_valid)
    if k <= 0:
        return ids, dists
    q = np.asarray(queries, dtype=np.float32)
    qn = np.linalg.norm(q, axis=1, keepdims=True)
    q = q / np.where(qn == 0, 1.0, qn)
    d = np.maximum(1.0 - (q @ vectors.T) * inv_norms[None, :], 0.0).astype(np.float32, copy=False)
    if valid is not None:
        d[:, ~valid] = np.inf
    if k < d.shape[1]:
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(d.shape[1]), d.shape)
    part_d = np.take_along_axis(d, part, axis=1)
    order = np.argsort(part_d, axis=1, kind="stable")
    ids[:, :k] = np.take_along_axis(part, order, axis=1)[:, :k]
    dists[:, :k] = np.take_along_axis(part_d, order, axis=1)[:, :k]
    return ids, dists


def inverse_norms(vectors: np.ndarray) -> np.ndarray:
    """1/|v| per row, with zero rows mapped to 1 (milvus-lite's cosine of a zero vector)."""
    # einsum: one pass over the matrix without the (n, dim) temporary of linalg.norm.
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
    return (1.0 / np.where(norms == 0, 1.0, norms)).astype(np.float32)
