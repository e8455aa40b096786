"""The store interface: what the router, the ingest job and the tests rely on."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from lookalike.catalog.product import Product

if TYPE_CHECKING:  # variants.py is heavier and needs nothing from here
    from lookalike.variants import Photo

API_SOURCE = "api"  # the source of products written through PUT /v1/products/...


def catalog_source(name: str) -> str:
    """The source of a catalogue's products (ingest_job.py --source NAME)."""
    return f"catalog:{name}"


class StoreError(RuntimeError):
    """The vector database failed or is unreachable."""


class StoreRequestError(StoreError):
    """The vector database refused the request itself (a bad expression or argument): the
    caller's input got past validation; a 4xx, never "store unavailable"."""


@dataclass(frozen=True)
class Filters:
    """Typed filter values; the store turns them into an expression, never pasting raw text."""

    categories: tuple[str, ...] = ()
    colors: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ()
    min_price: float | None = None
    max_price: float | None = None

    def __bool__(self) -> bool:
        return bool(self.categories or self.colors or self.sizes
                    or self.min_price is not None or self.max_price is not None)

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {}
        for name in ("categories", "colors", "sizes"):
            if getattr(self, name):
                d[name] = list(getattr(self, name))
        if self.min_price is not None:
            d["min_price"] = self.min_price
        if self.max_price is not None:
            d["max_price"] = self.max_price
        return d


@dataclass(frozen=True)
class StoredProduct:
    """A product with its vectors, ready to write: one image vector per image."""

    product: Product
    image_vectors: np.ndarray  # (n_images, image_dim)
    text_vector: np.ndarray  # (text_dim,)
    content_hash: str = ""
    model_version: str = ""
    source: str = API_SOURCE
    # 0: the write gets a new version. A copy into another collection (a model upgrade) keeps
    # the source's version, so a newer write that reached the copy first still wins.
    write_version: int = 0
    # The variant group (lookalike/variants.py); "" means the product's own id (no variants).
    group_id: str = ""
    phashes: tuple[str, ...] = ()  # one 16-hex-digit perceptual hash per image; () if unknown


@dataclass(frozen=True)
class Hit:
    product: Product
    score: float
    image_index: int = 0  # which of the product's images matched best
    write_version: int = 0
    # The score's parts, for explanations: {"image": cosine, "text": cosine}, or {"rrf": score}
    # for words fused with BM25 by rank in the store (the parts are not known there).
    scores: dict[str, float] = field(default_factory=dict, compare=False)
    explain: dict[str, Any] = field(default_factory=dict, compare=False)
    model_version: str = ""  # what made the stored vectors (never mixed within one search)
    group_id: str = ""  # its variant group; "" read as the product's own id


@dataclass
class Record:
    """A stored product as read back (for GET and 'similar')."""

    product: Product
    content_hash: str = ""
    model_version: str = ""
    image_vectors: list[np.ndarray] = field(default_factory=list)
    text_vector: np.ndarray | None = None
    source: str = ""
    write_version: int = 0
    image_rows: int = 0  # rows stored for the newest version (one per image when intact)
    versions: int = 1  # distinct stored versions; > 1 after an interrupted or racing write
    group_id: str = ""
    phashes: tuple[str, ...] = ()

    @property
    def intact(self) -> bool:
        """One version, one row per listed image: what a completed write leaves."""
        return self.versions == 1 and self.image_rows == len(self.product.images)


class ProductStore(Protocol):
    """What the store's callers use: SearchService and recommend (lookalike/search.py,
    recommend.py), the ingest writer, worklist and record (lookalike/ingest/), variant
    detection (lookalike/variants.py) and the catalogue info route. MilvusStore implements it.

    SearchService reaches `newest_with_groups`, `group_members` and `collection` through
    getattr with a fallback: the unit tests' in-memory stores (tests/unit/test_api.py) lack
    them. Code that owns a MilvusStore (eval, status, upgrade, the ingest pipeline) also uses
    what only Milvus has (`client`, `drop`, `close`); those stay off this interface.
    """

    collection: str  # the collection's name (reported by an operator's refresh)

    @property
    def variants(self) -> bool:
        """Whether the collection has the variant-group fields."""
        ...

    def ensure_collection(self) -> None: ...
    def upsert(self, items: Sequence[StoredProduct]) -> int: ...
    def search(
        self,
        *,
        image_vector: np.ndarray | None = None,
        text_vector: np.ndarray | None = None,
        image_weight: float = 0.5,
        filters: Filters = Filters(),
        top_k: int = 10,
        exclude_ids: Sequence[str] = (),
        image_vectors: Sequence[np.ndarray] = (),
        lexical_query: str | None = None,
        check_newest: bool = True,
    ) -> list[Hit]: ...
    def get(self, product_ids: Sequence[str], *, with_vectors: bool = False) -> dict[str, Record]: ...
    def delete(self, product_ids: Sequence[str]) -> int: ...
    def count(self) -> int: ...
    def repair(self, product_ids: Sequence[str]) -> None: ...
    def iter_product_ids(self, *, source: str | None = None) -> Iterator[str]: ...
    def facets(self) -> dict[str, dict[str, int]]: ...
    def flush(self) -> None: ...
    def wait_index_ready(self, timeout_s: float = 600.0, poll_s: float = 0.5) -> bool: ...
    def referenced_images(self, refs: Sequence[str]) -> set[str]: ...
    # Collection properties: the last ingest's record (lookalike/ingest/record.py).
    def get_property(self, key: str) -> str | None: ...
    def set_property(self, key: str, value: str) -> None: ...
    # Variant groups (lookalike/variants.py) and a result page's one read (lookalike/search.py).
    def variant_photos(self, product_ids: Sequence[str]) -> dict[str, Photo]: ...
    def photo_neighbours(self, field: str, vectors: Sequence[np.ndarray | list[float]],
                         limit: int) -> list[list[str]]: ...
    def group_members(self, group_ids: Sequence[str]) -> dict[str, list[Product]]: ...
    def newest_with_groups(self, product_ids: Sequence[str], group_ids: Sequence[str]
                           ) -> tuple[dict[str, int], dict[str, list[Product]]]: ...
    def set_groups(self, labels: dict[str, str]) -> int: ...
