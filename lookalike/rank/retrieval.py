"""Retrieve once: the candidate set of one query, in at most two store searches.

1. The pool: the best `pool` products under the explicit filters only. Its size is
   ranking.pool_size(top_k), the same for every top_k below the floor, so the candidates (and
   with them the ranked list) do not change with the page size. A photo's category is a vote
   of these same neighbours, so a photo query needs no search of its own for it.
2. When something is inferred (a category, colour, size or price), the best `pool` products
   under the explicit and the inferred filters together: the full matches, wherever the vector
   ranks them (a red dress at vector rank 400 is still found). Never cut to the page: merged
   with the pool (ranking.merge_candidates), so an inferred attribute never removes a product.

Then ranking.order ranks them, whatever the mode ("off" needs the pool alone).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lookalike.rank.inferred import Inferred
from lookalike.rank.ranking import merge_candidates
from lookalike.store.base import Filters, Hit

Search = Callable[[Filters, int], list[Hit]]


@dataclass(frozen=True)
class Candidates:
    hits: list[Hit]
    inferred: Inferred
    searches: int  # store searches it took (1 or 2)


def retrieve(search: Search, *, explicit: Filters, infer: Callable[[list[Hit]], Inferred],
             mode: str, pool: int) -> Candidates:
    """`infer(pool_hits)`: the query's inferences from its words and, for a photo, from the
    pool's nearest neighbours."""
    base = search(explicit, pool)
    if mode == "off":
        return Candidates(base, Inferred(), 1)
    inferred = infer(base).under(explicit)
    if not inferred.attributes():
        return Candidates(base, inferred, 1)
    full = search(inferred.filters(explicit), pool)
    return Candidates(merge_candidates(base, full, pool_limit=pool), inferred, 2)
