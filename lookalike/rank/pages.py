"""Pages of one ordering: results offset..offset+top_k of a ranked candidate set.

A page is a slice of `Ordering.hits` (lookalike/rank/ranking.py), so within one candidate set
page n+1 starts where page n ended: no duplicate, no gap. The candidate set is sized for the
page's end, ranking.pool_size(offset + top_k): every page that ends at or before
POOL_FLOOR (100) comes from the same pool of 100 candidates and pages concatenate exactly. A deeper page reads a larger pool, and a product only the larger pool
finds can rank above the end of a page computed from a smaller one: inferred boosts and limits
and best_score re-scoring lift deep candidates, and so can the store's fusion of image and text
lists. Where the order is plain vector score (similar, average_vector recommend) a larger pool
nearly always only appends. Deep pages are a convenience, not a snapshot (docs/api.md).

MMR (diversity > 0) re-orders the first offset + top_k results of the window as a whole
(greedy, so its first n picks do not depend on how many follow), then the page is sliced
from that: page 2 continues page 1 under the same diversity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lookalike.rank.ranking import Ordering, Ranked
from lookalike.store.base import Hit

# offset + top_k at most: the pool for it stays well under Milvus' cap (ranking.POOL_MAX) and a
# deep page costs at most 1,000 candidates.
MAX_WINDOW = 1000


@dataclass(frozen=True)
class Page:
    ranked: Ranked
    offset: int
    next_offset: int | None  # where the next page starts; None: the ordering has no more


def window(offset: int, top_k: int) -> int:
    """How many ranked results a page needs: the pool is sized for this, not for top_k."""
    if offset < 0 or top_k < 1:
        raise ValueError("offset must be >= 0 and top_k >= 1")
    return offset + top_k


def page_of(ordering: Ordering, *, offset: int, top_k: int,
            reordered: Sequence[Hit] | None = None) -> Page:
    """Results offset..offset+top_k of `ordering` (or of `reordered`, its first
    offset+top_k re-ordered, e.g. by MMR)."""
    end = window(offset, top_k)
    first = list(ordering.hits[:end] if reordered is None else reordered[:end])
    # No next page where one of the same size would pass MAX_WINDOW (the API refuses it).
    more = len(ordering.hits) > end and end + top_k <= MAX_WINDOW
    return Page(ordering.page(top_k, first[offset:]), offset, end if more else None)
