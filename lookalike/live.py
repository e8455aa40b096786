"""LiveService: the SearchService interface over whichever collection the alias names now.

The alias is resolved once, at start, to one collection, and each request uses that
collection's own model for its queries: a search never pairs one model's query vector with
another model's stored vectors, also while `lookalike upgrade` switches the alias. Every
sub-request of one search reads the same resolved collection by its real name.

Reads cost no alias look-up. The resolution changes (`refresh`) when
- `lookalike upgrade` has switched the alias and tells the app (POST /v1/admin/refresh,
  lookalike/api/admin_routes.py; it reaches the replicas the proxy routes it to);
- a read fails: the collection may have been dropped after a switch this replica missed, so it
  resolves again and, if the alias moved, retries once on the new collection;
- the safety re-check, every `alias_recheck_s` (60 s) in a background thread: one
  `describe_alias` (metadata, no collection read) catches a missed message without a failure.
A restarted replica resolves at start.

Models: the router's own embedders (the Serve deployments, `primary`) serve the collection
they made. Another collection's model (after a switch, before the app is redeployed with the
new settings; or the target of an upgrade in progress) is loaded in-process from the settings
recorded on that collection (`load_models`), once, and in the background as soon as an upgrade
is seen (the upgrade's notice, or a write), so the switch does not wait for it.

Writes during an upgrade (a `lookalike.pending` record on the live collection, read fresh
before every write: a write that missed it would be missing from the new collection): the
product goes to the live collection as always, then to the target with the target's model.
If the target write fails while the upgrade is still pending, the request fails (503) and a
retry writes both again; if the upgrade ended meanwhile (switched or refused), the failure is
moot and ignored.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from PIL import Image

from lookalike.catalog.product import Product
from lookalike.images import Box
from lookalike.media import MediaStore, open_media
from lookalike.search import EmbedImage, EmbedText, SearchOutcome, SearchQuery, SearchService
from lookalike.store import MilvusStore, aliases
from lookalike.store.base import Filters, StoredProduct, StoreError
from lookalike.workers import store_call

if TYPE_CHECKING:
    from lookalike.config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
ALIAS_RECHECK_S = 60.0  # the safety re-check's period (Settings.alias_recheck_s)


@dataclass(frozen=True)
class Models:
    """A model pair as the search path calls it."""

    version: str
    embed_image: EmbedImage
    embed_text: EmbedText
    image_dim: int
    text_dim: int
    cross_modal: bool = False
    shrink_image: Callable[[Image.Image], Image.Image] | None = None
    min_short_side: int | None = None


LoadModels = Callable[[dict[str, str]], Awaitable[Models]]


def in_process_models(settings: Settings) -> LoadModels:
    """Models loaded in this process from a collection's recorded settings (factory.py)."""
    from lookalike.embedding.factory import image_embedder, text_embedder

    async def load(spec: dict[str, str]) -> Models:
        model_settings = settings.model_copy(update=spec)
        ie = await asyncio.to_thread(image_embedder, model_settings)
        te = await asyncio.to_thread(text_embedder, model_settings)

        async def embed_image(img: Image.Image) -> np.ndarray:
            return (await asyncio.to_thread(ie.embed, [img]))[0]

        async def embed_text(text: str) -> np.ndarray:
            return (await asyncio.to_thread(te.embed, [text]))[0]

        return Models(f"{ie.version}|{te.version}", embed_image, embed_text, ie.dim, te.dim,
                      cross_modal=getattr(te, "cross_modal", False))

    return load


class LiveService:
    def __init__(self, *, settings: Settings, primary: Models, load_models: LoadModels) -> None:
        self.settings = settings
        self.alias = settings.collection
        self.primary = primary
        self._load_models = load_models
        self._recheck_s = float(getattr(settings, "alias_recheck_s", ALIAS_RECHECK_S))
        self._stop = threading.Event()
        self._rechecks: threading.Thread | None = None
        self._admin = MilvusStore.from_settings(settings, image_dim=primary.image_dim,
                                                text_dim=primary.text_dim)
        self._media: MediaStore | None = None  # opened in start(): an S3 backend connects
        self._models: dict[str, Models] = {primary.version: primary}
        self._loading: dict[str, asyncio.Task[Models]] = {}
        self._services: dict[str, SearchService] = {}
        self._resolved: aliases.Target | None = None
        self._last: SearchService | None = None

    # -- start-up and resolution -----------------------------------------------------------------

    def start(self) -> None:
        """Create the collection if missing and make the served name an alias (blocking).

        An existing collection is checked against its own recorded model, not this app's:
        after an upgrade it may hold another model's vectors, which the router then serves
        with that model (loaded in-process) until the app gets the new settings."""
        self._media = open_media(self.settings)
        client = self._admin.client
        if aliases.resolve(client, self.alias) is None:
            self._admin.ensure_collection()
        target = aliases.adopt(client, self.alias, version=self.primary.version,
                               spec=aliases.model_spec(self.settings))
        if target.model_version == self.primary.version:
            self._admin.ensure_collection()  # dims checked, loaded
        else:
            log.warning("collection %s holds vectors of %s; this app's embedders run %s: its "
                        "queries are embedded in-process with the collection's model until the "
                        "app is redeployed with that model's settings", target.collection,
                        target.model_version, self.primary.version)
        self._resolve_now()
        if self._recheck_s > 0 and self._rechecks is None:
            self._rechecks = threading.Thread(target=self._recheck, name="alias-recheck",
                                              daemon=True)
            self._rechecks.start()

    def close(self) -> None:
        """Stop the background re-checks (alias and facets)."""
        self._stop.set()
        for service in list(self._services.values()):
            service.close()

    def _resolve_now(self) -> aliases.Target:
        target = aliases.resolve(self._admin.client, self.alias)
        if target is None:
            raise StoreError(f"collection {self.alias} is missing")
        before, self._resolved = self._resolved, target
        if before is not None and before.collection != target.collection:
            log.info("%s now serves %s (was %s)", self.alias, target.collection,
                     before.collection)
            # Collections no longer served stop their facets refresh (a request still on one
            # finishes with its snapshot); a switch back builds a fresh service.
            for name in [n for n in self._services if n not in (target.collection,
                                                                  target.pending)]:
                if (gone := self._services.pop(name, None)) is not None:
                    gone.close()
        return target

    def _recheck(self) -> None:
        """The safety net for a missed refresh message: one metadata request per period."""
        while not self._stop.wait(self._recheck_s):
            try:
                now = aliases.current_collection(self._admin.client, self.alias)
                if self._resolved is None or now != self._resolved.collection:
                    self._resolve_now()
            except Exception as exc:  # noqa: BLE001 - the next period tries again
                log.warning("alias re-check of %s failed: %s", self.alias, exc)

    async def _target(self, fresh: bool) -> aliases.Target:
        cached = self._resolved
        if not fresh and cached is not None:
            return cached
        try:
            return await store_call(self._resolve_now)
        except Exception as exc:  # whatever failed, the error names the alias
            raise StoreError(f"cannot resolve {self.alias}: {exc}") from exc

    async def refresh(self) -> dict[str, Any]:
        """Resolve the alias again and rescan the facets now (POST /v1/admin/refresh, after
        `lookalike upgrade` or an ingest)."""
        service, pending = await self._live(fresh=True)
        return {**await service.refresh(), "pending": pending}

    async def _models_for(self, collection: str) -> Models:
        target = await store_call(aliases.resolve, self._admin.client, collection)
        if target is None or target.model is None:
            return self.primary  # a collection made before model records: the app's own model
        version = target.model["version"]
        if version in self._models:
            return self._models[version]
        if not target.model.get("spec"):
            raise StoreError(f"collection {collection} was made by {version}, which this app "
                             "cannot load: deploy the app with that model's settings")
        if version not in self._loading:
            log.info("loading %s in-process for collection %s", version, collection)
            self._loading[version] = asyncio.ensure_future(self._load_models(target.model["spec"]))
        try:
            models = await asyncio.shield(self._loading[version])
        except BaseException:
            self._loading.pop(version, None)
            raise
        if models.version != version:
            raise StoreError(f"the settings recorded on {collection} load {models.version}, "
                             f"not {version}: its vectors cannot be queried")
        self._models[version] = models
        return models

    async def _service(self, collection: str) -> SearchService:
        if (known := self._services.get(collection)) is not None:
            return known
        m = await self._models_for(collection)
        store = MilvusStore.from_settings(
            self.settings.model_copy(update={"collection": collection}),
            image_dim=m.image_dim, text_dim=m.text_dim, auto_flush=True)  # the API's writes
        # setdefault's answer, not a second look-up: the re-check thread may retire it meanwhile.
        return self._services.setdefault(collection, SearchService(
            store=store, embed_image=m.embed_image, embed_text=m.embed_text,
            media_dir=self.settings.media_dir, media=self._media, model_version=m.version,
            facets_ttl_s=self.settings.facets_ttl_s, shrink_image=m.shrink_image,
            min_short_side=m.min_short_side, cross_modal=m.cross_modal,
            query_vector_cache_size=self.settings.query_vector_cache_size))

    async def _live(self, *, fresh: bool = False) -> tuple[SearchService, str | None]:
        target = await self._target(fresh)
        if target.pending and target.pending not in self._services:
            # Load the upgrade's model now, so its writes and the switch never wait for it.
            asyncio.ensure_future(self._preload(target.pending))
        service = await self._service(target.collection)
        self._last = service
        return service, target.pending

    async def _preload(self, collection: str) -> None:
        try:
            await self._service(collection)
        except Exception as exc:  # noqa: BLE001 - the write that needs it will say why
            log.warning("cannot load the model of pending collection %s: %s", collection, exc)

    # -- the SearchService interface the API uses ------------------------------------------------

    @property
    def store(self) -> Any:
        """The live collection's store as of the last request (the alias before any)."""
        return self._last.store if self._last else self._admin

    @property
    def media(self) -> MediaStore:
        """Where uploads live (one backend for every collection: photos do not depend on the
        model); the image route resolves `media:` references through it."""
        if self._media is None:
            raise RuntimeError("LiveService.start() has not run")
        return self._media

    @property
    def model_version(self) -> str:
        return self._last.model_version if self._last else self.primary.version

    async def _read(self, call: Callable[[SearchService], Awaitable[T]]) -> T:
        """A read on the live collection. A store failure may mean that the collection was
        dropped after a switch this replica missed: resolve again, and retry once if the
        alias has moved."""
        service = (await self._live())[0]
        try:
            return await call(service)
        except StoreError:
            now = (await self._live(fresh=True))[0]
            if now is service:
                raise
            log.info("a read failed on %s; the alias has moved to %s: retried there",
                     service.store.collection, now.store.collection)
            return await call(now)

    async def load_image(self, data: bytes, crop: Box | None = None) -> Image.Image:
        return await (await self._live())[0].load_image(data, crop)

    async def search(self, query: SearchQuery) -> SearchOutcome:
        return await self._read(lambda s: s.search(query))

    async def recommend(self, **kwargs: Any) -> SearchOutcome:
        return await self._read(lambda s: s.recommend(**kwargs))

    async def similar(self, product_id: str, *, top_k: int, filters: Filters,
                      **kwargs: Any) -> SearchOutcome:
        return await self._read(lambda s: s.similar(product_id, top_k=top_k, filters=filters,
                                                    **kwargs))

    async def get(self, product_id: str) -> Product:
        return await self._read(lambda s: s.get(product_id))

    async def count(self) -> int:
        return await self._read(lambda s: s.count())

    async def facets(self) -> dict[str, Any]:
        return await self._read(lambda s: s.facets())

    async def upsert(self, product: Product, images: Sequence[bytes]) -> Product:
        live, pending = await self._live(fresh=True)
        stored = await live.upsert(product, images)
        if pending:
            await self._mirror(pending, lambda target: self._write_copy(target, stored, images))
        return stored

    async def delete(self, product_id: str) -> None:
        live, pending = await self._live(fresh=True)
        await live.delete(product_id)
        if pending:
            await self._mirror(pending, lambda target: store_call(
                target.store.delete, [product_id]))

    async def _write_copy(self, target: SearchService, product: Product,
                          images: Sequence[bytes]) -> None:
        """The live write's product, embedded with the target's model (same refs, same hash)."""
        decoded = [await target.load_image(data) for data in images]
        vectors = await asyncio.gather(target.embed_text(product.text()),
                                       *(target.embed_image(img) for img in decoded))
        digests = tuple(hashlib.sha256(data).hexdigest() for data in images)  # as the live write
        item = StoredProduct(replace(product), np.stack(vectors[1:]), vectors[0],
                             product.content_hash(digests), target.model_version)
        await store_call(target.store.upsert, [item])

    async def _mirror(self, pending: str, write: Callable[[SearchService], Awaitable[Any]]) -> None:
        try:
            await write(await self._service(pending))
        except Exception as exc:
            now = await self._target(fresh=True)
            if now.pending == pending:
                raise StoreError(f"the write reached {self.alias} but not the upgrade's "
                                 f"collection {pending} ({exc}): retry it") from exc
            log.info("upgrade to %s ended during a write; its copy is not needed", pending)
