"""Ranking with inferred attributes: soft boosts, or filters that relax, on the store's results.

Milvus ranks by vector (and BM25) score; whether a product has the colour, category, size or
price a query implies is known only after the query is understood, and a boost needs the
product's fields, so it is applied here, on the candidates the store returns (a pool larger
than the page). `infer="boost"`: each inferred attribute a product has adds its weight to the
score; the products that have them all come from a filtered search (wherever the vector ranks
them), and only when they are fewer than the page do partial matches fill it. `infer="filter"`: the inferred attributes join the
explicit filters; when that leaves fewer than top_k products, inferred attributes are dropped
one by one (RELAX_ORDER) and the response says which. Explicit filters are never relaxed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from lookalike.rank.inferred import RELAX_ORDER, Inferred
from lookalike.store.base import Filters, Hit

# Added to the vector score (a cosine, or the fused 0..1 scale): large against the spread of
# scores among good candidates, so the products with what was asked come first, yet soft, so a
# close visual or textual match still beats a weak one that merely has the right colour.
# Price and size typed as numbers are near-hard constraints; they weigh as much as a category.
WEIGHTS = {"category": 0.4, "color": 0.3, "size": 0.4, "price": 0.4}
# A photo's colour and its neighbours' category are guesses, the words are the shopper's
# intent: guesses count half.
PHOTO_FACTOR = 0.5
CHEAP_WEIGHT = 0.4  # times a decay that halves every "median minus cheapest" of price
POOL_MIN = 50
VOTE_POOL = 10  # neighbours a photo's category vote needs
POOL_PER_RESULT = 5
POOL_MAX = 16384  # Milvus' cap on a search's limit

Search = Callable[[Filters, int], list[Hit]]


@dataclass
class Ranked:
    hits: list[Hit]
    inferred: Inferred
    relaxed: list[str] = field(default_factory=list)
    mode: str = "boost"


def pool_size(top_k: int) -> int:
    return min(POOL_MAX, max(POOL_MIN, top_k * POOL_PER_RESULT))


def _value(inferred: Inferred, attribute: str) -> str:
    if attribute == "price":
        lo, hi = inferred.min_price, inferred.max_price
        return (f"{lo:g}–{hi:g}" if lo is not None and hi is not None
                else f"≤ {hi:g}" if hi is not None else f"≥ {lo:g}")
    return ", ".join({"category": inferred.categories, "color": inferred.colors,
                      "size": inferred.sizes}[attribute])


def _cheap_decay(hits: Sequence[Hit]) -> Callable[[float], float]:
    prices = sorted(h.product.price for h in hits if h.product.price is not None)
    if not prices:
        return lambda _: 0.0
    lo, median = prices[0], prices[len(prices) // 2]
    half = max(median - lo, 1.0)
    return lambda price: math.pow(0.5, max(price - lo, 0.0) / half)


def explain(hit: Hit, *, base: float, boosts: list[dict[str, Any]],
            inferred: Inferred) -> dict[str, Any]:
    return {"base_score": round(base, 6),
            "vector": {k: round(v, 6) for k, v in hit.scores.items() if k in ("image", "text")},
            "lexical": round(hit.scores["lexical"], 6) if "lexical" in hit.scores else None,
            "boosts": boosts, "matched_image": hit.image_index,
            "inferred": {k: v for k, v in inferred.as_dict().items() if k != "why"}}


def boost(hits: Sequence[Hit], inferred: Inferred) -> list[Hit]:
    """Every hit re-scored with the boosts it earns (and explained), best first."""
    decay = _cheap_decay(hits) if inferred.cheap else None
    out = []
    for h in hits:
        boosts = [{"attribute": a, "value": _value(inferred, a),
                   "weight": WEIGHTS[a] * (PHOTO_FACTOR if a in inferred.from_photo else 1.0),
                   "why": inferred.why.get(a, "")} for a in inferred.matching(h.product)]
        if decay is not None and h.product.price is not None:
            w = round(CHEAP_WEIGHT * decay(h.product.price), 6)
            boosts.append({"attribute": "price", "value": "cheap", "weight": w,
                           "why": inferred.why.get("cheap", "")})
        score = h.score + sum(b["weight"] for b in boosts)
        out.append(replace(h, score=score, explain=explain(h, base=h.score, boosts=boosts,
                                                           inferred=inferred)))
    return sorted(out, key=lambda h: -h.score)


def _merge(*lists: Sequence[Hit]) -> list[Hit]:
    seen: dict[str, Hit] = {}
    for hits in lists:
        for h in hits:
            seen.setdefault(h.product.product_id, h)
    return list(seen.values())


def rank(search: Search, *, explicit: Filters, infer: Callable[[list[Hit] | None], Inferred],
         mode: str, top_k: int, needs_pool: bool = False, enough: int | None = None) -> Ranked:
    """The page for one query. `infer(pool)` gives the query's inferences, from the words and,
    for a photo, from the pool's nearest neighbours (None when no pool was fetched).
    `enough`: how many matches stop the relaxation of inferred filters (default top_k; a caller
    that reads more than it shows, as variant collapsing does, relaxes only for the page)."""
    if mode == "off":
        hits = search(explicit, top_k)
        empty = Inferred()
        return Ranked([replace(h, explain=explain(h, base=h.score, boosts=[], inferred=empty))
                       for h in hits], empty, mode=mode)
    # A photo's category is a vote of its unfiltered nearest neighbours: fetch them first.
    pool = search(explicit, max(top_k, VOTE_POOL)) if needs_pool else None
    inferred = infer(pool).under(explicit)
    if mode == "boost":
        if not inferred.attributes():
            hits = pool if pool is not None else search(
                explicit, pool_size(top_k) if inferred.cheap else top_k)
            return Ranked(boost(hits, inferred)[:top_k], inferred, mode=mode)
        # Products with every inferred attribute first: a filtered search finds them wherever
        # the vector ranks them. When they fill the page, one search was enough (their boosts
        # exceed any partial match's but for a vector score ahead by more than an attribute's
        # weight); otherwise the best partial matches fill the rest, by score plus boosts.
        # "cheap" re-orders by price: it needs more than a page of candidates to pick from.
        full = search(inferred.filters(explicit), pool_size(top_k) if inferred.cheap else top_k)
        if len(full) < top_k:
            full = _merge(full, pool if pool is not None else search(explicit, pool_size(top_k)))
        return Ranked(boost(full, inferred)[:top_k], inferred, mode=mode)
    relaxed: list[str] = []
    current = inferred
    while True:
        hits = search(current.filters(explicit), top_k)
        present = current.attributes()
        if len(hits) >= (enough or top_k) or not present:
            break
        drop = next(a for a in RELAX_ORDER if a in present)
        relaxed.append(drop)
        current = current.without([drop])
    # Ordered with the full inference: after a relaxation, the products that still have the
    # relaxed attribute come first.
    return Ranked(boost(hits, inferred)[:top_k], inferred, relaxed, mode)
