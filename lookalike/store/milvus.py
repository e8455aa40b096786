"""MilvusStore: the ProductStore over pymilvus' MilvusClient.

The same code talks to the embedded milvus-lite server and to a Milvus standalone/cluster;
only the URI differs. Every read uses Strong consistency so a write is visible to the next
search (the API promises "searchable at once").
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from pymilvus import AnnSearchRequest, MilvusClient, MilvusException, WeightedRanker

from lookalike.catalog.product import Product
from lookalike.store.base import Filters, Hit, Record, StoredProduct, StoreError
from lookalike.store.schema import (
    NO_PRICE,
    PRODUCT_FIELDS,
    build_index_params,
    build_schema,
    row_pk,
    search_params,
)

log = logging.getLogger(__name__)
CONSISTENCY = "Strong"
WRITE_BATCH_ROWS = 1000


def _literal(value: str) -> str:
    """A Milvus string literal; JSON escaping covers quotes, backslashes and control chars."""
    return json.dumps(str(value), ensure_ascii=False)


def _in(field: str, values: Sequence[str]) -> str:
    return f"{field} in [{', '.join(_literal(v) for v in values)}]"


def filter_expression(filters: Filters, exclude_ids: Sequence[str] = ()) -> str:
    """Build a boolean expression from typed values only (never from user-written syntax)."""
    parts: list[str] = []
    for field, values in (("category", filters.categories), ("color", filters.colors),
                          ("size", filters.sizes)):
        if values:
            parts.append(_in(field, values))
    if filters.min_price is not None:
        parts.append(f"price >= {float(filters.min_price)!r}")
    if filters.max_price is not None:
        parts.append(f"price <= {float(filters.max_price)!r}")
    if filters.min_price is not None or filters.max_price is not None:
        parts.append(f"price >= 0")  # products without a price never match a price range
    if exclude_ids:
        parts.append(f"not ({_in('product_id', exclude_ids)})")
    return " and ".join(parts)


def _product_from_row(row: dict[str, Any]) -> Product:
    price = row.get("price")
    return Product(
        product_id=row["product_id"],
        title=row.get("title") or "",
        description=row.get("description") or "",
        category=row.get("category") or "",
        color=row.get("color") or "",
        size=row.get("size") or "",
        price=None if price is None or price < 0 else round(float(price), 2),
        images=tuple(row.get("images") or ()),
        attributes=dict(row.get("attributes") or {}),
    )


class MilvusStore:
    def __init__(
        self,
        uri: str,
        *,
        collection: str,
        image_dim: int,
        text_dim: int,
        settings: Any,
        token: str = "",
        timeout_s: float = 30.0,
    ) -> None:
        self.uri = uri
        self.collection = collection
        self.image_dim = image_dim
        self.text_dim = text_dim
        self.settings = settings
        self.timeout_s = timeout_s
        try:
            self.client = MilvusClient(uri=uri, token=token, timeout=timeout_s)
        except MilvusException as exc:
            raise StoreError(f"cannot connect to Milvus at {uri}: {exc}") from exc
        self._search_params = {"metric_type": "COSINE", "params": search_params(settings)}
        # milvus-lite does not protect concurrent writes to one collection: serialise ours.
        self._write_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any, *, image_dim: int, text_dim: int) -> MilvusStore:
        return cls(settings.resolved_milvus_uri, collection=settings.collection,
                   image_dim=image_dim, text_dim=text_dim, settings=settings,
                   token=settings.milvus_token)

    # -- lifecycle -----------------------------------------------------------------------------

    def ensure_collection(self) -> None:
        """Create the collection and indexes if missing, check dims, and load it."""
        try:
            if not self.client.has_collection(self.collection):
                # milvus-lite runs one HNSW search per partition (16 by default) and has no
                # nodes to spread them over, so the partition key only pays off on Milvus proper.
                schema = build_schema(image_dim=self.image_dim, text_dim=self.text_dim,
                                      partition_key=not getattr(self.settings, "embedded", False))
                self.client.create_collection(
                    self.collection, schema=schema,
                    index_params=build_index_params(self.client, self.settings),
                    consistency_level=CONSISTENCY)
                log.info("created collection %s", self.collection)
            self._check_dims()
            # Collections come back NotLoad after a server restart.
            self.client.load_collection(self.collection)
        except MilvusException as exc:
            raise StoreError(f"cannot prepare collection {self.collection}: {exc}") from exc

    def _check_dims(self) -> None:
        desc = self.client.describe_collection(self.collection)
        dims = {f["name"]: f.get("params", {}).get("dim") for f in desc["fields"]}
        want = {"image_vector": self.image_dim, "text_vector": self.text_dim}
        for name, dim in want.items():
            if dims.get(name) is not None and int(dims[name]) != dim:
                raise StoreError(
                    f"collection {self.collection} has {name} dim {dims[name]} but the model "
                    f"gives {dim}: use another LOOKALIKE_COLLECTION or re-ingest")

    def drop(self) -> None:
        self.client.drop_collection(self.collection)

    def close(self) -> None:
        self.client.close()

    # -- writes ----------------------------------------------------------------------------------

    def upsert(self, items: Sequence[StoredProduct]) -> int:
        rows: list[dict[str, Any]] = []
        by_count: dict[int, list[str]] = defaultdict(list)
        for item in items:
            p = item.product
            vectors = np.asarray(item.image_vectors, dtype=np.float32).reshape(-1, self.image_dim)
            if len(vectors) == 0:
                raise ValueError(f"product {p.product_id} has no image vector")
            text_vec = np.asarray(item.text_vector, dtype=np.float32).reshape(self.text_dim).tolist()
            by_count[len(vectors)].append(p.product_id)
            for n, vec in enumerate(vectors):
                rows.append({
                    "pk": row_pk(p.product_id, n), "product_id": p.product_id, "image_index": n,
                    "title": p.title, "description": p.description, "category": p.category,
                    "color": p.color, "size": p.size,
                    "price": NO_PRICE if p.price is None else float(p.price),
                    "images": list(p.images), "attributes": p.attributes,
                    "content_hash": item.content_hash, "model_version": item.model_version,
                    "image_vector": vec.tolist(), "text_vector": text_vec,
                })
        try:
            with self._write_lock:
                for start in range(0, len(rows), WRITE_BATCH_ROWS):
                    self.client.upsert(self.collection, rows[start:start + WRITE_BATCH_ROWS])
                # A product that now has fewer images loses its old extra rows, after the new
                # rows are in, so it never disappears from search in between.
                for n, pids in by_count.items():
                    self.client.delete(self.collection,
                                       filter=f"{_in('product_id', pids)} and image_index >= {n}")
        except MilvusException as exc:
            raise StoreError(f"upsert failed: {exc}") from exc
        return len(items)

    def delete(self, product_ids: Sequence[str]) -> int:
        if not product_ids:
            return 0
        existing = self.content_hashes(product_ids)
        if not existing:
            return 0
        try:
            with self._write_lock:
                self.client.delete(self.collection, filter=_in("product_id", list(existing)))
        except MilvusException as exc:
            raise StoreError(f"delete failed: {exc}") from exc
        return len(existing)

    def flush(self) -> None:
        try:
            self.client.flush(self.collection)
        except MilvusException as exc:
            raise StoreError(f"flush failed: {exc}") from exc

    def wait_index_ready(self, timeout_s: float = 600.0, poll_s: float = 0.5) -> bool:
        """Wait until both vector indexes cover every flushed row; False on timeout.

        Rows still in the write buffer are indexed only after a flush, so call flush() after a
        bulk load. Milvus reports real progress; the lookalike-launched milvus-lite does too
        (lookalike/store/lite_patch.py), while unpatched milvus-lite always answers "Finished".
        """
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                ready = all(self._index_ready(f) for f in ("image_vector", "text_vector"))
            except MilvusException as exc:
                raise StoreError(f"index status failed: {exc}") from exc
            if ready:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)

    def _index_ready(self, field: str) -> bool:
        for name in self.client.list_indexes(self.collection, field_name=field) or [field]:
            info = self.client.describe_index(self.collection, index_name=name) or {}
            if info.get("state") != "Finished" or int(info.get("pending_index_rows") or 0) > 0:
                return False
        return True

    # -- reads -----------------------------------------------------------------------------------

    def search(
        self,
        *,
        image_vector: np.ndarray | None = None,
        text_vector: np.ndarray | None = None,
        image_weight: float = 0.5,
        filters: Filters = Filters(),
        top_k: int = 10,
        exclude_ids: Sequence[str] = (),
    ) -> list[Hit]:
        if image_vector is None and text_vector is None:
            raise ValueError("search needs an image vector, a text vector or both")
        expr = filter_expression(filters, exclude_ids)
        common: dict[str, Any] = {"limit": top_k, "output_fields": PRODUCT_FIELDS,
                                  "group_by_field": "product_id", "consistency_level": CONSISTENCY}
        try:
            if image_vector is not None and text_vector is not None:
                reqs = [
                    AnnSearchRequest([np.asarray(image_vector, np.float32).tolist()], "image_vector",
                                     self._search_params, limit=top_k, expr=expr or None),
                    AnnSearchRequest([np.asarray(text_vector, np.float32).tolist()], "text_vector",
                                     self._search_params, limit=top_k, expr=expr or None),
                ]
                w = float(image_weight)
                res = self.client.hybrid_search(self.collection, reqs, WeightedRanker(w, 1.0 - w),
                                                **common)
            else:
                field, vec = (("image_vector", image_vector) if image_vector is not None
                              else ("text_vector", text_vector))
                res = self.client.search(self.collection, data=[np.asarray(vec, np.float32).tolist()],
                                         anns_field=field, filter=expr,
                                         search_params=self._search_params, **common)
        except MilvusException as exc:
            raise StoreError(f"search failed: {exc}") from exc
        hits: list[Hit] = []
        seen: set[str] = set()
        for hit in res[0] if res else []:
            entity = hit.get("entity", hit)
            pid = entity["product_id"]
            if pid in seen:  # group_by already returns one per product; be sure of it
                continue
            seen.add(pid)
            hits.append(Hit(_product_from_row(entity), float(hit["distance"]),
                            int(entity.get("image_index") or 0)))
        hits.sort(key=lambda h: -h.score)
        return hits[:top_k]

    def _query(self, expr: str, fields: list[str], limit: int | None = None) -> list[dict[str, Any]]:
        try:
            kwargs: dict[str, Any] = {"consistency_level": CONSISTENCY}
            if limit is not None:
                kwargs["limit"] = limit
            return list(self.client.query(self.collection, filter=expr, output_fields=fields, **kwargs))
        except MilvusException as exc:
            raise StoreError(f"query failed: {exc}") from exc

    def get(self, product_ids: Sequence[str], *, with_vectors: bool = False) -> dict[str, Record]:
        if not product_ids:
            return {}
        fields = [*PRODUCT_FIELDS, "content_hash", "model_version"]
        if with_vectors:
            fields += ["image_vector", "text_vector"]
        rows = sorted(self._query(_in("product_id", product_ids), fields),
                      key=lambda r: (r["product_id"], r["image_index"]))
        out: dict[str, Record] = {}
        for row in rows:
            rec = out.get(row["product_id"])
            if rec is None:
                rec = out[row["product_id"]] = Record(_product_from_row(row), row["content_hash"],
                                                      row["model_version"])
            if with_vectors:
                rec.image_vectors.append(np.asarray(row["image_vector"], dtype=np.float32))
                rec.text_vector = np.asarray(row["text_vector"], dtype=np.float32)
        return out

    def content_hashes(self, product_ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        ids = list(product_ids)
        for start in range(0, len(ids), 1000):
            expr = f"{_in('product_id', ids[start:start + 1000])} and image_index == 0"
            for row in self._query(expr, ["product_id", "content_hash"]):
                out[row["product_id"]] = row["content_hash"]
        return out

    def count(self) -> int:
        rows = self._query("image_index == 0", ["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def _iter_rows(self, fields: list[str]) -> Iterator[dict[str, Any]]:
        try:
            it = self.client.query_iterator(self.collection, batch_size=1000, filter="image_index == 0",
                                            output_fields=fields, consistency_level=CONSISTENCY)
            while batch := it.next():
                yield from batch
            it.close()
        except MilvusException as exc:
            raise StoreError(f"scan failed: {exc}") from exc

    def iter_product_ids(self) -> Iterator[str]:
        for row in self._iter_rows(["product_id"]):
            yield row["product_id"]

    def facets(self) -> dict[str, dict[str, int]]:
        counts: dict[str, Counter[str]] = {"category": Counter(), "color": Counter(), "size": Counter()}
        lo, hi = float("inf"), float("-inf")  # a running range: no list of every price
        for row in self._iter_rows(["category", "color", "size", "price"]):
            for name, counter in counts.items():
                if row.get(name):
                    counter[row[name]] += 1
            if row.get("price") is not None and row["price"] >= 0:
                lo, hi = min(lo, float(row["price"])), max(hi, float(row["price"]))
        out: dict[str, Any] = {k: dict(c.most_common()) for k, c in counts.items()}
        out["price"] = {"min": round(lo, 2), "max": round(hi, 2)} if lo <= hi else {}
        return out

    def referenced_images(self, refs: Sequence[str]) -> set[str]:
        """Those of `refs` that some stored product still lists among its images.

        Media files are content-addressed, so several products may share one; a file is
        only deleted once this says nobody references it. One query per ref that stops at
        the first match (limit 1); callers ask about one product's images at a time.
        """
        return {ref for ref in dict.fromkeys(refs)
                if self._query(f"json_contains(images, {_literal(ref)})", ["product_id"], limit=1)}
