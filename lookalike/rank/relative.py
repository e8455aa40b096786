"""Relative constraints for "more like this": cheaper, another colour, the same category, a size.

They are filters relative to the product at hand, combined with the explicit ones (both must
hold: a constraint narrows, it never widens what the shopper filtered).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lookalike.catalog.product import Product
from lookalike.store.base import Filters

CENT = 0.01


@dataclass(frozen=True)
class Relative:
    cheaper: bool = False
    other_color: bool = False
    same_category: bool = False
    size: str | None = None

    def __bool__(self) -> bool:
        return self.cheaper or self.other_color or self.same_category or bool(self.size)


def _narrow(explicit: tuple[str, ...], allowed: tuple[str, ...]) -> tuple[str, ...]:
    if not explicit:
        return allowed
    keep = tuple(v for v in explicit if v in allowed)
    return keep or ("\x00none",)  # nothing satisfies both: a value no product has


def relative_filters(product: Product, rel: Relative, explicit: Filters, *,
                     colors: Iterable[str]) -> Filters:
    """`colors`: the catalogue's colours (facets), for "any colour but this one"."""
    cats, cols, sizes = explicit.categories, explicit.colors, explicit.sizes
    hi = explicit.max_price
    if rel.same_category and product.category:
        cats = _narrow(cats, (product.category,))
    if rel.other_color and product.color:
        cols = _narrow(cols, tuple(c for c in colors if c != product.color) or ("\x00none",))
    if rel.size:
        sizes = _narrow(sizes, (rel.size,))
    if rel.cheaper and product.price is not None:
        below = round(product.price - CENT, 2)
        hi = below if hi is None else min(hi, below)
    return Filters(categories=cats, colors=cols, sizes=sizes, min_price=explicit.min_price,
                   max_price=hi)
