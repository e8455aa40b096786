"""Shards and in-memory replicas (LOOKALIKE_MILVUS_SHARDS / _REPLICAS) reach the server that
creates and loads the collection. [external]: a real Milvus (LOOKALIKE_TEST_MILVUS_URI; the
replica count, LOOKALIKE_TEST_MILVUS_REPLICAS, defaults to 1 since each replica needs its own
query node). [lite]: milvus-lite reached by URI keeps one shard, and the store says so."""

from __future__ import annotations

import logging
import os

import pytest
from pydantic import SecretStr

from lookalike.config import Settings
from tests.integration.test_store import IMG, TXT, make_items


def test_the_collection_gets_the_shards_and_replicas_asked_for(
        store_factory, settings: Settings, milvus_target: str,
        caplog: pytest.LogCaptureFixture) -> None:
    shards = 2
    replicas = int(os.environ.get("LOOKALIKE_TEST_MILVUS_REPLICAS", "1"))
    with caplog.at_level(logging.WARNING, logger="lookalike.store.milvus"):
        # By URI, not "embedded" (which refuses these settings outright, test_config.py).
        store = store_factory(IMG, TXT, milvus_uri=settings.resolved_milvus_uri,
                              milvus_token=SecretStr(settings.resolved_milvus_token()),
                              milvus_shards=shards, milvus_replicas=replicas)
    store.upsert(make_items(6))
    assert store.count() == 6
    desc = store.client.describe_collection(store.collection)
    if milvus_target == "external":
        assert desc["num_shards"] == shards
        groups = store.client.describe_replica(store.collection)
        assert len(groups) == replicas
        assert not caplog.records
    else:
        assert desc["num_shards"] == 1
        assert "not LOOKALIKE_MILVUS_SHARDS=2" in caplog.text
