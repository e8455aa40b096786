"""MilvusStore: the ProductStore over pymilvus' MilvusClient.

The same code talks to the embedded milvus-lite server and to a Milvus standalone/cluster;
only the URI differs. Every read uses Strong consistency so a write is visible to the next
search (the API promises "searchable at once").

Writes are versioned (schema.py says why): a product write inserts all of the product's rows
under a new write version in one request, then deletes the product's older versions. Readers
keep only the newest version of each product, so a crash between the two steps, or two
replicas writing one product at once, is never seen as a mix of two writes; the next write, a
search that meets the leftover rows, or a resuming ingest removes them.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pymilvus import AnnSearchRequest, MilvusClient, MilvusException, RRFRanker, WeightedRanker
from pymilvus.exceptions import DescribeCollectionException

from lookalike import variants
from lookalike.catalog.product import Product
from lookalike.store import fusion
from lookalike.store.base import Filters, Hit, Record, StoredProduct, StoreError, StoreRequestError
from lookalike.store.flush_policy import AutoFlush, FlushPolicy
from lookalike.store.healing import HealingClient, is_client_error
from lookalike.store.read_cache import ReadCache
from lookalike.store.schema import (
    LEXICAL_FIELDS,
    NO_PRICE,
    PRODUCT_FIELDS,
    REQUIRED_FIELDS,
    VARIANT_FIELDS,
    build_index_params,
    build_schema,
    lexical_text,
    row_pk,
    search_params,
)

if TYPE_CHECKING:
    from lookalike.config import Settings

log = logging.getLogger(__name__)
CONSISTENCY = "Strong"
WRITE_BATCH_ROWS = 1000
ID_CHUNK = 1000  # product ids per `in [...]` filter
STALE_RETRIES = 3  # searches re-run at most this often to drop older versions they met
KEY_FIELDS = ["product_id", "image_index", "write_version"]
# Each product version's first row: the text vector and the words are the same on every row of
# a version, so text and BM25 searches take these rows and need no grouping by product (which
# costs milvus-lite several times a plain search; bench/store_calls.py).
MAIN_ROW = "image_index == 0"
# gRPC backs off 1, 1.6, 2.6 ... s between reconnects (up to 120 s): after a store restart the
# client stayed away ~9 s, longer than the restart. Retry every 0.2-1 s instead (loopback or a
# cluster address: a cheap connect attempt).
RECONNECT_OPTIONS = {"grpc.initial_reconnect_backoff_ms": 200,
                     "grpc.min_reconnect_backoff_ms": 200, "grpc.max_reconnect_backoff_ms": 1000}
# HNSW under a filter walks past the filtered-out nodes and misses neighbours: on the demo
# catalogue (python -m lookalike.eval) recall@10 was 0.93-0.96 per filter selectivity at ef 128
# and >= 0.998 at 512. Filtered searches use at least this ef.
FILTERED_EF = 512

_version_lock = threading.Lock()
_last_version = 0


def new_write_version() -> int:
    """Unique, time-ordered write version: microseconds since the epoch x 1000 plus a random
    part, so two processes writing in the same microsecond still differ; strictly increasing
    within a process. Across hosts the newer clock wins (last writer wins)."""
    global _last_version
    with _version_lock:
        candidate = time.time_ns() // 1000 * 1000 + secrets.randbelow(1000)
        _last_version = max(candidate, _last_version + 1)
        return _last_version


def _store_error(message: str, exc: MilvusException) -> StoreError:
    """A refused request (bad expression or argument) is the caller's error, not an outage."""
    return StoreRequestError(message) if is_client_error(exc) else StoreError(message)


def _literal(value: str) -> str:
    """A Milvus string literal; JSON escaping covers quotes, backslashes and control chars."""
    return json.dumps(str(value), ensure_ascii=False)


def _in(field: str, values: Sequence[str]) -> str:
    return f"{field} in [{', '.join(_literal(v) for v in values)}]"


def filter_expression(filters: Filters, exclude_ids: Sequence[str] = ()) -> str:
    """Build a boolean expression from typed values only (never from user-written syntax)."""
    parts: list[str] = []
    for name, values in (("category", filters.categories), ("color", filters.colors),
                         ("size", filters.sizes)):
        if values:
            parts.append(_in(name, values))
    if filters.min_price is not None:
        parts.append(f"price >= {float(filters.min_price)!r}")
    if filters.max_price is not None:
        parts.append(f"price <= {float(filters.max_price)!r}")
    if filters.min_price is not None or filters.max_price is not None:
        parts.append("price >= 0")  # products without a price never match a price range
    if exclude_ids:
        parts.append(f"not ({_in('product_id', exclude_ids)})")
    return " and ".join(parts)


def _older_than(cutoffs: dict[str, int]) -> str:
    """Rows of these products older than the given version of each."""
    by_cutoff: dict[int, list[str]] = defaultdict(list)
    for pid, version in cutoffs.items():
        by_cutoff[version].append(pid)
    return " or ".join(f"({_in('product_id', pids)} and write_version < {int(v)})"
                       for v, pids in by_cutoff.items())


def _and(*exprs: str) -> str:
    return " and ".join(f"({e})" for e in exprs if e)


def _best_per_product(hits: Any) -> dict[str, tuple[float, dict[str, Any]]]:
    """{product_id: (its best score, that row's entity)} over one list of search hits."""
    best: dict[str, tuple[float, dict[str, Any]]] = {}
    for hit in hits:
        entity = hit.get("entity", hit)
        score = float(hit["distance"])
        if entity["product_id"] not in best or score > best[entity["product_id"]][0]:
            best[entity["product_id"]] = (score, entity)
    return best


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@dataclass(frozen=True)
class _Scored:
    """A search winner before its fields are read."""

    product_id: str
    score: float
    image_index: int
    version: int
    scores: dict[str, float] = field(default_factory=dict, compare=False)  # the score's parts
    row: dict[str, Any] = field(default_factory=dict, compare=False)  # the fields it came with


def _phash_vector(hexhash: str, product_id: str, n: int) -> list[float]:
    """The photo's hash as a vector; a photo without one (written before hashes) gets a
    pseudo-random one from its key, which matches no other photo."""
    if not hexhash:
        import hashlib

        hexhash = hashlib.sha256(f"{product_id}#{n}".encode()).hexdigest()[:16]
    return variants.phash_vector(hexhash)


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
        settings: Settings,
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
            # Healing: a restarted server's released collection is loaded again (healing.py).
            self.client = HealingClient(MilvusClient(uri=uri, token=token, timeout=timeout_s,
                                                     grpc_options=RECONNECT_OPTIONS),
                                        collection, load_kwargs=self._load_kwargs())
        except MilvusException as exc:
            raise _store_error(f"cannot connect to Milvus at {uri}: {exc}", exc) from exc
        self._search_params = {"metric_type": "COSINE", "params": search_params(settings)}
        self._filtered_params = dict(self._search_params)
        if "ef" in self._search_params["params"]:
            self._filtered_params["params"] = {
                **self._search_params["params"],
                "ef": max(FILTERED_EF, int(self._search_params["params"]["ef"]))}
        # milvus-lite does not protect concurrent writes to one collection: serialise ours.
        self._write_lock = threading.Lock()
        self._lexical: bool | None = None  # has the BM25 fields (schema.py); read once
        self.auto_flush: AutoFlush | None = None  # see enable_auto_flush
        self._variants: bool | None = None  # has the variant fields (schema.py); read once
        # Winners' rows for read_cache_ttl_s (read_cache.py: what it can miss, why not groups).
        self._cache = ReadCache(float(getattr(settings, "read_cache_ttl_s", 0.0) or 0.0))

    @classmethod
    def from_settings(cls, settings: Settings, *, image_dim: int, text_dim: int,
                      auto_flush: bool = False) -> MilvusStore:
        """`auto_flush`: flush this store's own writes by the write-flush policy (the API's
        write path; settings.write_flush_rows / write_flush_idle_s, off with write_flush=False).
        Bulk writers (the ingest job) flush themselves at the end instead."""
        store = cls(settings.resolved_milvus_uri, collection=settings.collection,
                    image_dim=image_dim, text_dim=text_dim, settings=settings,
                    token=settings.resolved_milvus_token())
        if auto_flush and getattr(settings, "write_flush", False):
            store.enable_auto_flush(max_rows=settings.write_flush_rows,
                                    idle_s=settings.write_flush_idle_s)
        return store

    def enable_auto_flush(self, *, max_rows: int, idle_s: float) -> AutoFlush:
        """Flush after `max_rows` written rows, or `idle_s` after the last write
        (flush_policy.py)."""
        self.auto_flush = AutoFlush(self.flush, FlushPolicy(max_rows=max_rows, idle_s=idle_s))
        return self.auto_flush

    def _wrote(self, rows: int) -> None:
        self._cache.clear()
        if self.auto_flush is not None and rows:
            self.auto_flush.wrote(rows)

    # -- lifecycle -----------------------------------------------------------------------------

    def _create_kwargs(self) -> dict[str, int]:
        # Shards spread writes over data nodes; fixed at creation (Settings.milvus_shards).
        shards = int(getattr(self.settings, "milvus_shards", 0) or 0)
        return {"num_shards": shards} if shards else {}

    def _load_kwargs(self) -> dict[str, int]:
        # In-memory replicas on distinct query nodes: searches survive one node's loss.
        replicas = int(getattr(self.settings, "milvus_replicas", 0) or 0)
        return {"replica_number": replicas} if replicas else {}

    def ensure_collection(self) -> None:
        """Create the collection and indexes if missing, check dims, and load it."""
        try:
            if not self.client.has_collection(self.collection):
                # milvus-lite runs one HNSW search per partition (16 by default) and has no
                # nodes to spread them over, so the partition key only pays off on Milvus proper.
                schema = build_schema(image_dim=self.image_dim, text_dim=self.text_dim,
                                      partition_key=not getattr(self.settings, "embedded", False))
                self.client.create_collection(self.collection, schema=schema,
                                              consistency_level=CONSISTENCY, **self._create_kwargs())
                # sync=False: pymilvus sleeps 0.5 s before its first look at each new index, and
                # there are nine (4.5 s of every first ingest, every new collection). An empty
                # collection has nothing to build; a failed creation still raises; the ingest
                # waits for the indexes once its rows are in (flush_and_wait_for_index).
                self.client.create_index(self.collection, build_index_params(self.client, self.settings),
                                         sync=False)
                log.info("created collection %s", self.collection)
                self._check_shards()
            self._check_dims()
            # Collections come back NotLoad after a server restart.
            self.client.load_collection(self.collection, **self._load_kwargs())
        except MilvusException as exc:
            raise _store_error(f"cannot prepare collection {self.collection}: {exc}", exc) from exc

    def _check_shards(self) -> None:
        # milvus-lite (reached by URI) accepts num_shards and keeps one: say so, once.
        wanted = self._create_kwargs().get("num_shards")
        got = self.client.describe_collection(self.collection).get("num_shards")
        if wanted and got != wanted:
            log.warning("Milvus at %s created %s with %s shard(s), not LOOKALIKE_MILVUS_SHARDS=%d "
                        "(milvus-lite has no shards or replicas)", self.uri, self.collection, got,
                        wanted)

    def _check_dims(self) -> None:
        desc = self.client.describe_collection(self.collection)
        dims = {f["name"]: f.get("params", {}).get("dim") for f in desc["fields"]}
        missing = [f for f in REQUIRED_FIELDS if f not in dims]
        if missing:
            raise StoreError(
                f"collection {self.collection} was made by an older lookalike (no "
                f"{', '.join(missing)} field): use another LOOKALIKE_COLLECTION, or drop it and "
                "re-ingest")
        self._lexical = all(f in dims for f in LEXICAL_FIELDS)
        self._variants = all(f in dims for f in VARIANT_FIELDS)
        if not self._variants:
            log.warning("collection %s has no variant fields (made before variant groups): "
                        "searches show every variant; re-ingest into a new collection to "
                        "group them", self.collection)
        if not self._lexical:
            log.warning("collection %s has no BM25 fields (made before full-text search): text "
                        "searches use the dense vector only; re-ingest into a new collection "
                        "for keyword matching", self.collection)
        want = {"image_vector": self.image_dim, "text_vector": self.text_dim}
        for name, dim in want.items():
            if dims.get(name) is not None and int(dims[name]) != dim:
                raise StoreError(
                    f"collection {self.collection} has {name} dim {dims[name]} but the model "
                    f"gives {dim}: use another LOOKALIKE_COLLECTION or re-ingest")

    @property
    def lexical(self) -> bool:
        """Whether the collection has the BM25 full-text fields."""
        if self._lexical is None:
            try:
                self._check_dims()
            except MilvusException as exc:
                raise _store_error(f"cannot describe collection {self.collection}: {exc}",
                                   exc) from exc
        return bool(self._lexical)

    @property
    def variants(self) -> bool:
        """Whether the collection has the variant-group fields."""
        if self._variants is None:
            _ = self.lexical  # one describe reads both
        return bool(self._variants)

    def drop(self) -> None:
        """Drop the collection; for an alias (lookalike/store/aliases.py), the alias and the
        collection behind it. Nothing to drop is not an error (as drop_collection)."""
        try:
            real = self.client.describe_collection(self.collection).get("collection_name")
        except DescribeCollectionException:  # no collection or alias of that name
            return
        if real and real != self.collection:
            self.client.drop_alias(self.collection)
        self.client.drop_collection(real or self.collection)

    # -- collection properties: small records that travel with the collection ------------------

    def get_property(self, key: str) -> str | None:
        try:
            desc = self.client.describe_collection(self.collection)
        except MilvusException as exc:
            raise StoreError(f"cannot describe collection {self.collection}: {exc}") from exc
        return (desc.get("properties") or {}).get(key)

    def set_property(self, key: str, value: str) -> None:
        try:
            self.client.alter_collection_properties(self.collection, properties={key: value})
        except MilvusException as exc:
            raise StoreError(f"cannot set {key} on {self.collection}: {exc}") from exc

    def close(self) -> None:
        if self.auto_flush is not None:
            self.auto_flush.close()  # what is still pending gets flushed first
        self.client.close()

    # -- writes ----------------------------------------------------------------------------------

    def upsert(self, items: Sequence[StoredProduct]) -> int:
        """Write whole products: all rows of one product go in one request, under one new
        write version, then the products' older versions are deleted."""
        version = new_write_version()
        batches: list[list[dict[str, Any]]] = [[]]
        for item in items:
            rows = self._rows(item, version)
            if batches[-1] and len(batches[-1]) + len(rows) > WRITE_BATCH_ROWS:
                batches.append([])  # never split a product over two requests
            batches[-1].extend(rows)
        pids = list(dict.fromkeys(item.product.product_id for item in items))
        # Copies keep their versions: then the newest stored version wins, whichever it is.
        retire_at = 0 if any(item.write_version for item in items) else version
        try:
            with self._write_lock:
                for batch in batches:
                    if batch:
                        self.client.upsert(self.collection, batch)
                retired = self._retire_older(pids, retire_at)
        except MilvusException as exc:
            raise _store_error(f"upsert failed: {exc}", exc) from exc
        self._wrote(sum(len(b) for b in batches) + retired)
        return len(items)

    def _rows(self, item: StoredProduct, version: int) -> list[dict[str, Any]]:
        p = item.product
        version = item.write_version or version
        vectors = np.asarray(item.image_vectors, dtype=np.float32).reshape(-1, self.image_dim)
        if len(vectors) == 0:
            raise ValueError(f"product {p.product_id} has no image vector")
        text_vec = np.asarray(item.text_vector, dtype=np.float32).reshape(self.text_dim).tolist()
        lexical = {"lexical_text": lexical_text(p)} if self.lexical else {}
        group = {}
        if self.variants:
            # An explicit group (manifest column, PUT metadata) wins over a detected one.
            group = {"group_id": variants.explicit_group(p.attributes) or item.group_id
                     or p.product_id}
        hashes = list(item.phashes) + [""] * (len(vectors) - len(item.phashes))
        return [{**lexical, **group,
                 **({"phash_vector": _phash_vector(hashes[n], p.product_id, n)}
                    if self.variants else {}),
            "pk": row_pk(p.product_id, version, n), "product_id": p.product_id, "image_index": n,
            "title": p.title, "description": p.description, "category": p.category,
            "color": p.color, "size": p.size,
            "price": NO_PRICE if p.price is None else float(p.price),
            "images": list(p.images), "attributes": p.attributes,
            "content_hash": item.content_hash, "model_version": item.model_version,
            "write_version": version, "source": item.source,
            "image_vector": vec.tolist(), "text_vector": text_vec,
        } for n, vec in enumerate(vectors)]

    def _versions(self, product_ids: Sequence[str]) -> dict[str, list[int]]:
        """Every stored write version of each product (each version has an image 0 row)."""
        out: dict[str, list[int]] = defaultdict(list)
        for chunk in _chunks(list(product_ids), ID_CHUNK):
            for row in self._query(f"{_in('product_id', chunk)} and image_index == 0",
                                   ["product_id", "write_version"]):
                out[row["product_id"]].append(int(row["write_version"]))
        return out

    def _retire_older(self, product_ids: Sequence[str], version: int) -> int:
        """Delete every version older than the newest stored one. If a racing write stored a
        newer version than ours, ours is the one retired: the newest write wins either way,
        whichever request reached the store first (the caller holds the write lock).
        Returns how many products had older versions deleted."""
        cutoffs: dict[str, int] = {}
        for pid, versions in self._versions(product_ids).items():
            newest = max(version, *versions)
            if min(versions) < newest:
                cutoffs[pid] = newest
        for chunk in _chunks(list(cutoffs), ID_CHUNK):
            self.client.delete(self.collection,
                               filter=_older_than({pid: cutoffs[pid] for pid in chunk}))
        return len(cutoffs)

    def newest_versions(self, product_ids: Sequence[str] | None = None) -> dict[str, int]:
        """{product_id: newest stored write version}, of these products or of all."""
        if product_ids is not None:
            return {p: max(v) for p, v in self._versions(product_ids).items()}
        out: dict[str, int] = {}
        for row in self._iter_rows(["product_id", "write_version"]):
            out[row["product_id"]] = max(out.get(row["product_id"], 0), int(row["write_version"]))
        return out

    def repair(self, product_ids: Sequence[str]) -> None:
        """Finish interrupted writes: drop all but the newest version of these products."""
        try:
            with self._write_lock:
                retired = self._retire_older(list(product_ids), 0)
        except MilvusException as exc:
            raise _store_error(f"repair failed: {exc}", exc) from exc
        self._wrote(retired)

    def delete(self, product_ids: Sequence[str]) -> int:
        if not product_ids:
            return 0
        existing = list(self._versions(product_ids))
        if not existing:
            return 0
        try:
            with self._write_lock:
                for chunk in _chunks(existing, ID_CHUNK):
                    self.client.delete(self.collection, filter=_in("product_id", chunk))
        except MilvusException as exc:
            raise _store_error(f"delete failed: {exc}", exc) from exc
        self._wrote(len(existing))
        return len(existing)

    def flush(self) -> None:
        try:
            with self._write_lock:  # milvus-lite: no flush in the middle of our own write
                self.client.flush(self.collection)
        except MilvusException as exc:
            raise _store_error(f"flush failed: {exc}", exc) from exc

    def flushed_rows(self) -> int:
        """Rows in flushed segments (what the vector index covers, deleted rows included);
        rows still in the write buffer are not counted."""
        try:
            info = self.client.describe_index(self.collection, index_name="image_vector") or {}
        except MilvusException as exc:
            raise _store_error(f"index status failed: {exc}", exc) from exc
        return int(info.get("total_rows") or 0)

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
                raise _store_error(f"index status failed: {exc}", exc) from exc
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
        image_vectors: Sequence[np.ndarray] = (),
        lexical_query: str | None = None,
        check_newest: bool = True,
    ) -> list[Hit]:
        """One result per product, best first.

        `check_newest=False`: the hits' fields come with the searches themselves (output
        fields), and no read checks that each hit is its product's newest version: the caller
        checks the ones it shows (SearchService does, in the read that also finds their
        variants: newest_with_groups). Every hit is still one whole version (its fields, its
        photo's match); a hybrid or text hit whose parts met two versions keeps the older
        `version`, so the caller's check finds it.

        `lexical_query` (text-only searches): BM25 over the product's words joins the dense
        text search in the same request, fused by reciprocal rank (Milvus' RRFRanker, scaled
        to 0..1 as fusion.rrf), when the collection has the BM25 fields.

        Several `image_vectors` (a product's photos, for "similar") search at once: each
        product scores by its best match over them. Scores: with one modality, the raw cosine;
        with an image and a text vector, w * (1 + image cosine) / 2 + (1 - w) * (1 + text
        cosine) / 2, exact per product over each modality's candidates (fusion.py). The two
        scales differ: never compare a hybrid score with a single-modality one.
        """
        queries = [np.asarray(v, np.float32).tolist() for v in image_vectors]
        if image_vector is not None:
            queries.insert(0, np.asarray(image_vector, np.float32).tolist())
        if not queries and text_vector is None:
            raise ValueError("search needs an image vector, a text vector or both")
        base = filter_expression(filters, exclude_ids)
        if not check_newest:
            return [self._hit(s, s.row) for s in self._score(
                queries, text_vector, float(image_weight), base, top_k, lexical_query,
                fields=self._hit_fields)]
        older: dict[str, int] = {}
        for _ in range(STALE_RETRIES):
            expr = " and ".join(f"({e})" for e in (base, older and f"not ({_older_than(older)})")
                                if e)
            scored = self._score(queries, text_vector, float(image_weight), expr, top_k,
                                 lexical_query)
            # One read for the winners' fields, which is also the newest-version check.
            rows = self._winner_rows(scored)
            stale = {s.product_id: int(rows[s.product_id]["write_version"]) for s in scored
                     if s.product_id in rows and int(rows[s.product_id]["write_version"]) > s.version}
            if not stale:
                break
            # An interrupted or racing write left older rows that out-ranked the newest
            # version: search again without them, and finish that write's cleanup.
            older.update(stale)
            self.repair(list(stale))
        # Still stale after the retries (writes racing on these products): leave them out
        # rather than pair one version's matched photo with another's fields.
        return [self._hit(s, rows[s.product_id]) for s in scored
                if s.product_id in rows and s.product_id not in stale]

    @staticmethod
    def _hit(s: _Scored, row: dict[str, Any]) -> Hit:
        return Hit(_product_from_row(row), s.score, s.image_index, s.version, dict(s.scores),
                   model_version=row.get("model_version") or "", group_id=row.get("group_id") or "")

    @property
    def _hit_fields(self) -> list[str]:
        return [*self._product_fields, "model_version"]

    def _score(self, queries: list[list[float]], text_vector: np.ndarray | None,
               image_weight: float, expr: str, top_k: int,
               lexical_query: str | None = None, *,
               fields: list[str] = KEY_FIELDS) -> list[_Scored]:
        """The winners, with `fields` of the row each came with (key fields by default:
        candidates are many, and search() reads only the winners' fields)."""
        if (not queries and text_vector is not None and lexical_query and lexical_query.strip()
                and self.lexical):
            return self._text_and_lexical(np.asarray(text_vector, np.float32).tolist(),
                                          lexical_query, expr, top_k, fields)
        if queries and text_vector is not None:
            return self._hybrid(queries, np.asarray(text_vector, np.float32).tolist(),
                                image_weight, expr, top_k, fields)
        if queries:
            field, best = "image_vector", self._grouped("image_vector", queries, expr, top_k, fields)
        else:
            field = "text_vector"
            best = self._main_rows(np.asarray(text_vector, np.float32).tolist(), expr, top_k, fields)
        modality = field.removesuffix("_vector")
        return sorted((_Scored(pid, score, int(row.get("image_index") or 0), int(row["write_version"]),
                               {modality: score}, row)
                       for pid, (score, row) in best.items()), key=lambda s: -s.score)[:top_k]

    def _grouped(self, field: str, data: list[list[float]], expr: str, limit: int,
                 fields: list[str] = KEY_FIELDS) -> dict[str, tuple[float, dict[str, Any]]]:
        """{product_id: (best cosine, its row's `fields`)} over one or several query vectors."""
        try:
            res = self.client.search(self.collection, data=data, anns_field=field, filter=expr,
                                     limit=limit, output_fields=fields,
                                     group_by_field="product_id",
                                     search_params=self._filtered_params if expr else self._search_params,
                                     consistency_level=CONSISTENCY)
        except MilvusException as exc:
            raise _store_error(f"search failed: {exc}", exc) from exc
        return _best_per_product(hit for per_query in res or [] for hit in per_query)

    def _main_rows(self, text: list[float], expr: str, limit: int,
                   fields: list[str] = KEY_FIELDS) -> dict[str, tuple[float, dict[str, Any]]]:
        """{product_id: (text cosine, its row's `fields`)}: the text search over main rows."""
        main = _and(MAIN_ROW, expr)
        try:
            res = self.client.search(self.collection, data=[text], anns_field="text_vector",
                                     filter=main, limit=limit, output_fields=fields,
                                     search_params=self._filtered_params,
                                     consistency_level=CONSISTENCY)
        except MilvusException as exc:
            raise _store_error(f"search failed: {exc}", exc) from exc
        return _best_per_product((res or [[]])[0])

    def _hybrid(self, queries: list[list[float]], text: list[float], w: float, expr: str,
                top_k: int, fields: list[str] = KEY_FIELDS) -> list[_Scored]:
        """Image + text, fused per product (lookalike/store/fusion.py says how and why)."""
        limit = fusion.candidate_limit(top_k)
        image = self._grouped("image_vector", queries, expr, limit, fields)
        texts = self._main_rows(text, expr, limit, fields)
        more_image, more_text = self._complete(
            queries, text, image_of=[p for p in texts if p not in image],
            text_of=[p for p in image if p not in texts], expr=expr, fields=fields)
        image.update(more_image)
        texts.update(more_text)
        scores = fusion.fuse({p: s for p, (s, _) in image.items()},
                             {p: s for p, (s, _) in texts.items()}, w)
        ranked = sorted(scores, key=lambda p: -scores[p])[:top_k]
        return [_Scored(p, scores[p], int(image[p][1].get("image_index") or 0),
                        min(int(image[p][1]["write_version"]), int(texts[p][1]["write_version"])),
                        {"image": image[p][0], "text": texts[p][0]}, image[p][1])
                for p in ranked]

    def _text_and_lexical(self, text: list[float], words: str, expr: str, top_k: int,
                          fields: list[str] = KEY_FIELDS) -> list[_Scored]:
        """Dense text and BM25 in one request, fused by the store's RRFRanker: the formula of
        fusion.rrf, over each modality's best `candidate_limit` main rows. The store returns
        the fused score only, so a winner's parts (its text cosine, its BM25 score) are not
        known: reading them would take a request more. Their `scores` say how they were scored
        ({"rrf": the fused score}), and explanations say so."""
        limit = fusion.candidate_limit(top_k)
        main = _and(MAIN_ROW, expr)
        requests = [
            AnnSearchRequest(data=[text], anns_field="text_vector", limit=limit, expr=main,
                             param=self._filtered_params),
            AnnSearchRequest(data=[words], anns_field="lexical", limit=limit, expr=main,
                             param={"metric_type": "BM25"})]
        try:
            # Two versions of a product (an interrupted write) are two main rows: a few more.
            res = self.client.hybrid_search(self.collection, requests, RRFRanker(fusion.RRF_K),
                                            limit=top_k + STALE_RETRIES, output_fields=fields,
                                            consistency_level=CONSISTENCY)
        except MilvusException as exc:
            raise _store_error(f"text search failed: {exc}", exc) from exc
        best = _best_per_product((res or [[]])[0])
        scale = fusion.rrf_scale(2)
        return [_Scored(p, score * scale, 0, int(row["write_version"]), {"rrf": score * scale}, row)
                for p, (score, row) in sorted(best.items(), key=lambda kv: -kv[1][0])][:top_k]

    def _complete(self, queries: list[list[float]], text: list[float], *, image_of: list[str],
                  text_of: list[str], expr: str, fields: list[str] = KEY_FIELDS
                  ) -> tuple[dict[str, tuple[float, dict[str, Any]]],
                             dict[str, tuple[float, dict[str, Any]]]]:
        """The exact missing cosines of candidates that one modality found: the image cosines
        of `image_of` (best over their photos) and the text cosines of `text_of`, in one
        request. The store computes them (searches restricted to those products) rather than
        sending their vectors, which costs milvus-lite far more. The two searches cover
        disjoint products, so a WeightedRanker(1, 1) without normalisation passes each row's
        own cosine through unchanged."""
        if not image_of and not text_of:
            return {}, {}
        requests = []
        if image_of:
            requests.append(AnnSearchRequest(
                data=queries, anns_field="image_vector", limit=len(image_of),
                param=self._filtered_params, expr=_and(_in("product_id", image_of), expr)))
        if text_of:  # hybrid_search takes as many query vectors in every request
            requests.append(AnnSearchRequest(
                data=[text] * len(queries), anns_field="text_vector", limit=len(text_of),
                param=self._filtered_params, expr=_and(_in("product_id", text_of), expr)))
        try:
            # Grouped by product: each sub-search returns each product's best row.
            res = self.client.hybrid_search(
                self.collection, requests, WeightedRanker(*[1.0] * len(requests), norm_score=False),
                limit=len(image_of) + len(text_of), output_fields=fields,
                group_by_field="product_id", consistency_level=CONSISTENCY)
        except MilvusException as exc:
            raise _store_error(f"search failed: {exc}", exc) from exc
        best = _best_per_product(hit for per_query in res or [] for hit in per_query)
        wanted = set(image_of)
        return ({p: b for p, b in best.items() if p in wanted},
                {p: b for p, b in best.items() if p not in wanted})

    def _winner_rows(self, scored: Sequence[_Scored]) -> dict[str, dict[str, Any]]:
        """Each winner's newest row: from the read cache when it holds the version the search
        met (or a newer one), else read (and cached)."""
        rows, missing = self._cache.rows({s.product_id: s.version for s in scored})
        if missing:
            fresh = self._newest_rows(missing)
            self._cache.put_rows(fresh.values())
            rows.update(fresh)
        return rows

    def _newest_rows(self, product_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """{product_id: its newest version's first row, with the product fields}."""
        out: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(product_ids), ID_CHUNK):
            for row in self._query(f"{_in('product_id', chunk)} and image_index == 0",
                                   [*self._product_fields, "model_version"]):
                pid = row["product_id"]
                if pid not in out or int(row["write_version"]) > int(out[pid]["write_version"]):
                    out[pid] = row
        return out

    def _query(self, expr: str, fields: list[str], limit: int | None = None) -> list[dict[str, Any]]:
        try:
            kwargs: dict[str, Any] = {"consistency_level": CONSISTENCY}
            if limit is not None:
                kwargs["limit"] = limit
            return list(self.client.query(self.collection, filter=expr, output_fields=fields, **kwargs))
        except MilvusException as exc:
            raise _store_error(f"query failed: {exc}", exc) from exc

    def get(self, product_ids: Sequence[str], *, with_vectors: bool = False) -> dict[str, Record]:
        """The newest stored version of each product, with how intact it is (Record.intact)."""
        if not product_ids:
            return {}
        fields = [*self._product_fields, "content_hash", "model_version", "source"]
        if with_vectors:
            fields += ["image_vector", "text_vector"]
            if self.variants:
                fields.append("phash_vector")
        by_product: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        for chunk in _chunks(list(product_ids), ID_CHUNK):
            for row in self._query(_in("product_id", chunk), fields):
                by_product[row["product_id"]][int(row["write_version"])].append(row)
        out: dict[str, Record] = {}
        for pid, versions in by_product.items():
            version = max(versions)
            rows = sorted(versions[version], key=lambda r: r["image_index"])
            rec = out[pid] = Record(_product_from_row(rows[0]), rows[0]["content_hash"],
                                    rows[0]["model_version"], source=rows[0]["source"],
                                    write_version=version, image_rows=len(rows),
                                    versions=len(versions), group_id=rows[0].get("group_id") or "")
            if with_vectors:
                rec.image_vectors = [np.asarray(r["image_vector"], dtype=np.float32) for r in rows]
                rec.text_vector = np.asarray(rows[0]["text_vector"], dtype=np.float32)
                if self.variants:
                    rec.phashes = tuple(variants.vector_phash(r["phash_vector"]) for r in rows)
        return out

    @property
    def _product_fields(self) -> list[str]:
        return [*PRODUCT_FIELDS, "group_id"] if self.variants else list(PRODUCT_FIELDS)

    # -- variant groups (lookalike/variants.py) ---------------------------------------------------

    def variant_photos(self, product_ids: Sequence[str]) -> dict[str, variants.Photo]:
        """Each product's main photo (newest version's image 0) as detection compares it."""
        out: dict[str, tuple[int, variants.Photo]] = {}
        fields = ["product_id", "write_version", "category", "attributes", "group_id",
                  "image_vector", "phash_vector"]
        for chunk in _chunks(list(product_ids), ID_CHUNK):
            for r in self._query(f"{_in('product_id', chunk)} and image_index == 0", fields):
                version = int(r["write_version"])
                if r["product_id"] in out and out[r["product_id"]][0] >= version:
                    continue
                out[r["product_id"]] = (version, variants.Photo(
                    r["product_id"], r.get("category") or "",
                    variants.vector_phash(r["phash_vector"]),
                    np.asarray(r["image_vector"], dtype=np.float32), r.get("group_id") or "",
                    bool(variants.explicit_group(r.get("attributes")))))
        return {pid: photo for pid, (_, photo) in out.items()}

    def photo_neighbours(self, field: str, vectors: Sequence[Any], limit: int) -> list[list[str]]:
        """Per query vector, the products whose main photo is nearest on `field`
        ("image_vector" or "phash_vector"), one per product, best first."""
        if not vectors:
            return []
        data = [np.asarray(v, np.float32).tolist() for v in vectors]
        try:
            res = self.client.search(self.collection, data=data, anns_field=field,
                                     filter="image_index == 0", limit=limit + 1,
                                     output_fields=["product_id"], group_by_field="product_id",
                                     search_params=self._filtered_params,
                                     consistency_level=CONSISTENCY)
        except MilvusException as exc:
            raise _store_error(f"neighbour search failed: {exc}", exc) from exc
        return [[h.get("entity", h)["product_id"] for h in per_query] for per_query in res or []]

    def group_members(self, group_ids: Sequence[str]) -> dict[str, list[Product]]:
        """{group label: its products (newest versions), by product id}."""
        if not group_ids or not self.variants:
            return {}
        newest: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(dict.fromkeys(group_ids)), ID_CHUNK):
            for row in self._query(f"{_in('group_id', chunk)} and image_index == 0",
                                   self._product_fields):
                pid = row["product_id"]
                if pid not in newest or int(row["write_version"]) > int(newest[pid]["write_version"]):
                    newest[pid] = row
        out: dict[str, list[Product]] = defaultdict(list)
        for pid in sorted(newest):
            out[newest[pid]["group_id"]].append(_product_from_row(newest[pid]))
        return dict(out)

    def newest_with_groups(self, product_ids: Sequence[str], group_ids: Sequence[str]
                           ) -> tuple[dict[str, int], dict[str, list[Product]]]:
        """One read for a page of results: ({product_id: its newest stored write version},
        {group label: its products' newest versions}). A search made with check_newest=False
        compares the first with its hits' versions (a newer one: an interrupted or racing
        write); the second is group_members' answer."""
        pids, groups = list(dict.fromkeys(product_ids)), list(dict.fromkeys(group_ids))
        if not self.variants:
            return self.newest_versions(pids), {}
        newest: dict[str, dict[str, Any]] = {}
        # One `in` list of each per request: a page is far below ID_CHUNK.
        for start in range(0, max(len(pids), len(groups)), ID_CHUNK):
            parts = [_in(f, ids[start:start + ID_CHUNK]) for f, ids in
                     (("product_id", pids), ("group_id", groups)) if ids[start:start + ID_CHUNK]]
            for row in self._query(f"({' or '.join(parts)}) and image_index == 0",
                                   self._product_fields):
                pid = row["product_id"]
                if pid not in newest or int(row["write_version"]) > int(newest[pid]["write_version"]):
                    newest[pid] = row
        members: dict[str, list[Product]] = defaultdict(list)
        wanted = set(groups)
        for pid in sorted(newest):
            if newest[pid].get("group_id") in wanted:
                members[newest[pid]["group_id"]].append(_product_from_row(newest[pid]))
        versions = {pid: int(newest[pid]["write_version"]) for pid in pids if pid in newest}
        return versions, dict(members)

    def set_groups(self, labels: dict[str, str]) -> int:
        """Relabel products' rows in place: Milvus' partial upsert of `group_id` alone, so no
        vectors are read or written again. A product rewritten between the read and the
        update fails the update (StoreError); the next detection pass labels it."""
        done = 0
        with self._write_lock:
            for chunk in _chunks(list(labels), ID_CHUNK):
                rows = self._query(_in("product_id", chunk), ["pk", "product_id"])
                updates = [{"pk": r["pk"], "group_id": labels[r["product_id"]]} for r in rows]
                for batch in _chunks(updates, WRITE_BATCH_ROWS):
                    try:
                        self.client.upsert(self.collection, list(batch), partial_update=True)
                    except MilvusException as exc:
                        raise _store_error(f"group update failed: {exc}", exc) from exc
                done += len({r["product_id"] for r in rows})
        self._cache.clear()
        return done

    def count(self) -> int:
        # One image-0 row per product version: exact but for a write in progress.
        rows = self._query("image_index == 0", ["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def _iter_rows(self, fields: list[str], expr: str = "image_index == 0") -> Iterator[dict[str, Any]]:
        try:
            it = self.client.query_iterator(self.collection, batch_size=1000, filter=expr,
                                            output_fields=fields, consistency_level=CONSISTENCY)
            while batch := it.next():
                yield from batch
            it.close()
        except MilvusException as exc:
            raise _store_error(f"scan failed: {exc}", exc) from exc

    def iter_product_ids(self, *, source: str | None = None) -> Iterator[str]:
        """Every stored product id once (of one source, if given)."""
        expr = "image_index == 0" + (f" and source == {_literal(source)}" if source is not None else "")
        seen: set[str] = set()
        for row in self._iter_rows(["product_id"], expr):
            if row["product_id"] not in seen:
                seen.add(row["product_id"])
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
