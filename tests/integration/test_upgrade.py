"""Model upgrade behind an alias: real milvus-lite, the packaged models, a tiny random CLIP.

The switch test runs searches and writes without pause while `Upgrade.run` re-embeds the
catalogue and moves the alias; every search must answer, and with one model only: the model
that embedded the query is the one whose vectors every hit has.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.api import create_api
from lookalike.catalog import demo, load_manifest
from lookalike.catalog.product import Product
from lookalike.config import Settings
from lookalike.embedding import ImageEmbedder, TextEmbedder
from lookalike.indexing import embed_products
from lookalike.live import LiveService, Models, in_process_models
from lookalike.notify import Told, tell_routers
from lookalike.search import SearchQuery
from lookalike.store import MilvusStore, aliases
from lookalike.store.base import StoreError
from lookalike.upgrade import Upgrade, UpgradeOptions
from tests.tiny_clip import build_tiny_clip

N_PRODUCTS = 24
ADMIN_KEY = "test-admin-key-0123"  # tests/conftest.py's settings
EVAL = {"eval_products": 40, "eval_image_queries": 10}


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> list[Product]:
    out = tmp_path_factory.mktemp("catalogue")
    products, errors = load_manifest(demo.build(out, N_PRODUCTS, seed=3))
    assert not errors
    return products


def primary(embedders: tuple[ImageEmbedder, TextEmbedder]) -> Models:
    ie, te = embedders

    async def embed_image(img: Image.Image) -> np.ndarray:
        return (await asyncio.to_thread(ie.embed, [img]))[0]

    async def embed_text(text: str) -> np.ndarray:
        return (await asyncio.to_thread(te.embed, [text]))[0]

    return Models(f"{ie.version}|{te.version}", embed_image, embed_text, ie.dim, te.dim)


def filled(settings: Settings, embedders: tuple[ImageEmbedder, TextEmbedder],
           products: list[Product]) -> MilvusStore:
    """A collection as a deployment made before aliases has it: plain, under the served name."""
    store = MilvusStore.from_settings(settings, image_dim=embedders[0].dim,
                                      text_dim=embedders[1].dim)
    store.ensure_collection()
    store.upsert(embed_products(products, image_embedder=embedders[0], text_embedder=embedders[1]))
    return store


def drop_all(settings: Settings) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=settings.resolved_milvus_uri, token=settings.resolved_milvus_token())
    for name in client.list_collections():
        if name.startswith(settings.collection):
            for alias in client.list_aliases(name).get("aliases", []):
                client.drop_alias(alias)
            client.drop_collection(name)
    client.close()


def test_a_collection_made_before_aliases_is_migrated_on_start(
        settings: Settings, embedders: tuple[ImageEmbedder, TextEmbedder],
        catalogue: list[Product]) -> None:
    store = filled(settings, embedders, catalogue[:8])
    try:
        version = primary(embedders).version
        live = LiveService(settings=settings, primary=primary(embedders),
                           load_models=in_process_models(settings))
        live.start()
        target = aliases.resolve(store.client, settings.collection)
        assert target is not None and target.aliased
        assert target.collection == aliases.collection_name(settings.collection, version, 1)
        assert target.model_version == version and target.pending is None
        live.start()  # a second replica starting: nothing left to migrate
        out = asyncio.run(live.search(SearchQuery(text=catalogue[0].title, top_k=5)))
        assert out.hits and {h.model_version for h in out.hits} == {version}
        assert asyncio.run(live.count()) == 8
        # The old name still works for every other reader (the ingest job, status): an alias.
        assert store.count() == 8
        live.close()
    finally:
        drop_all(settings)


@dataclass
class Load:
    """Searches and writes in a loop on their own event loop, until stopped."""

    live: LiveService
    photos: list[bytes]
    texts: list[str]
    stop: threading.Event = field(default_factory=threading.Event)
    searches: list[tuple[float, str]] = field(default_factory=list)  # (time, model)
    failures: list[str] = field(default_factory=list)
    mixed: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)

    async def _one(self, n: int) -> None:
        kind = n % 3
        image = (await self.live.load_image(self.photos[n % len(self.photos)])
                 if kind else None)
        query = SearchQuery(text=self.texts[n % len(self.texts)] if kind != 1 else None,
                            image=image, top_k=5)
        out = await self.live.search(query)
        models = {h.model_version for h in out.hits}
        if not out.hits or models != {out.model_version}:
            self.mixed.append(f"query embedded by {out.model_version}, hits of {models}")
        self.searches.append((time.time(), out.model_version))

    async def _write(self, n: int) -> None:
        pid = f"put-{n}"
        product = Product(product_id=pid, title=f"written during the upgrade {n}",
                          category="bag", color="red", price=10.0)
        await self.live.upsert(product, [self.photos[n % len(self.photos)]])
        self.written.append(pid)

    async def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                await (self._write(n) if n % 10 == 9 else self._one(n))
            except Exception as exc:  # noqa: BLE001 - every failure is counted, and fails the test
                self.failures.append(f"{type(exc).__name__}: {exc}")
            n += 1


def test_searches_never_fail_or_mix_models_while_the_alias_switches(
        settings: Settings, embedders: tuple[ImageEmbedder, TextEmbedder],
        catalogue: list[Product], clip_dir: Path) -> None:
    # No safety re-check: only the upgrade's message can move the routers.
    settings = settings.model_copy(update={"alias_recheck_s": 0})
    filled(settings, embedders, catalogue)
    try:
        live = LiveService(settings=settings, primary=primary(embedders),
                           load_models=in_process_models(settings))
        live.start()
        api = TestClient(create_api(live, settings))
        told: list[Told] = []
        load = Load(live, [Path(p.images[0]).read_bytes() for p in catalogue[:6]],
                    [p.title for p in catalogue[:6]])
        thread = threading.Thread(target=asyncio.run, args=(load.run(),))
        thread.start()
        try:
            # The tiny random CLIP is far worse: --force makes the switch happen anyway.
            result = Upgrade(settings, UpgradeOptions(spec={"clip_model": str(clip_dir)},
                                                      force=True, **EVAL), say=print,
                             notify=lambda: told.append(tell_routers(
                                 "http://testserver", ADMIN_KEY, client=api))).run()
            new_model = result["new_model"]
            deadline = time.monotonic() + 60
            while (sum(m == new_model for _, m in load.searches) < 20
                   and time.monotonic() < deadline and thread.is_alive()):
                time.sleep(0.2)
        finally:
            load.stop.set()
            thread.join(timeout=120)
        assert result["switched"] and result["worse"], result
        # The app was told through its admin endpoint: of the upgrade (it loads the new model
        # then), and of the switch (it answers with the new collection).
        assert [t.error for t in told] == ["", ""]
        assert [list(t.replicas.values()) for t in told] == [[result["live"]],
                                                             [result["candidate"]]]
        # The old collection stays for a rollback, until `lookalike upgrade --drop-old`.
        assert aliases.retired(live._admin.client, settings.collection) == [result["live"]]
        switch_at = result["switched_at"]
        near = [m for t, m in load.searches if abs(t - switch_at) <= 2.0]
        figures = {"searches": len(load.searches), "writes": len(load.written),
                   "failures": len(load.failures), "mixed": len(load.mixed),
                   "old_model_searches": sum(m == result["old_model"] for _, m in load.searches),
                   "new_model_searches": sum(m == new_model for _, m in load.searches),
                   "searches_within_2s_of_switch": len(near)}
        print("SWITCH FIGURES", json.dumps(figures))
        assert load.failures == [] and load.mixed == []
        assert figures["old_model_searches"] > 0 and figures["new_model_searches"] >= 20
        assert near, "no search ran around the switch"
        # Writes made during the re-embed reached the new collection, with the new model.
        new = MilvusStore.from_settings(settings.model_copy(update={"collection": result["candidate"]}),
                                        image_dim=24, text_dim=24)
        got = new.get(load.written)
        assert set(got) == set(load.written) and load.written
        assert {r.model_version for r in got.values()} == {new_model}
        assert new.count() == N_PRODUCTS + len(load.written)
        live.close()
    finally:
        drop_all(settings)


def test_a_worse_model_is_refused_and_the_same_model_passes(
        settings: Settings, embedders: tuple[ImageEmbedder, TextEmbedder],
        catalogue: list[Product], clip_dir: Path) -> None:
    settings = settings.model_copy(update={"alias_recheck_s": 0})
    store = filled(settings, embedders, catalogue[:8])
    try:
        live = LiveService(settings=settings, primary=primary(embedders),
                           load_models=in_process_models(settings))
        live.start()
        before = aliases.resolve(store.client, settings.collection)
        refused = Upgrade(settings, UpgradeOptions(spec={"clip_model": str(clip_dir)}, **EVAL),
                          say=print).run()
        print("REFUSED", json.dumps({k: refused[k] for k in ("eval_old", "eval_new", "worse")}))
        assert not refused["switched"] and refused["worse"]
        after = aliases.resolve(store.client, settings.collection)
        assert after == before  # same collection, no pending record left
        assert not store.client.has_collection(refused["candidate"])

        same = Upgrade(settings, UpgradeOptions(spec={"text_model": "packaged"}, drop_old=True,
                                                drain_s=0.5, **EVAL), say=print).run()
        print("SAME", json.dumps({k: same[k] for k in ("eval_old", "eval_new", "worse")}))
        assert same["switched"] and same["worse"] == [] and same["eval_old"] == same["eval_new"]
        now = aliases.resolve(store.client, settings.collection)
        assert now.collection == same["candidate"] != before.collection
        assert not store.client.has_collection(before.collection)
        assert aliases.retired(store.client, settings.collection) == []
        assert store.count() == 8  # the alias now reads the new collection
        # Nobody told this router: its read fails on the dropped collection, it resolves the
        # alias again and retries there.
        out = asyncio.run(live.search(SearchQuery(text=catalogue[0].title, top_k=3)))
        assert out.hits and out.model_version == same["new_model"]
        assert live.store.collection == same["candidate"]
        live.close()
    finally:
        drop_all(settings)


def test_a_writer_with_other_model_settings_is_refused(settings: Settings) -> None:
    store = MilvusStore.from_settings(settings, image_dim=8, text_dim=4)
    store.ensure_collection()
    try:
        spec = aliases.model_spec(settings)
        aliases.check_writer(store.client, settings.collection, spec)  # not adopted yet: as before
        aliases.adopt(store.client, settings.collection, version="v1", spec=spec)
        aliases.check_writer(store.client, settings.collection, spec)
        with pytest.raises(StoreError, match="lookalike upgrade"):
            aliases.check_writer(store.client, settings.collection,
                                 {**spec, "clip_model": "some/clip"})
    finally:
        drop_all(settings)


class CountingClient:
    """The real MilvusClient, counting the requests made through it, by method."""

    def __init__(self, client: object) -> None:
        self.client, self.calls = client, Counter()
        self._returned: Counter[str] = Counter()
        self._cond = threading.Condition()

    def __getattr__(self, name: str) -> object:
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        def call(*args: object, **kwargs: object) -> object:
            self.calls[name] += 1
            try:
                return attr(*args, **kwargs)
            finally:
                with self._cond:
                    self._returned[name] += 1
                    self._cond.notify_all()

        return call

    def returned(self, name: str, n: int, *, timeout_s: float) -> bool:
        """Until `n` calls of `name` have returned."""
        with self._cond:
            return self._cond.wait_for(lambda: self._returned[name] >= n, timeout_s)


def test_an_idle_router_neither_polls_the_alias_nor_scans_for_facets(
        settings: Settings, embedders: tuple[ImageEmbedder, TextEmbedder],
        catalogue: list[Product]) -> None:
    store = filled(settings, embedders, catalogue[:8])
    try:
        live = LiveService(settings=settings, primary=primary(embedders),
                           load_models=in_process_models(settings))
        live.start()
        query = SearchQuery(text=catalogue[0].title, top_k=3)
        # The first request reads the collection's model record and scans the facets, once.
        assert asyncio.run(live.search(query)).hits
        admin = live._admin.client = CountingClient(live._admin.client)
        service = live._services[live.store.collection]
        scans = service._facets.scans
        # Readiness probes and searches for longer than the old 1 s alias TTL and 5 s facets TTL.
        started, rounds = time.monotonic(), 0
        while time.monotonic() - started < 6.0:
            assert asyncio.run(live.count()) == 8
            assert asyncio.run(live.search(query)).hits
            rounds += 1
        assert rounds >= 2
        assert sum(admin.calls.values()) == 0, admin.calls
        assert service._facets.scans == scans
        # A write updates the facets without a scan, and still reads the pending record fresh.
        photo = Path(catalogue[0].images[0]).read_bytes()
        asyncio.run(live.upsert(Product("new", title="a new bag", category="bag", color="ochre",
                                        price=catalogue[0].price), [photo]))
        assert asyncio.run(live.facets())["color"].get("ochre") == 1
        assert service._facets.scans == scans
        assert set(admin.calls) <= {"has_collection", "describe_collection"}, admin.calls
    finally:
        live.close()
        store.close()
        drop_all(settings)


def test_a_router_that_missed_the_message_switches_at_its_re_check(
        settings: Settings, embedders: tuple[ImageEmbedder, TextEmbedder],
        catalogue: list[Product]) -> None:
    settings = settings.model_copy(update={"alias_recheck_s": 0.2})
    store = filled(settings, embedders, catalogue[:4])
    try:
        live = LiveService(settings=settings, primary=primary(embedders),
                           load_models=in_process_models(settings))
        live.start()
        first = live._resolved.collection
        # Another collection of the same model, with one more product, then the switch.
        other = aliases.next_collection_name(store.client, settings.collection,
                                             primary(embedders).version)
        copy = MilvusStore.from_settings(settings.model_copy(update={"collection": other}),
                                         image_dim=embedders[0].dim, text_dim=embedders[1].dim)
        copy.ensure_collection()
        copy.upsert(embed_products(catalogue[:5], image_embedder=embedders[0],
                                   text_embedder=embedders[1]))
        aliases.set_model(store.client, other, primary(embedders).version,
                          aliases.model_spec(settings))
        assert asyncio.run(live.count()) == 4
        admin = live._admin.client = CountingClient(live._admin.client)
        aliases.switch(store.client, settings.collection, other)
        # The first counted re-check may have started before the switch; the second sees it
        # and resolves; the third starts once the new resolution is in place.
        assert admin.returned("describe_alias", 3, timeout_s=30)
        assert live._resolved.collection == other != first
        # One metadata request per period, and a full resolve only when the alias moved.
        assert admin.calls["describe_collection"] == 1, admin.calls
        assert asyncio.run(live.count()) == 5
    finally:
        live.close()
        store.close()
        drop_all(settings)
