"""The pieces of GET /v1/info that need no store: model names and the ingest record."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from lookalike.info import model_names
from lookalike.ingest.record import ingest_record


def test_model_names_are_the_part_before_the_weights() -> None:
    version = ("tf_efficientnet_lite0:packaged@0123abcd|"
               "all-MiniLM-L6-v2:packaged:max128@4567ef01")
    assert model_names(version) == {"image": "tf_efficientnet_lite0", "text": "all-MiniLM-L6-v2"}


def test_model_names_of_an_unknown_version_are_empty() -> None:
    assert model_names("") == {"image": "", "text": ""}


def test_ingest_record_keeps_counts_and_a_utc_time() -> None:
    summary = {"event": "ingest_summary", "read": 5, "written": 4, "skipped_unchanged": 0,
               "relinked": 0, "failed": 1, "deleted": 0, "seconds": 2.5,
               "products_per_s": 1.6, "model_version": "m|t"}
    cet = timezone(timedelta(hours=1))
    record = ingest_record(summary, manifest="manifest.jsonl", source="catalog:default",
                           finished_at=datetime(2026, 12, 1, 21, 30, 5, tzinfo=cet))
    assert record == {"finished_at": "2026-12-01T20:30:05Z", "manifest": "manifest.jsonl",
                      "source": "catalog:default", "read": 5, "written": 4,
                      "skipped_unchanged": 0, "relinked": 0, "failed": 1, "deleted": 0,
                      "seconds": 2.5, "model_version": "m|t"}
