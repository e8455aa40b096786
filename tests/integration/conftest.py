"""Builders shared by the integration tests (the packaged models, a store of the session's
milvus-lite), and the opt-in external Milvus target.

The store's suite (the test_store*.py modules) runs against the session's milvus-lite and, when
LOOKALIKE_TEST_MILVUS_URI names one (with LOOKALIKE_TEST_MILVUS_TOKEN, e.g. `root:Milvus`, for
a server with authorization on), against that real Milvus too: each of its tests that takes
`settings` is parametrised [lite] and [external]. Unset, the [external] cases skip with the
reason below; tests/prerequisites.py lets exactly these skips through under CI=true, because
no CI machine here can run a Milvus cluster (docs/milvus.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from lookalike.config import Settings
from lookalike.embedding import ImageEmbedder, TextEmbedder
from lookalike.store import MilvusStore

StoreFactory = Callable[..., MilvusStore]
EXTERNAL_URI = "LOOKALIKE_TEST_MILVUS_URI"
EXTERNAL_TOKEN = "LOOKALIKE_TEST_MILVUS_TOKEN"
EXTERNAL_MARK = "external_milvus"
EXTERNAL_SKIP = (f"opt-in external Milvus target: {EXTERNAL_URI} is not set (set it, and "
                 f"{EXTERNAL_TOKEN} if the server has authorization on, to run the store suite "
                 "against a real Milvus)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if module.startswith("test_store") and "settings" in metafunc.fixturenames:
        metafunc.parametrize("milvus_target", [
            "lite", pytest.param("external", marks=getattr(pytest.mark, EXTERNAL_MARK))],
            indirect=True)


@pytest.fixture
def milvus_target(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "lite")


@pytest.fixture
def settings(settings: Settings, milvus_target: str) -> Settings:
    """The session's milvus-lite settings, or the same pointed at the external Milvus."""
    if milvus_target != "external":
        return settings
    uri = os.environ.get(EXTERNAL_URI, "").strip()
    if not uri:
        pytest.skip(EXTERNAL_SKIP)
    # Our own collection names on a shared server: this process's id keeps parallel runs apart.
    name = f"{settings.collection[:180]}_{os.getpid()}"
    return Settings(**{**settings.model_dump(exclude={"admin_key", "milvus_uri", "milvus_token",
                                                      "collection"}),
                       "admin_key": settings.admin_key, "milvus_uri": uri,
                       "milvus_token": os.environ.get(EXTERNAL_TOKEN, ""), "collection": name})


@pytest.fixture
def store_factory(settings: Settings) -> Iterator[StoreFactory]:
    """make(image_dim, text_dim, **settings overrides) -> a MilvusStore on the test's own
    collection of the session's real milvus-lite server (or the external Milvus), dropped
    after the test."""
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


@pytest.fixture(scope="module")
def embedders() -> tuple[ImageEmbedder, TextEmbedder]:
    """The packaged image and text models, loaded once per module."""
    return ImageEmbedder(), TextEmbedder()


@pytest.fixture
def store(settings: Settings,
          embedders: tuple[ImageEmbedder, TextEmbedder]) -> Iterator[MilvusStore]:
    """An empty collection of this test's own, sized for the packaged models."""
    ie, te = embedders
    s = MilvusStore.from_settings(settings, image_dim=ie.dim, text_dim=te.dim)
    s.ensure_collection()
    yield s
    s.drop()
    s.close()
