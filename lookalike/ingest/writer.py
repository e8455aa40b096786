"""The ingest job's one Milvus writer: regroups image rows into products and upserts in batches.

Why one writer, on the driver: milvus-lite does not protect concurrent writes to a collection,
and at ~2,000 rows/s a single writer outruns the embedders by far. Why batches never split a
product: each `upsert` call here stays within one Milvus request (<= WRITE_BATCH_ROWS rows), so
a killed job leaves every product either fully written with its content hash or not at all,
which is what lets a re-run trust the stored hash and skip it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from lookalike.ingest.stages import EMBED, FAILED, RELINK, UNCHANGED, product_from_json
from lookalike.ingest.summary import ErrorSink, IngestError, Summary
from lookalike.store.base import ProductStore, StoredProduct, StoreError, catalog_source
from lookalike.store.milvus import WRITE_BATCH_ROWS

if TYPE_CHECKING:
    from lookalike.config import Settings

log = logging.getLogger("lookalike.ingest")


@dataclass
class _Partial:
    row: int
    product: str
    content_hash: str
    n_images: int
    image_vectors: dict[int, np.ndarray] = field(default_factory=dict)
    phashes: dict[int, str] = field(default_factory=dict)
    text_vector: np.ndarray | None = None


class StoreWriter:
    def __init__(self, store: ProductStore, summary: Summary, errors: ErrorSink, model_version: str,
                 batch_rows: int = WRITE_BATCH_ROWS, *, source: str = catalog_source("default")
                 ) -> None:
        self.store = store
        self.summary = summary
        self.errors = errors
        self.model_version = model_version
        self.source = source
        self.batch_rows = max(1, min(batch_rows, WRITE_BATCH_ROWS))
        self._partial: dict[str, _Partial] = {}
        self._pending: list[tuple[int, StoredProduct]] = []
        self._pending_rows = 0
        self._relink: dict[str, tuple[int, str, str]] = {}  # pid -> (row, product json, hash)
        # Products embedded in this run: the variant pass (lookalike/variants.py) looks for
        # their near-duplicates once everything is written. Ids only, no vectors.
        self.embedded_ids: list[str] = []

    def consume(self, batch: dict[str, np.ndarray]) -> None:
        """One batch of the pipeline's output rows."""
        for i in range(len(batch["product_id"])):
            pid = str(batch["product_id"][i])
            status = str(batch["status"][i])
            row = int(batch["row"][i])
            if status == UNCHANGED:
                self.summary.skipped += 1
            elif status == RELINK:
                self._relink[pid] = (row, str(batch["product"][i]), str(batch["content_hash"][i]))
                if len(self._relink) >= 500:
                    self._flush_relinks()
            elif status == FAILED:
                self.errors.add(IngestError(row, "images", str(batch["reason"][i]), pid))
            elif status == EMBED:
                self._add_image(pid, row, batch, i)

    def _add_image(self, pid: str, row: int, batch: dict[str, np.ndarray], i: int) -> None:
        part = self._partial.get(pid)
        if part is None:
            part = self._partial[pid] = _Partial(row, str(batch["product"][i]),
                                                 str(batch["content_hash"][i]),
                                                 int(batch["n_images"][i]))
        idx = int(batch["image_index"][i])
        part.image_vectors[idx] = np.asarray(batch["image_vector"][i], dtype=np.float32)
        if "phash" in batch:
            part.phashes[idx] = str(batch["phash"][i])
        if idx == 0:
            part.text_vector = np.asarray(batch["text_vector"][i], dtype=np.float32)
        if len(part.image_vectors) == part.n_images:
            del self._partial[pid]
            self._complete(part)

    def _complete(self, part: _Partial) -> None:
        self.summary.embedded += 1
        self.summary.vector_arrived()
        self.summary.images_embedded += part.n_images
        product = product_from_json(part.product)
        self.embedded_ids.append(product.product_id)
        item = StoredProduct(
            product=product,
            image_vectors=np.stack([part.image_vectors[k] for k in range(part.n_images)]),
            text_vector=part.text_vector, content_hash=part.content_hash,
            model_version=self.model_version, source=self.source,
            phashes=tuple(part.phashes.get(k, "") for k in range(part.n_images)))
        if self._pending_rows + part.n_images > self.batch_rows:
            self.flush_pending()
        self._pending.append((part.row, item))
        self._pending_rows += part.n_images

    def flush_pending(self) -> None:
        if not self._pending:
            return
        items, self._pending, self._pending_rows = self._pending, [], 0
        try:
            self.store.upsert([it for _, it in items])
            self.summary.written += len(items)
            return
        except StoreError as exc:
            log.warning("batch upsert of %d products failed (%s); retrying one by one", len(items), exc)
        # Isolate the product Milvus rejects; if every one fails the store itself is down and
        # the job must stop (a re-run resumes where it stopped).
        failures: list[tuple[int, StoredProduct, str]] = []
        for row, item in items:
            try:
                self.store.upsert([item])
                self.summary.written += 1
            except StoreError as exc:
                failures.append((row, item, str(exc)))
        if failures and len(failures) == len(items):
            raise StoreError(f"every write of a {len(items)}-product batch failed: {failures[0][2]}")
        for row, item, reason in failures:
            self.errors.add(IngestError(row, "write", reason, item.product.product_id))

    def _flush_relinks(self) -> None:
        """Rewrite moved products with their stored vectors (same pixels: no re-embedding)."""
        todo, self._relink = self._relink, {}
        if not todo:
            return
        stored = self.store.get(list(todo), with_vectors=True)
        for pid, (row, pjson, chash) in todo.items():
            rec = stored.get(pid)
            if rec is None or not rec.image_vectors:
                self.errors.add(IngestError(row, "images", "stored vectors vanished; re-run", pid))
                continue
            # Same pixels: the stored group and hashes stay.
            item = StoredProduct(product_from_json(pjson), np.stack(rec.image_vectors),
                                 rec.text_vector, chash, rec.model_version, self.source,
                                 group_id=rec.group_id, phashes=rec.phashes)
            if self._pending_rows + len(rec.image_vectors) > self.batch_rows:
                self.flush_pending()
            self._pending.append((row, item))
            self._pending_rows += len(rec.image_vectors)
            self.summary.relinked += 1  # nothing embedded; counted as written when it lands

    def group_variants(self, settings: Settings) -> None:
        """After every write (and --delete-missing): group this run's products with their
        near-duplicates anywhere in the catalogue (lookalike/variants.py says how and why).
        A failure leaves the products written and ungrouped; the next run groups them."""
        from lookalike import variants

        if not getattr(settings, "variant_detection", False) or not self.embedded_ids:
            return
        start = time.monotonic()
        try:
            # Detection searches around every product just written: over rows still in the
            # write buffer each search costs milvus-lite several times the CPU (P8), and the
            # pass took 52.6 s instead of ~14 s on 2,000 demo products (bench/p3_ingest.py).
            self.store.flush()
            got = variants.detect(self.store, self.embedded_ids,
                                  variants.Thresholds.from_settings(settings))
        except StoreError as exc:
            log.warning("variant detection failed (products stay ungrouped): %s", exc)
            return
        finally:
            self.summary.variants_s = time.monotonic() - start
        self.summary.variants_relabelled, self.summary.variant_groups = (got["products"],
                                                                         got["groups"])

    def close(self) -> None:
        self._flush_relinks()
        self.flush_pending()
        for pid, part in self._partial.items():  # defensive: some image rows never came
            self.errors.add(IngestError(part.row, "images", "not every image was embedded", pid))
        self._partial.clear()


def flush_and_wait_for_index(store: ProductStore, summary: Summary, *, wait: bool,
                             timeout_s: float) -> None:
    """The job's last write step: flush, then (unless told not to) wait until the vector
    indexes cover every row before the job reports done. Without the wait, searches right
    after a bulk load scan the unindexed rows by brute force while the indexes build (P4:
    35.8 ms p50 against 3.25 ms at 200k rows, for ~30 s). The summary says which happened."""
    store.flush()
    if not wait:
        summary.index = "not waited for (--no-wait-index)"
        return
    start = time.monotonic()
    ready = store.wait_index_ready(timeout_s=timeout_s)
    summary.index_wait_s = time.monotonic() - start
    summary.index = "ready" if ready else f"still building after {timeout_s:.0f} s"
    if not ready:
        log.warning("the vector indexes are still building after %.0f s; searches scan the "
                    "unindexed rows until they finish", timeout_s)
