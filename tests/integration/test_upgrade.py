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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.catalog import demo, load_manifest
from lookalike.catalog.product import Product
from lookalike.config import Settings
from lookalike.embedding import ImageEmbedder, TextEmbedder
from lookalike.indexing import embed_products
from lookalike.live import LiveService, Models, in_process_models
from lookalike.search import SearchQuery
from lookalike.store import MilvusStore, aliases
from lookalike.store.base import StoreError
from lookalike.upgrade import Upgrade, UpgradeOptions
from tests.tiny_clip import build_tiny_clip

N_PRODUCTS = 24
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
    filled(settings, embedders, catalogue)
    try:
        live = LiveService(settings=settings, primary=primary(embedders),
                           load_models=in_process_models(settings))
        live.start()
        load = Load(live, [Path(p.images[0]).read_bytes() for p in catalogue[:6]],
                    [p.title for p in catalogue[:6]])
        thread = threading.Thread(target=asyncio.run, args=(load.run(),))
        thread.start()
        try:
            # The tiny random CLIP is far worse: --force makes the switch happen anyway.
            result = Upgrade(settings, UpgradeOptions(spec={"clip_model": str(clip_dir)},
                                                      force=True, **EVAL), say=print).run()
            new_model = result["new_model"]
            deadline = time.monotonic() + 60
            while (sum(m == new_model for _, m in load.searches) < 20
                   and time.monotonic() < deadline and thread.is_alive()):
                time.sleep(0.2)
        finally:
            load.stop.set()
            thread.join(timeout=120)
        assert result["switched"] and result["worse"], result
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
    finally:
        drop_all(settings)


def test_a_worse_model_is_refused_and_the_same_model_passes(
        settings: Settings, embedders: tuple[ImageEmbedder, TextEmbedder],
        catalogue: list[Product], clip_dir: Path) -> None:
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
        out = asyncio.run(live.search(SearchQuery(text=catalogue[0].title, top_k=3)))
        assert out.hits and out.model_version == same["new_model"]
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
