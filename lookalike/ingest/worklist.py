"""The manifest pre-pass: validate rows, look up what is stored, hand chunks to the pipeline.

The driver streams the manifest through the catalogue module (so row numbers, duplicate
detection and validation are exactly the loader's), 1,000 rows at a time, and attaches each
product's stored content hash. Only metadata moves here (~0.5 KB a product); images are read in
the pipeline's parallel prepare tasks. Chunks go to Ray's object store rather than a local
spool directory so workers on other nodes of a cluster can read them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from lookalike.catalog.manifest import RowError, iter_manifest
from lookalike.catalog.product import Product
from lookalike.ingest.stages import product_to_json
from lookalike.ingest.summary import ErrorSink, IngestError, Summary

if TYPE_CHECKING:
    from lookalike.store.base import ProductStore

CHUNK_ROWS = 1000
# ids -> {product_id: (content_hash, model_version, image refs)} of what the store holds
Lookup = Callable[[Sequence[str]], dict[str, tuple[str, str, tuple[str, ...]]]]


def store_lookup(store: ProductStore, source: str) -> Lookup:
    """What the store holds that a re-run may trust. A product whose stored rows do not match
    a completed write (an older version left beside it, or fewer rows than its images) or that
    another source wrote gets no hash, so it is re-embedded and rewritten whole: that is how a
    resumed job repairs what a crash or a racing write left."""
    def lookup(ids: Sequence[str]) -> dict[str, tuple[str, str, tuple[str, ...]]]:
        return {pid: (rec.content_hash, rec.model_version, rec.product.images)
                for pid, rec in store.get(ids).items() if rec.intact and rec.source == source}
    return lookup


def chunk_table(products: list[tuple[int, Product]],
                stored: dict[str, tuple[str, str, tuple[str, ...]]], model_version: str) -> pa.Table:
    """Rows for the pipeline. A stored hash only counts if the same models made the vectors:
    a model upgrade must re-embed everything even though the products did not change.
    `relink`: the image references moved (a catalogue folder moved); if the pixels are the
    same the stored vectors are kept and only the references are rewritten."""
    hashes, relink = [], []
    for _, p in products:
        chash, version, images = stored.get(p.product_id, ("", "", ()))
        hashes.append(chash if version == model_version else "")
        relink.append(bool(chash) and images != p.images)
    return pa.table({
        "row": pa.array([r for r, _ in products], pa.int64()),
        "product_id": pa.array([p.product_id for _, p in products], pa.string()),
        "product": pa.array([product_to_json(p) for _, p in products], pa.string()),
        "stored_hash": pa.array(hashes, pa.string()),
        "relink": pa.array(relink, pa.bool_()),
    })


def iter_chunks(manifest: Path, lookup: Lookup, model_version: str, summary: Summary,
                errors: ErrorSink, seen: set[str] | None = None,
                chunk_rows: int = CHUNK_ROWS, catalog_root: Path | None = None) -> Iterator[pa.Table]:
    """Validated chunks of the manifest; bad rows go to `errors`, valid ids into `seen`;
    image paths under `catalog_root` become `catalog:` references."""
    chunk: list[tuple[int, Product]] = []
    row = 0
    for item in iter_manifest(manifest, catalog_root):
        # iter_manifest yields exactly one item per data row, in order: the count is the row
        # number (Product does not carry it, RowError does).
        row += 1
        summary.read += 1
        if isinstance(item, RowError):
            errors.add(IngestError(item.row, item.field, item.reason))
            if seen is not None and item.product_id:
                seen.add(item.product_id)  # still listed: --delete-missing keeps it
            continue
        chunk.append((row, item))
        if seen is not None:
            seen.add(item.product_id)
        if len(chunk) >= chunk_rows:
            yield chunk_table(chunk, lookup([p.product_id for _, p in chunk]), model_version)
            chunk = []
    if chunk:
        yield chunk_table(chunk, lookup([p.product_id for _, p in chunk]), model_version)
