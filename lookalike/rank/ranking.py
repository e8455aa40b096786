"""One candidate set, one order: a query's results as a pure function of what the store returned.

The store returns a candidate pool whose size does not depend on top_k below POOL_FLOOR
(lookalike/rank/retrieval.py fetches it); `order` ranks every candidate, variant groups are
collapsed over that whole list, and a page is its first top_k. So the page for top_k=k is the
first k of the page for any larger top_k up to the floor. No store, no Ray: property-tested in
tests/unit/test_ranking_properties.py.

The order, most significant first:
1. Exact photo matches first: a candidate whose image cosine is >= EXACT_SCORE (its stored
   photo is the query photo) passed every explicit filter (the store applied them, and
   `order` drops what breaks them) and the shopper showed us this very product; nothing
   inferred, a guess from the photo or a word, outranks that. Explicit, not by weights: a bound
   on boosts that can never lift a partial match over a ~1.0 cosine would have to be smaller
   than the gap between 0.999 and a near-duplicate's cosine (0.95-0.99 on the demo), too small
   to be a boost at all.
2. infer="boost" (default): understood limits (a price or size in the words,
   attributes.LIMITS): the products that keep every limit, then those that break one, fewest
   broken and nearest price first. infer="filter": the relax level, the number of inferred
   attributes that must be dropped (in RELAX_ORDER) for the product to pass them: the old
   "filter, relax until the page fills" on one candidate set, where only the page decides what
   it reports as relaxed. infer="off": nothing inferred.
3. The score plus bounded boosts (attributes.BOOST_BOUND = 0.9: an inferred category or colour
   never removes a product and never lifts it above one in the same tier whose score is higher
   by more than that).
4. The candidates' own order (a stable sort): ties break alike for every top_k.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from lookalike.catalog.product import Product
from lookalike.rank.attributes import LIMITS, Breaks, boosts, breaks, cheap_decay, explain
from lookalike.rank.inferred import RELAX_ORDER, Inferred
from lookalike.store.base import Filters, Hit
from lookalike.variants import collapse

# Candidates read for any page ending at or before result POOL_FLOOR: every such page is a prefix
# of the same list (top_k 10 of top_k 100; page 2 continues page 1). Deeper pages read as many
# candidates as results. Why not a multiple of the page (5x): then the pool, and with it the
# order, changes from top_k 21 on, and a fixed 500 costs 3-4x the store time of 100 (a search's
# time on milvus-lite grows with its limit); 100 is also the default LOOKALIKE_MAX_TOP_K.
POOL_FLOOR = 100
POOL_PER_RESULT = 1  # beyond the floor: candidates per result
LOOKAHEAD = 1  # one candidate more than any page shows: a response knows if a next page exists
POOL_MAX = 16384  # Milvus' cap on a search's limit
# An image cosine this close to 1 is the query photo itself (re-encoding moves it by ~1e-4).
EXACT_SCORE = 0.999


def pool_size(top_k: int) -> int:
    return min(POOL_MAX, max(POOL_FLOOR, top_k * POOL_PER_RESULT) + LOOKAHEAD)


def passes(product: Product, f: Filters) -> bool:
    """The store's filter semantics (store/milvus.py filter_expression), in Python."""
    price = product.price
    if f.min_price is not None or f.max_price is not None:
        if price is None or price < 0:
            return False
        if not ((f.min_price is None or price >= f.min_price)
                and (f.max_price is None or price <= f.max_price)):
            return False
    return ((not f.categories or product.category in f.categories)
            and (not f.colors or product.color in f.colors)
            and (not f.sizes or product.size in f.sizes))


def is_exact(hit: Hit) -> bool:
    return hit.scores.get("image", -1.0) >= EXACT_SCORE


def merge_candidates(pool: Sequence[Hit], full: Sequence[Hit], *, pool_limit: int) -> list[Hit]:
    """The unfiltered pool and the full matches (searched under the inferred filters too), once
    each. A full match the pool lacks was not among the pool's best, so when the pool was cut at
    its limit it scores at most the pool's lowest: capped there, because a rank-fused score
    (text + BM25) from the filtered search is a rank among full matches only and would
    otherwise outrank the whole pool."""
    seen = {h.product.product_id for h in pool}
    floor = min((h.score for h in pool), default=math.inf) if len(pool) >= pool_limit else math.inf
    extra = [h if h.score <= floor else replace(h, score=floor)
             for h in full if h.product.product_id not in seen]
    return [*pool, *extra]


@dataclass
class Ranked:
    hits: list[Hit]
    inferred: Inferred
    relaxed: list[str] = field(default_factory=list)
    # [{"attribute": "price", "kept": 3}]: per relaxed attribute, how many candidates keep it
    relaxed_detail: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "boost"
    # candidates with every inferred attribute (None: nothing inferred): fewer than the page
    # shows, and the page says "No black bags under €50 — the closest:" (or "Only 2 …")
    full_matches: int | None = None


@dataclass(frozen=True)
class Ordering:
    """Every candidate (or variant group), best first, and what each needed relaxed."""

    hits: list[Hit]
    inferred: Inferred
    mode: str
    lacks: dict[str, tuple[str, ...]]  # product id -> attributes relaxed to admit it
    exact: frozenset[str]
    kept: dict[str, int]  # attribute -> candidates that keep it
    full: int | None  # candidates with every inferred attribute; None: nothing inferred
    # product id -> its tier, what outranks the score: (not exact, relax level, limits broken,
    # price distance); MMR re-orders within a tier only (rank/mmr.py)
    tiers: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def page(self, top_k: int, hits: Sequence[Hit] | None = None) -> Ranked:
        """The first top_k (or `hits`, a re-ordering of them, e.g. by MMR), with what they
        relaxed. An exact match is shown for being the query photo, not by relaxing anything."""
        shown = list(self.hits[:top_k] if hits is None else hits)
        lacking = {a for h in shown if h.product.product_id not in self.exact
                   for a in self.lacks[h.product.product_id]}
        relaxed = [a for a in RELAX_ORDER if a in lacking]
        return Ranked(shown, self.inferred, relaxed,
                      [{"attribute": a, "kept": self.kept.get(a, 0)} for a in relaxed], self.mode,
                      self.full)


def _cheap_reference(hits: Sequence[Hit], inferred: Inferred) -> list[Hit]:
    """What "cheap" is measured against: the candidates with every boosted attribute the query
    asks for ("cheap tees": the tees), or all of them when none has. Cheap among the whole pool
    would let a €5 sock set the scale for sneakers, and every sneaker's decay would be ~0."""
    asked = {a for a in inferred.attributes() if a not in LIMITS}
    ref = [h for h in hits if asked <= set(inferred.matching(h.product))]
    return ref or list(hits)


def _relax_level(matched: set[str], steps: Sequence[str]) -> int:
    """The fewest of `steps` (dropped from the front) that leave only attributes it has."""
    return next(i for i in range(len(steps) + 1) if set(steps[i:]) <= matched)


def order(candidates: Sequence[Hit], *, inferred: Inferred, mode: str,
          explicit: Filters = Filters(), collapse_variants: bool = False,
          limits: Sequence[str] = LIMITS) -> Ordering:
    """Every candidate that passes the explicit filters, ranked (see the module docstring).
    `inferred`: the query's inferences less what the explicit filters set (Inferred.under)."""
    unique: dict[str, Hit] = {}
    for h in candidates:
        if passes(h.product, explicit):
            unique.setdefault(h.product.product_id, h)
    hits = list(unique.values())
    if mode == "off":
        inferred = Inferred()
    decay = cheap_decay(_cheap_reference(hits, inferred)) if inferred.cheap else None
    steps = [a for a in RELAX_ORDER if a in inferred.attributes()]
    keyed: list[tuple[tuple[Any, ...], Hit]] = []
    lacks: dict[str, tuple[str, ...]] = {}
    exact: set[str] = set()
    tiers: dict[str, tuple[Any, ...]] = {}
    for i, h in enumerate(hits):
        pid = h.product.product_id
        ups = boosts(h, inferred, decay) if mode != "off" else []
        broken = breaks(h, inferred, limits) if mode != "off" else Breaks()
        score = h.score + sum(b["weight"] for b in ups)
        if mode == "filter":
            level = _relax_level(set(inferred.matching(h.product)), steps)
            lacks[pid] = tuple(steps[:level])
        else:
            level, lacks[pid] = 0, broken.attributes
        first = is_exact(h)
        if first:
            exact.add(pid)
        tiers[pid] = (not first, level, len(broken.attributes), broken.price_distance)
        key = (*tiers[pid], -score, i)
        keyed.append((key, replace(h, score=score, explain=explain(
            h, base=h.score, boosts=ups, inferred=inferred, broken=broken, exact=first))))
    ranked = [h for _, h in sorted(keyed, key=lambda kh: kh[0])]
    if collapse_variants:
        ranked = collapse(ranked, len(ranked))
    kept = {a: sum(1 for h in ranked if a in inferred.matching(h.product)) for a in steps}
    # Counted over the candidates, not the page: exact while it is below the page's end (the
    # full-match search reads up to the pool, and is skipped only when the pool's own full
    # matches fill the page and its look-ahead, retrieval.pool_suffices), a lower bound above.
    full = (sum(1 for h in ranked if len(inferred.matching(h.product)) == len(steps))
            if steps else None)
    return Ordering(ranked, inferred, mode, lacks, frozenset(exact), kept, full, tiers)
