"""What an inferred attribute does to one candidate: a bounded boost, or a limit it keeps or breaks.

Milvus ranks by vector (and BM25) score; whether a product has the colour or category a query
implies is known only after the query is understood, so it is scored here, on the candidates
the store returns (lookalike/rank/ranking.py orders them).

Boosts (category, colour, "cheap"): each inferred attribute a product has adds its weight to
its score; a photo's guesses count half. A boost never removes a product, and all of a
product's boosts together add at most BOOST_BOUND, so a boost never lifts a product above one
whose score is higher by more than BOOST_BOUND.

Limits (a price or size understood from the words, LIMITS): not boosts but constraints the
shopper typed: the products that keep them come first, and those that break them are ordered
by how far they break them (`breaks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lookalike.rank.inferred import Inferred
from lookalike.store.base import Hit

# Added to the vector score (a cosine, or the fused 0..1 scale): large against the spread of
# scores among good candidates, so the products with what was asked come first, yet soft, so a
# close visual or textual match still beats a weak one that merely has the right colour. (They
# were 0.4 and 0.3 when price and size boosted too and the sum, 1.9, exceeded the whole 0..1
# scale: a "boost" could lift anything over anything. Price and size are limits now.)
WEIGHTS = {"category": 0.3, "color": 0.2}
# A photo's colour and its neighbours' category are guesses, the words are the shopper's
# intent: guesses count less. Two thirds, not half: at half (0.15 + 0.1) the guesses were
# smaller than the spread of cosines among a category's near neighbours, and a product of the
# photo's colour in another category overtook one of its category (demo image P@10 0.7675; 0.769
# at two thirds, the photo's category weighing 0.2 as before issue 29; docs/search-quality.md).
PHOTO_FACTOR = 2 / 3
# "cheap" in the words: times a decay that halves every "median minus cheapest" of price, both
# among the candidates with what the words ask for (ranking._cheap_reference). 0.4, not 0.2:
# the spread of fused text scores among a category's best is ~0.3, and at 0.2 "budget
# sneakers" still led with a €104 pair (demo P@10 with a price in the words: 0.971 at 0.2,
# 0.982 at 0.4, as before issue 29).
CHEAP_WEIGHT = 0.4
# The most all of one product's boosts can add (words' weights at full, "cheap" at its top):
# 0.9; 0.5 from a category and a colour alone, a query without "cheap".
BOOST_BOUND = sum(WEIGHTS.values()) + CHEAP_WEIGHT
# Understood from the words, these are limits, never boosts (lookalike/rank/ranking.py).
LIMITS = ("size", "price")


def cheap_decay(hits: Sequence[Hit]) -> Callable[[float], float]:
    """1 for the cheapest candidate, halving every "median minus cheapest" of price above it:
    a function of the whole candidate set, so it is the same for every page size."""
    prices = sorted(h.product.price for h in hits if h.product.price is not None)
    if not prices:
        return lambda _: 0.0
    lo, median = prices[0], prices[len(prices) // 2]
    half = max(median - lo, 1.0)
    return lambda price: math.pow(0.5, max(price - lo, 0.0) / half)


def boosts(hit: Hit, inferred: Inferred,
           decay: Callable[[float], float] | None) -> list[dict[str, Any]]:
    """The boosts `hit` earns: each <= its weight, together <= BOOST_BOUND."""
    values = {"category": inferred.categories, "color": inferred.colors}
    out = [{"attribute": a, "value": ", ".join(values[a]),
            "weight": WEIGHTS[a] * (PHOTO_FACTOR if a in inferred.from_photo else 1.0),
            "why": inferred.why.get(a, "")}
           for a in inferred.matching(hit.product) if a in WEIGHTS]
    if decay is not None and hit.product.price is not None:
        out.append({"attribute": "price", "value": "cheap",
                    "weight": round(CHEAP_WEIGHT * decay(hit.product.price), 6),
                    "why": inferred.why.get("cheap", "")})
    return out


@dataclass(frozen=True)
class Breaks:
    """How a product breaks the limits it is held to: which, and by how much in price."""

    attributes: tuple[str, ...] = ()
    price_distance: float = 0.0  # euros outside the range (inf: no price at all)

    def __bool__(self) -> bool:
        return bool(self.attributes)


def breaks(hit: Hit, inferred: Inferred, limits: Sequence[str]) -> Breaks:
    p = hit.product
    broken: list[str] = []
    distance = 0.0
    if "size" in limits and inferred.sizes and p.size not in inferred.sizes:
        broken.append("size")
    lo, hi = inferred.min_price, inferred.max_price
    if "price" in limits and (lo is not None or hi is not None):
        if p.price is None:
            broken.append("price")
            distance = math.inf
        else:
            distance = max((lo - p.price) if lo is not None else 0.0,
                           (p.price - hi) if hi is not None else 0.0, 0.0)
            if distance > 0:
                broken.append("price")
    return Breaks(tuple(broken), distance)


def explain(hit: Hit, *, base: float, boosts: list[dict[str, Any]], inferred: Inferred,
            broken: Breaks = Breaks(), exact: bool = False) -> dict[str, Any]:
    out = {"base_score": round(base, 6),
           "vector": {k: round(v, 6) for k, v in hit.scores.items() if k in ("image", "text")},
           "boosts": boosts, "matched_image": hit.image_index,
           "inferred": {k: v for k, v in inferred.as_dict().items() if k != "why"}}
    if "rrf" in hit.scores:
        # Text and BM25 fused in the store by rank (store/milvus.py): the parts are not known.
        out["fusion"] = "rrf"
    if broken:
        out["breaks"] = list(broken.attributes)
    if exact:
        out["exact_photo_match"] = True
    return out
