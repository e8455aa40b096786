"""Counting what the ingest job did, and reporting it (human table, one JSON log line, JSONL)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("lookalike.ingest")


@dataclass(frozen=True)
class IngestError:
    row: int  # 1-based manifest data row, as the catalogue module numbers them
    field: str
    reason: str
    product_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"row": self.row, "field": self.field, "reason": self.reason}
        if self.product_id:
            d["product_id"] = self.product_id
        return d

    def __str__(self) -> str:
        who = f" ({self.product_id})" if self.product_id else ""
        return f"row {self.row}{who}: {self.field}: {self.reason}"


@dataclass
class Summary:
    read: int = 0  # manifest rows read
    embedded: int = 0  # products embedded (new or changed)
    images_embedded: int = 0
    written: int = 0  # products upserted
    skipped: int = 0  # unchanged since the last run: neither embedded nor written
    relinked: int = 0  # same pixels, images moved: rewritten with the stored vectors
    failed: int = 0  # bad rows, unreadable images, rejected writes
    deleted: int = 0  # --delete-missing
    variants_relabelled: int = 0  # products whose variant group changed (lookalike/variants.py)
    variant_groups: int = 0  # groups of two or more this run's products belong to
    variants_s: float = 0.0  # the detection pass after the writes (one per run)
    # Parts of the warm-up before the pipeline starts: the model probe (versions and dims), the
    # collection (created on a first run), the pre-pass over the manifest; the rest is Ray Data
    # starting its actors and their models.
    probe_s: float = 0.0
    collection_s: float = 0.0
    worklist_s: float = 0.0
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    model_version: str = ""
    errors_shown: int = 0
    # When the first and the last embedded product reached the writer: the span between them is
    # the steady state, without Ray start-up, model loading and the final flush.
    first_vector_at: float | None = None
    last_vector_at: float | None = None
    # After the final flush: "ready" (the job waited until the vector indexes covered every
    # row), "not waited for (--no-wait-index)", or "still building after N s" (timed out).
    index: str = ""
    index_wait_s: float = 0.0

    def vector_arrived(self) -> None:
        now = time.monotonic()
        self.first_vector_at = self.first_vector_at or now
        self.last_vector_at = now

    def finish(self) -> None:
        self.seconds = time.monotonic() - self.started

    def as_dict(self) -> dict[str, Any]:
        secs = max(self.seconds, 1e-9)
        steady = (self.last_vector_at - self.first_vector_at) if self.first_vector_at else 0.0
        warmup = (self.first_vector_at - self.started) if self.first_vector_at else None
        return {
            "event": "ingest_summary", "read": self.read, "embedded": self.embedded,
            "images_embedded": self.images_embedded, "written": self.written,
            "skipped_unchanged": self.skipped, "relinked": self.relinked, "failed": self.failed,
            "deleted": self.deleted, "variants_relabelled": self.variants_relabelled,
            "variant_groups": self.variant_groups,
            "variants_s": round(self.variants_s, 3),
            "seconds": round(self.seconds, 3),
            "products_per_s": round(self.written / secs, 2),
            "images_per_s": round(self.images_embedded / secs, 2),
            "warmup_s": round(warmup, 3) if warmup is not None else None,
            "probe_s": round(self.probe_s, 3), "collection_s": round(self.collection_s, 3),
            "worklist_s": round(self.worklist_s, 3),
            "pipeline_start_s": (round(warmup - self.probe_s - self.collection_s - self.worklist_s, 3)
                                 if warmup is not None else None),
            "steady_seconds": round(steady, 3),
            "steady_images_per_s": round(self.images_embedded / steady, 2) if steady > 0 else None,
            "model_version": self.model_version,
            "index": self.index, "index_wait_s": round(self.index_wait_s, 3),
        }

    def table(self) -> str:
        d = self.as_dict()
        lines = ["ingest summary",
                 f"  read                 {d['read']:>9}",
                 f"  embedded             {d['embedded']:>9}  ({d['images_embedded']} images)",
                 f"  written              {d['written']:>9}",
                 f"  skipped (unchanged)  {d['skipped_unchanged']:>9}",
                 f"  relinked (moved)     {d['relinked']:>9}",
                 f"  failed               {d['failed']:>9}",
                 f"  deleted              {d['deleted']:>9}",
                 f"  time                 {d['seconds']:>9.1f} s",
                 (f"  throughput           {d['products_per_s']:>9.1f} products/s, "
                  f"{d['images_per_s']:.1f} images/s")]
        if d["warmup_s"] is not None:
            lines.append(f"  warm-up              {d['warmup_s']:>9.1f} s  (model probe {self.probe_s:.1f} s, "
                         f"collection {self.collection_s:.1f} s, manifest pass {self.worklist_s:.1f} s, pipeline start "
                         f"{d['pipeline_start_s']:.1f} s)")
        if self.variants_s:
            lines.append(f"  variants             {d['variants_relabelled']:>9}  relabelled, "
                         f"{d['variant_groups']} groups ({self.variants_s:.1f} s)")
        if self.index:
            wait = f" (waited {self.index_wait_s:.1f} s)" if self.index_wait_s else ""
            lines.append(f"  indexes              {self.index}{wait}")
        return "\n".join(lines)

    def emit(self) -> None:
        """One structured record (a JSON line under lookalike.logs.json_logger)."""
        log.info("ingest summary", extra={"fields": self.as_dict()})


class ErrorSink:
    """Counts failures, logs the first few in full, optionally writes all of them as JSONL."""

    def __init__(self, summary: Summary, errors_out: Path | None = None, show: int = 50) -> None:
        self.summary = summary
        self.show = show
        self._file: IO[str] | None = errors_out.open("w", encoding="utf-8") if errors_out else None

    def add(self, err: IngestError) -> None:
        self.summary.failed += 1
        if self._file:
            self._file.write(json.dumps(err.as_dict()) + "\n")
        if self.summary.errors_shown < self.show:
            log.warning("skipped %s", err, extra={"fields": {"event": "ingest_row_error", **err.as_dict()}})
            self.summary.errors_shown += 1
        elif self.summary.errors_shown == self.show:
            log.warning("more row errors not shown (see --errors-out)")
            self.summary.errors_shown += 1

    def close(self) -> None:
        if self._file:
            self._file.close()
