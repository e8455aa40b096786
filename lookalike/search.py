"""SearchService: the router's logic as a plain class (no Ray, no HTTP).

Embedding goes through two async callables, so the same class runs with Serve
DeploymentHandles (production) or with in-process embedders (unit tests, the baseline).
Store calls are blocking gRPC and run in worker threads to keep the event loop free. Decoding
and store calls have thread pools of their own (lookalike/workers.py), shared by the process:
slow decodes (two at a time) never take the threads that searches, writes and /readyz need.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lookalike.catalog.product import Product
from lookalike.facets import FacetsCache
from lookalike.images import SHOPPER_DECODED_PIXELS, UPLOAD_FORMATS, Box, decode_image
from lookalike.media import LocalMedia, MediaStore
from lookalike.query.understanding import QueryUnderstanding, combine
from lookalike.query.vector_cache import QueryVectors
from lookalike.rank.inferred import Inferred
from lookalike.rank.mmr import mmr
from lookalike.rank.pages import Page, page_of, window
from lookalike.rank.ranking import LOOKAHEAD, Ordering, order, pool_size
from lookalike.rank.relative import Relative, relative_filters
from lookalike.rank.retrieval import retrieve
from lookalike.recommend import recommend
from lookalike.store.base import Filters, Hit, ProductStore, Record, StoredProduct, StoreError
from lookalike.variants import explicit_group, group_key, phash_hex
from lookalike.workers import run_in, store_call

log = logging.getLogger(__name__)
# A shown hit that is not its product's newest version (an interrupted or racing write left
# older rows): the older rows are removed and the search runs again, at most this often.
STALE_RETRIES = 3

EmbedImage = Callable[[Image.Image], Awaitable[np.ndarray]]
EmbedText = Callable[[str], Awaitable[np.ndarray]]
class NotFoundError(LookupError):
    pass


class EmbedderUnavailable(RuntimeError):
    """An embedding model did not answer (its replica died, restarts or timed out)."""


class MediaUnavailable(RuntimeError):
    """Uploaded images could not be written to the media directory; the write was undone."""


class Overloaded(RuntimeError):
    """A deployment shed the request (its queue is full): back off and retry."""


@dataclass(frozen=True)
class SearchQuery:
    text: str | None = None
    image: Image.Image | None = None
    image_weight: float = 0.5
    top_k: int = 10
    filters: Filters = Filters()
    infer: str = "boost"  # "boost" | "filter" | "off": what the inferred attributes do
    exclude_ids: tuple[str, ...] = ()  # products the shopper said "not like this" to
    diversity: float = 0.0  # MMR: 0 = pure relevance, up to 1
    drop_inferred: tuple[str, ...] = ()  # inferred attributes the shopper removed (page chips)
    collapse_variants: bool = True  # one result per variant group (lookalike/variants.py)
    offset: int = 0  # the page starts at this result (lookalike/rank/pages.py)

    @property
    def kind(self) -> str:
        if self.text and self.image is not None:
            return "hybrid"
        return "image" if self.image is not None else "text"


@dataclass
class Timings:
    """Where a request's time went (ms); feeds the response, logs and metrics."""

    embed_ms: float = 0.0
    search_ms: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchOutcome:
    hits: list[Hit]
    timings: Timings
    inferred: Inferred = Inferred()
    relaxed: list[str] = field(default_factory=list)
    mode: str = "off"
    # per relaxed attribute, how many candidates keep it: [{"attribute": "price", "kept": 0}]
    relaxed_detail: list[dict[str, Any]] = field(default_factory=list)
    model_version: str = ""  # the model that embedded the query and made the collection searched
    # product id -> the other products of its variant group (by id)
    variants: dict[str, list[Product]] = field(default_factory=dict)
    full_matches: int | None = None  # candidates with every inferred attribute (ranking.Ranked)
    offset: int = 0
    next_offset: int | None = None  # where the next page starts; None: no more results


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def keep_explain(ordering: Ordering, found: Sequence[Hit]) -> Ordering:
    """`order` writes each hit's explanation anew; a recommendation keeps its strategy's
    (strategy, best_score) on top of it."""
    why = {h.product.product_id: h.explain for h in found}
    hits = [replace(h, explain={**h.explain, **{k: v for k, v in
                                                why.get(h.product.product_id, {}).items()
                                                if k != "vector"}})
            for h in ordering.hits]
    return replace(ordering, hits=hits)


class SearchService:
    def __init__(
        self,
        *,
        store: ProductStore,
        embed_image: EmbedImage,
        embed_text: EmbedText,
        media_dir: Path,
        media: MediaStore | None = None,
        model_version: str = "",
        facets_ttl_s: float = 60.0,
        shrink_image: Callable[[Image.Image], Image.Image] | None = None,
        min_short_side: int | None = None,
        cross_modal: bool = False,
        query_vector_cache_size: int = 0,
    ) -> None:
        """`shrink_image`: the embedders' resize step (ImagePreprocessor.shrink), applied here
        so replicas get a small image, never a shopper's original; `min_short_side`: the short
        side it needs, so large JPEGs decode reduced. `cross_modal`: text and image vectors share
        one space (CLIP), so a text query also searches the photos. `media`: where uploads go
        (default: files in `media_dir`; lookalike.media.open_media picks the configured backend).
        `query_vector_cache_size`: how many recent query texts keep their vector
        (lookalike/query/vector_cache.py; 0: every query is embedded). `facets_ttl_s`: how
        often the facets are rescanned in the background (lookalike/facets.py)."""
        self.store = store
        self.embed_image = embed_image
        self.embed_text = embed_text
        self.query_vectors = QueryVectors(embed_text, query_vector_cache_size)
        self.media_dir = Path(media_dir)
        self.media = media if media is not None else LocalMedia(self.media_dir)
        self.model_version = model_version
        self._facets = FacetsCache(lambda: self.store.facets(), refresh_s=facets_ttl_s)
        self._shrink = shrink_image
        self._min_short_side = min_short_side
        self.understanding = QueryUnderstanding()
        self.cross_modal = cross_modal

    def _prepare(self, data: bytes, crop: Box | None = None) -> Image.Image:
        img = decode_image(data, formats=UPLOAD_FORMATS, min_short_side=self._min_short_side,
                           crop=crop, max_decoded_pixels=SHOPPER_DECODED_PIXELS)
        return self._shrink(img) if self._shrink else img

    async def load_image(self, data: bytes, crop: Box | None = None) -> Image.Image:
        """Decode (bounded, images.py), crop (`crop`: fractions of the photo, checked in its
        pixels) and shrink untrusted bytes on the decode pool: a large image never blocks the
        event loop or the store's threads. InvalidImageError and its kinds go to the caller."""
        return await run_in("decode", self._prepare, data, crop)

    async def search(self, query: SearchQuery) -> SearchOutcome:
        if not query.text and query.image is None:
            raise ValueError("give a text, an image, or both")
        t = Timings()
        start = time.perf_counter()
        understand = query.infer != "off"
        facets = await self.facets() if understand else {}
        parsed = self.understanding.parse(query.text, facets) if understand and query.text else None
        # A text+image query embeds both at once, on different deployments.
        jobs: list[Awaitable[np.ndarray]] = []
        if query.image is not None:
            jobs.append(self.embed_image(query.image))
        if query.text:
            jobs.append(self.query_vectors(parsed.text if parsed is not None else query.text))
        vectors = await asyncio.gather(*jobs)
        image_vec = vectors[0] if query.image is not None else None
        text_vec = vectors[-1] if query.text else None
        if self.cross_modal and image_vec is None:
            # CLIP: the words also search the photos, so a product is found by its photo
            # alone (a blank or foreign-language title); the store fuses both as for a
            # text+image query.
            image_vec = text_vec
        t.embed_ms = _ms(start)
        start = time.perf_counter()
        colour = (self.understanding.photo_color(query.image, facets)
                  if understand and query.image is not None else None)

        # Text-only queries also match words exactly (BM25: brand, material, SKU).
        words = (parsed.text if parsed is not None else query.text) if query.image is None else None
        # The hits' fields come with the searches; the page read below checks their versions.
        checked = {"check_newest": False} if self._page_read is not None else {}

        def search(filters: Filters, top_k: int) -> list[Hit]:
            return self.store.search(image_vector=image_vec, text_vector=text_vec,
                                     image_weight=query.image_weight, filters=filters, top_k=top_k,
                                     **({"exclude_ids": query.exclude_ids} if query.exclude_ids else {}),
                                     **({"lexical_query": words} if words else {}), **checked)

        def infer(pool: list[Hit]) -> Inferred:
            got = combine(parsed, photo_color=colour,
                          neighbours=pool if query.image is not None else None)
            return got.without(query.drop_inferred)

        def ranked() -> Ordering:
            # One candidate set, one order: every page size up to the floor is a prefix of it.
            # A page is a slice of it, the pool sized for the page's end (rank/pages.py).
            # A plain page reads its end and the look-ahead; MMR re-ranks the whole window.
            reads = end + LOOKAHEAD if query.diversity == 0 else None
            found = retrieve(search, explicit=query.filters, infer=infer, mode=query.infer,
                             pool=pool_size(end), reads=reads,
                             collapse_variants=query.collapse_variants)
            if found.ordering is not None:  # ranked already, to decide the skip
                return found.ordering
            return order(found.hits, inferred=found.inferred, mode=query.infer,
                         explicit=query.filters, collapse_variants=query.collapse_variants)

        end = window(query.offset, query.top_k)
        for attempt in range(STALE_RETRIES + 1):
            ordering = await store_call(ranked)
            # MMR re-orders the whole window (offset + top_k), then the page is sliced from it.
            mixed = (await store_call(self._diversify, ordering.hits[:pool_size(end)], query,
                                      ordering.tiers)
                     if query.diversity > 0 else None)
            page = page_of(ordering, offset=query.offset, top_k=query.top_k, reordered=mixed)
            members, unsure = await store_call(self._check_page, page.ranked.hits)
            if not unsure or attempt == STALE_RETRIES:
                break
            await store_call(self.store.repair, sorted(unsure))
        # Still not the newest after the retries (writes racing on them): left out rather than
        # shown as a version that is gone.
        page.ranked.hits = [h for h in page.ranked.hits if h.product.product_id not in unsure]
        return await self._outcome(page, t, start, members=members)

    async def _outcome(self, page: Page, t: Timings, start: float,
                       members: dict[str, list[Product]] | None = None) -> SearchOutcome:
        """`members`: the page's variants when the caller has read them (search's page read)."""
        ranked = page.ranked
        if members is None:
            members = await store_call(self.variants_of, ranked.hits)
        t.search_ms = _ms(start)
        return SearchOutcome(ranked.hits, t, ranked.inferred, ranked.relaxed, ranked.mode,
                             model_version=self.model_version, variants=members,
                             relaxed_detail=ranked.relaxed_detail, offset=page.offset,
                             next_offset=page.next_offset, full_matches=ranked.full_matches)

    @property
    def _page_read(self) -> Callable[..., Any] | None:
        return getattr(self.store, "newest_with_groups", None)

    def _check_page(self, hits: Sequence[Hit]) -> tuple[dict[str, list[Product]], set[str]]:
        """One read for a page: each hit's other variants, and the hits that are not their
        product's newest stored version (or no longer stored), which must not be shown."""
        read = self._page_read
        if not hits or read is None:
            return self.variants_of(hits), set()
        versions, members = read([h.product.product_id for h in hits],
                                 [group_key(h.product.product_id, h.group_id) for h in hits])
        unsure = {h.product.product_id for h in hits
                  if versions.get(h.product.product_id) != h.write_version}
        return self._others(hits, members), unsure

    def variants_of(self, hits: Sequence[Hit]) -> dict[str, list[Product]]:
        """Each hit's other variants (one read for all the hits' groups)."""
        lookup = getattr(self.store, "group_members", None)
        if not hits or lookup is None:
            return {}
        return self._others(hits, lookup([group_key(h.product.product_id, h.group_id)
                                          for h in hits]))

    @staticmethod
    def _others(hits: Sequence[Hit],
                members: dict[str, list[Product]]) -> dict[str, list[Product]]:
        out: dict[str, list[Product]] = {}
        for h in hits:
            others = [p for p in members.get(group_key(h.product.product_id, h.group_id), [])
                      if p.product_id != h.product.product_id]
            if others:
                out[h.product.product_id] = others
        return out

    def _diversify(self, hits: list[Hit], query: SearchQuery,
                   tiers: dict[str, tuple[Any, ...]]) -> list[Hit]:
        records = self.store.get([h.product.product_id for h in hits], with_vectors=True)
        use_image = query.image is not None or not query.text
        vectors = {pid: (r.image_vectors[0] if use_image else r.text_vector)
                   for pid, r in records.items() if r.image_vectors and r.text_vector is not None}
        return mmr(hits, vectors, top_k=window(query.offset, query.top_k),
                   diversity=query.diversity, tiers=tiers)

    async def recommend(self, *, positive: Sequence[str], negative: Sequence[str],
                        image: Image.Image | None, strategy: str, top_k: int,
                        filters: Filters, offset: int = 0,
                        collapse_variants: bool = True) -> SearchOutcome:
        """More like these, not like those (lookalike/recommend.py): one candidate set sized
        for the page's end, ranked by `order` as a search is (variants collapsed)."""
        t = Timings()
        start = time.perf_counter()
        photo = await self.embed_image(image) if image is not None else None
        t.embed_ms = _ms(start)
        start = time.perf_counter()
        end = window(offset, top_k)

        def ranked() -> Ordering:
            found = recommend(self.store, positive=positive, negative=negative, photo=photo,
                              strategy=strategy, pool=pool_size(end), filters=filters)
            return keep_explain(order(found, inferred=Inferred(), mode="off", explicit=filters,
                                      collapse_variants=collapse_variants), found)

        ordering = await store_call(ranked)
        return await self._outcome(page_of(ordering, offset=offset, top_k=top_k), t, start)

    async def similar(self, product_id: str, *, top_k: int, filters: Filters,
                      relative: Relative = Relative(), offset: int = 0,
                      collapse_variants: bool = True) -> SearchOutcome:
        """More like this, from the stored vectors: no re-embedding. `relative` narrows by
        the product itself (cheaper, another colour, its category, a size). Neither the product
        nor its own variants are results: "similar to X" means other articles."""
        t = Timings()
        start = time.perf_counter()
        rec = (await store_call(self.store.get, [product_id], with_vectors=True)).get(product_id)
        if rec is None:
            raise NotFoundError(product_id)
        if relative:
            colours = (await self.facets()).get("color") or {} if relative.other_color else {}
            filters = relative_filters(rec.product, relative, filters, colors=list(colours))
        own = group_key(product_id, rec.group_id)
        end = window(offset, top_k)

        def ranked() -> Ordering:
            # Every stored photo queries at once; a candidate scores by its best-matching pair.
            # The own group is dropped here, not by exclude_ids: that would take a second read.
            found = self.store.search(
                image_vectors=rec.image_vectors, text_vector=rec.text_vector, image_weight=0.7,
                filters=filters, top_k=pool_size(end), exclude_ids=[product_id], **checked)
            others = [h for h in found if group_key(h.product.product_id, h.group_id) != own]
            return order(others, inferred=Inferred(), mode="off", explicit=filters,
                         collapse_variants=collapse_variants)

        # Fields from the search; one read checks the page's versions and finds its variants.
        checked = {"check_newest": False} if self._page_read is not None else {}
        page = page_of(await store_call(ranked), offset=offset, top_k=top_k)
        members, unsure = await store_call(self._check_page, page.ranked.hits)
        if unsure:  # rare (an interrupted or racing write): the store's own checked search
            checked, members = {}, None
            page = page_of(await store_call(ranked), offset=offset, top_k=top_k)
        return await self._outcome(page, t, start, members=members)

    async def get(self, product_id: str) -> Product:
        rec = (await store_call(self.store.get, [product_id])).get(product_id)
        if rec is None:
            raise NotFoundError(product_id)
        return rec.product

    async def upsert(self, product: Product, images: Sequence[bytes]) -> Product:
        """Embed the images and the text, write the product, then its image files; searchable
        at once. Files the replaced version had and this one lacks are removed."""
        decoded = [await self.load_image(data) for data in images]  # InvalidImageError -> 4xx
        refs = [self.media.ref_for(data) for data in images]
        product = replace(product, images=tuple(refs))
        vectors = await asyncio.gather(self.embed_text(product.text()),
                                       *(self.embed_image(img) for img in decoded))
        digests = tuple(hashlib.sha256(data).hexdigest() for data in images)
        pid = product.product_id
        old = (await store_call(self.store.get, [pid], with_vectors=True)).get(pid)
        # A product rewritten through the API stays in its variant group (an explicit
        # group_id in its metadata wins); the photos' hashes let the next ingest group it.
        group = explicit_group(product.attributes) or (old.group_id if old is not None else "")
        hashes = tuple(await run_in("decode", lambda: [phash_hex(img) for img in decoded]))
        item = StoredProduct(product, np.stack(vectors[1:]), vectors[0],
                             product.content_hash(digests), self.model_version,
                             group_id=group, phashes=hashes)
        await store_call(self.store.upsert, [item])
        self._facets.written(added=product, removed=old.product if old is not None else None)
        # Files only after the product is stored: a failed store write leaves no orphan files
        # (and a concurrent clean-up sees the new product before it could remove its files).
        try:
            for data in images:
                await store_call(self.media.save, data)
        except OSError as exc:
            await self._undo_upsert(pid, old, refs)
            raise MediaUnavailable(f"cannot save the uploaded images: {exc.strerror or exc}") \
                from exc
        if old is not None:
            await self._release_media([r for r in old.product.images if r not in refs])
        return product

    async def _undo_upsert(self, pid: str, old: Record | None, refs: Sequence[str]) -> None:
        """A media write failed after the store write: put the store back as it was (the old
        version, or no product), then drop the new files nobody lists. Nothing half-stored."""
        try:
            if old is None:
                await store_call(self.store.delete, [pid])
            else:
                await store_call(self.store.upsert, [StoredProduct(
                    old.product, np.stack(old.image_vectors), old.text_vector,
                    old.content_hash, old.model_version, old.source, group_id=old.group_id)])
        except (StoreError, ValueError) as exc:  # ValueError: an old version without vectors
            log.error("media write failed and undoing product %s failed too; it lists images "
                      "that were not saved: %s", pid, exc)
        finally:
            self._facets.invalidate()
        kept = set(old.product.images) if old is not None else set()
        await self._release_media([r for r in refs if r not in kept])

    async def delete(self, product_id: str) -> None:
        old = (await store_call(self.store.get, [product_id])).get(product_id)
        if await store_call(self.store.delete, [product_id]) == 0:
            raise NotFoundError(product_id)
        if old is None:
            self._facets.invalidate()  # gone between the read and the delete: rescan
        else:
            self._facets.written(added=None, removed=old.product)
        if old is not None:
            await self._release_media(old.product.images)

    async def _release_media(self, refs: Sequence[str]) -> None:
        """Remove uploaded files no stored product lists any more (the write has succeeded,
        so a failure here leaves an orphan file and a log line, not a failed request)."""
        try:
            await store_call(self.media.remove_unreferenced, refs,
                                    self.store.referenced_images)
        except (StoreError, OSError) as exc:
            log.warning("media clean-up failed, files may be left over: %s", exc)

    async def count(self) -> int:
        return await store_call(self.store.count)

    async def facets(self) -> dict[str, Any]:
        """The snapshot (lookalike/facets.py): current after this process's writes, and within
        facets_ttl_s after anyone else's. Only the first call waits for a scan."""
        return await store_call(self._facets.get)

    async def refresh(self) -> dict[str, Any]:
        """Rescan the facets now (an operator's refresh, after writes by others)."""
        await store_call(self._facets.refresh)
        return {"collection": getattr(self.store, "collection", ""),
                "model_version": self.model_version}

    def close(self) -> None:
        """Stop the background facets refresh (a collection no longer served)."""
        self._facets.close()
