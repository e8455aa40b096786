"""Builders shared by the store-level integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from lookalike.config import Settings
from lookalike.store import MilvusStore

StoreFactory = Callable[..., MilvusStore]


@pytest.fixture
def store_factory(settings: Settings) -> Iterator[StoreFactory]:
    """make(image_dim, text_dim, **settings overrides) -> a MilvusStore on the test's own
    collection of the session's real milvus-lite server, dropped after the test."""
    made: list[MilvusStore] = []

    def make(image_dim: int, text_dim: int, **overrides: object) -> MilvusStore:
        store = MilvusStore.from_settings(settings.model_copy(update=overrides),
                                          image_dim=image_dim, text_dim=text_dim)
        store.ensure_collection()
        made.append(store)
        return store

    yield make
    for store in made:
        store.drop()
        store.close()
