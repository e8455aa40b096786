"""Retrieve once: the candidate set of one query, in at most two store searches.

1. The pool: the best `pool` products under the explicit filters only. Its size is
   ranking.pool_size(top_k), the same for every top_k below the floor, so the candidates (and
   with them the ranked list) do not change with the page size. A photo's category is a vote
   of these same neighbours, so a photo query needs no search of its own for it.
2. When something is inferred (a category, colour, size or price), the best `pool` products
   under the explicit and the inferred filters together: the full matches, wherever the vector
   ranks them (a red dress at vector rank 400 is still found). Never cut to the page: merged
   with the pool (ranking.merge_candidates), so an inferred attribute never removes a product.
   Skipped when it cannot change the results the caller reads (`pool_suffices`): a shopper's
   "red dress" whose pool already ranks more red dresses than the page shows costs one
   search, and its page is the one the two searches give.

Then ranking.order ranks them, whatever the mode ("off" needs the pool alone).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lookalike.rank.inferred import Inferred
from lookalike.rank.ranking import EXACT_SCORE, Ordering, merge_candidates, order, passes
from lookalike.store.base import Filters, Hit
from lookalike.variants import group_key

Search = Callable[[Filters, int], list[Hit]]


@dataclass(frozen=True)
class Candidates:
    hits: list[Hit]
    inferred: Inferred
    searches: int  # store searches it took (1 or 2)
    # The hits ranked as the caller ranks them, when deciding the skip ranked them already
    # (pool_suffices): the caller takes it rather than ranking the same candidates again.
    ordering: Ordering | None = None


def retrieve(search: Search, *, explicit: Filters, infer: Callable[[list[Hit]], Inferred],
             mode: str, pool: int, reads: int | None, collapse_variants: bool) -> Candidates:
    """`infer(pool_hits)`: the query's inferences from its words and, for a photo, from the
    pool's nearest neighbours. `reads`: how many ranked results the caller uses (its page's end
    and the look-ahead); None: any of them (MMR re-ranks the whole window), so the full-match
    search is skipped only when it could find nothing new. `collapse_variants`: as the caller
    will rank them (ranking.order)."""
    base = search(explicit, pool)
    if mode == "off":
        return Candidates(base, Inferred(), 1)
    inferred = infer(base).under(explicit)
    if not inferred.attributes():
        return Candidates(base, inferred, 1)
    enough = _suffices(base, inferred, explicit, mode=mode, pool=pool, reads=reads,
                       collapse_variants=collapse_variants)
    if enough is not False:
        return Candidates(base, inferred, 1, enough if isinstance(enough, Ordering) else None)
    full = search(inferred.filters(explicit), pool)
    return Candidates(merge_candidates(base, full, pool_limit=pool), inferred, 2)


def pool_suffices(base: Sequence[Hit], inferred: Inferred, explicit: Filters, *, mode: str,
                  pool: int, reads: int | None, collapse_variants: bool) -> bool:
    """Whether the full-match search would leave the first `reads` ranked results as they are.

    - The pool is not full (fewer than `pool` products pass the explicit filters): every full
      match is in it already.
    - The pool, ranked alone, shows at least `reads` full matches (one per variant group when
      collapsed, as ranking.order counts them): a full match outside the pool scores at most
      the pool's lowest (it was not among the best), keeps the same limits and earns the same
      boosts as each one inside (all of them have every inferred attribute), so it ranks after
      every one of them (ties go to the pool, which comes first), and these fill the first
      `reads` results. The full-match count then stays at `reads` or more, so the page says
      "Only N" in neither case. Unless the boosts depend on the candidates ("cheap" is priced
      against them) or a product outside the pool could still be the query photo itself (exact
      matches outrank everything, ranking.order).
    Property-tested against the two searches (tests/unit/test_ranking_properties.py)."""
    return _suffices(base, inferred, explicit, mode=mode, pool=pool, reads=reads,
                     collapse_variants=collapse_variants) is not False


def _suffices(base: Sequence[Hit], inferred: Inferred, explicit: Filters, *, mode: str,
              pool: int, reads: int | None, collapse_variants: bool) -> Ordering | bool:
    """pool_suffices's answer: False, True, or the pool's ranking when it decided."""
    if len(base) < pool:
        return True
    if reads is None or inferred.cheap or _outsider_may_be_exact(base):
        return False
    asked = len(inferred.attributes())
    shown = {group_key(h.product.product_id, h.group_id) if collapse_variants
             else h.product.product_id for h in base
             if passes(h.product, explicit) and len(inferred.matching(h.product)) == asked}
    if len(shown) < reads:  # cheap to count; ranking decides only the close cases
        return False
    ranked = order(base, inferred=inferred, mode=mode, explicit=explicit,
                   collapse_variants=collapse_variants)
    return ranked if (ranked.full or 0) >= reads else False


def _outsider_may_be_exact(base: Sequence[Hit]) -> bool:
    """A photo query's score is its image cosine: a product outside the pool has a cosine below
    the pool's lowest, so it is the query photo only if that lowest is EXACT_SCORE already. A
    text+image query's fused score can hide a cosine of 1 under a poor text match; a text
    query has no image cosine."""
    photo = [h for h in base if "image" in h.scores]
    if not photo:
        return False
    return any("text" in h.scores for h in photo) or min(h.score for h in base) >= EXACT_SCORE
