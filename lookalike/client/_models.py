"""Typed results of the client, mirroring the API's response models (lookalike/api/models.py).

Every model keeps the fields it does not know in `extra`, so a newer server that adds a field
never breaks an older client; a field the server leaves out takes its default.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

T = TypeVar("T")


def _build(cls: type[T], data: Mapping[str, Any], **nested: Any) -> T:
    """`cls` from a JSON object: known fields as attributes, the rest in `extra`. `nested`
    holds the already-converted values of nested models."""
    names = {f.name for f in fields(cls)} - {"extra"}  # type: ignore[arg-type]
    known = {k: v for k, v in data.items() if k in names}
    extra = {k: v for k, v in data.items() if k not in names}
    return cls(**{**known, **nested}, extra=extra)  # type: ignore[call-arg]


@dataclass(frozen=True)
class Variant:
    """Another product of a hit's variant group (same article, another colour or size)."""

    product_id: str
    title: str = ""
    color: str = ""
    size: str = ""
    price: float | None = None
    image_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Variant:
        return _build(cls, data)


@dataclass(frozen=True)
class Hit:
    """One search result: the product's fields and its score. `image_url` is the API path of
    the best-matching photo (relative to the client's base_url)."""

    product_id: str
    score: float
    title: str = ""
    category: str = ""
    color: str = ""
    size: str = ""
    price: float | None = None
    image_url: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    explain: dict[str, Any] | None = None
    variants: int = 0
    other_variants: list[Variant] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Hit:
        others = [Variant.from_json(v) for v in data.get("other_variants") or ()]
        return _build(cls, data, other_variants=others)


@dataclass(frozen=True)
class SearchResult:
    """A search, similar or recommend answer. Iterate it for the hits; `inferred` says what the
    query was understood to ask for, `relaxed` which inferred attributes were dropped,
    `full_matches` how many products have all of them (None: nothing inferred),
    `next_offset` where the next page starts (None: no more)."""

    results: list[Hit]
    took_ms: float = 0.0
    inferred: dict[str, Any] | None = None
    relaxed: list[str] = field(default_factory=list)
    full_matches: int | None = None
    offset: int = 0
    next_offset: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SearchResult:
        return _build(cls, data, results=[Hit.from_json(h) for h in data.get("results") or ()])

    @property
    def product_ids(self) -> list[str]:
        return [h.product_id for h in self.results]

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)


@dataclass(frozen=True)
class Product:
    """A catalogue product: what `get` and `put` answer, and what `put` accepts (its
    `image_urls` and `extra` are not sent back)."""

    product_id: str
    title: str = ""
    description: str = ""
    category: str = ""
    color: str = ""
    size: str = ""
    price: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    image_urls: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Product:
        return _build(cls, data)

    def metadata(self) -> dict[str, Any]:
        """The PUT `metadata` object: the core fields, and the free attributes at the top level
        (where the API reads them); empty fields are left out rather than sent as ""."""
        core = {"product_id": self.product_id, "title": self.title,
                "description": self.description, "category": self.category,
                "color": self.color, "size": self.size, "price": self.price}
        return {**self.attributes, **{k: v for k, v in core.items() if v not in (None, "")}}


@dataclass(frozen=True)
class PriceSpan:
    min: float | None = None
    max: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Facets:
    """Values and counts of category, color and size, and the price range."""

    category: dict[str, int] = field(default_factory=dict)
    color: dict[str, int] = field(default_factory=dict)
    size: dict[str, int] = field(default_factory=dict)
    price: PriceSpan = field(default_factory=PriceSpan)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Facets:
        return _build(cls, data, price=_build(PriceSpan, data.get("price") or {}))


@dataclass(frozen=True)
class ModelInfo:
    image: str = ""
    text: str = ""
    version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Info:
    """What the catalogue holds: products searchable, the model in use, the last ingest."""

    products: int
    collection: str = ""
    model: ModelInfo = field(default_factory=ModelInfo)
    last_ingest: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Info:
        return _build(cls, data, model=_build(ModelInfo, data.get("model") or {}))


@dataclass(frozen=True)
class Filters:
    """Search filters. Each list means "any of these" (a single string is a list of one); the
    fields combine with AND. A plain dict with these keys works as well."""

    category: str | Sequence[str] = ()
    color: str | Sequence[str] = ()
    size: str | Sequence[str] = ()
    min_price: float | None = None
    max_price: float | None = None
