"""Inferred: the attributes a query implies (from its words and photo), and how they meet the
shopper's explicit filters.

Explicit filters always win: an attribute the shopper filtered by hand is never inferred (the
inference is kept, as overridden, so a client can say so). What is left either boosts the
candidates or joins the filters (`infer="filter"`), and in that case is the first thing
relaxed when too few products match.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from lookalike.catalog.product import Product
from lookalike.store.base import Filters

MODES = ("boost", "filter", "off")
ATTRIBUTES = ("category", "color", "size", "price")
DROPPABLE = (*ATTRIBUTES, "cheap")
# Relaxed first: the least defining attribute of what the shopper wants.
RELAX_ORDER = ("size", "price", "color", "category")


@dataclass(frozen=True)
class Inferred:
    categories: tuple[str, ...] = ()
    colors: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ()
    min_price: float | None = None
    max_price: float | None = None
    cheap: bool = False
    why: dict[str, str] = field(default_factory=dict)  # attribute -> where it was inferred from
    overridden: tuple[str, ...] = ()  # inferred but dropped: an explicit filter names it
    from_photo: frozenset[str] = frozenset()  # attributes guessed from the photo, not the words

    def attributes(self) -> list[str]:
        present = {"category": bool(self.categories), "color": bool(self.colors),
                   "size": bool(self.sizes),
                   "price": self.min_price is not None or self.max_price is not None}
        return [a for a in ATTRIBUTES if present[a]]

    def __bool__(self) -> bool:
        return bool(self.attributes()) or self.cheap

    def without(self, attributes: tuple[str, ...] | list[str]) -> Inferred:
        drop = set(attributes)
        if not drop:
            return self
        return replace(self, cheap=self.cheap and "cheap" not in drop, categories=() if "category" in drop else self.categories,
                       colors=() if "color" in drop else self.colors,
                       sizes=() if "size" in drop else self.sizes,
                       min_price=None if "price" in drop else self.min_price,
                       max_price=None if "price" in drop else self.max_price)

    def under(self, explicit: Filters) -> Inferred:
        """These inferences less the attributes the shopper's explicit filters already set."""
        named = [a for a, on in (("category", explicit.categories), ("color", explicit.colors),
                                 ("size", explicit.sizes),
                                 ("price", explicit.min_price is not None
                                  or explicit.max_price is not None)) if on]
        overridden = tuple(a for a in named if a in self.attributes())
        out = self.without(named)
        return replace(out, overridden=overridden, cheap=self.cheap and "price" not in named)

    def filters(self, explicit: Filters) -> Filters:
        """The explicit filters and, for the attributes they leave open, these inferences."""
        return Filters(categories=explicit.categories or self.categories,
                       colors=explicit.colors or self.colors, sizes=explicit.sizes or self.sizes,
                       min_price=explicit.min_price if explicit.min_price is not None else self.min_price,
                       max_price=explicit.max_price if explicit.max_price is not None else self.max_price)

    def matching(self, p: Product) -> list[str]:
        """The inferred attributes product `p` has."""
        out = []
        if self.categories and p.category in self.categories:
            out.append("category")
        if self.colors and p.color in self.colors:
            out.append("color")
        if self.sizes and p.size in self.sizes:
            out.append("size")
        if ((self.min_price is not None or self.max_price is not None) and p.price is not None
                and (self.min_price is None or p.price >= self.min_price)
                and (self.max_price is None or p.price <= self.max_price)):
            out.append("price")
        return out

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for name in ("categories", "colors", "sizes"):
            if getattr(self, name):
                d[name] = list(getattr(self, name))
        price = {k: v for k, v in (("gte", self.min_price), ("lte", self.max_price)) if v is not None}
        if price:
            d["price"] = price
        if self.cheap:
            d["cheap"] = True
        if self.why:
            d["why"] = dict(self.why)
        if self.overridden:
            d["overridden_by_filters"] = list(self.overridden)
        return d
