"""The last ingest's record, kept as a property of the collection it wrote.

Every router replica, on any node, already reaches the store, so a record there is readable
wherever the API runs; a file under the data dir is not (it lives on the node that ran the job,
and a job submitted to a cluster runs on any node). The record also follows the collection: a
new LOOKALIKE_COLLECTION starts without one, a dropped collection takes it along.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from lookalike.store.base import StoreError

if TYPE_CHECKING:
    from lookalike.store.base import ProductStore

log = logging.getLogger("lookalike.ingest")
LAST_INGEST_KEY = "lookalike.last_ingest"
# What the record keeps of the summary: counts and the model, not the throughput details.
SUMMARY_FIELDS = ("read", "written", "skipped_unchanged", "relinked", "failed", "deleted",
                  "seconds", "model_version")


def ingest_record(summary: dict[str, Any], *, manifest: str, source: str,
                  finished_at: datetime | None = None) -> dict[str, Any]:
    finished = (finished_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return {"finished_at": finished.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "manifest": manifest, "source": source,
            **{k: summary[k] for k in SUMMARY_FIELDS if k in summary}}


def save_last_ingest(store: ProductStore, record: dict[str, Any]) -> None:
    """Best effort: the products are written already; a store refusing the property (an old
    Milvus) must not fail the job, only leave "last ingest" unknown."""
    try:
        store.set_property(LAST_INGEST_KEY, json.dumps(record, separators=(",", ":")))
    except StoreError as exc:
        log.warning("could not record the ingest in the collection: %s", exc)


def load_last_ingest(store: ProductStore) -> dict[str, Any] | None:
    raw = store.get_property(LAST_INGEST_KEY)
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None
