"""Pages of one ordering (lookalike/rank/pages.py), property-tested on the generated catalogues
of test_ranking_properties: each page is computed as SearchService computes it (its own
candidate pool, sized for the page's end), and the pages concatenate to one larger page."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lookalike.catalog.product import Product
from lookalike.rank.inferred import MODES, Inferred
from lookalike.rank.mmr import mmr
from lookalike.rank.pages import MAX_WINDOW, Page, page_of, window
from lookalike.rank.ranking import POOL_FLOOR, POOL_PER_RESULT, order, pool_size
from lookalike.rank.retrieval import retrieve
from lookalike.store.base import Filters, Hit
from tests.unit.test_ranking_properties import (
    Catalogue,
    catalogues,
    explicit_filters,
    inferences,
)


def paged(cat: Catalogue, *, inferred: Inferred, explicit: Filters, mode: str, collapse: bool,
          offset: int, top_k: int) -> Page:
    found = retrieve(cat.search, explicit=explicit, infer=lambda _: inferred, mode=mode,
                     pool=pool_size(window(offset, top_k)), reads=window(offset, top_k) + 1,
                     collapse_variants=collapse)
    ordering = order(found.hits, inferred=found.inferred, mode=mode, explicit=explicit,
                     collapse_variants=collapse)
    return page_of(ordering, offset=offset, top_k=top_k)


def ids(page: Page) -> list[str]:
    return [h.product.product_id for h in page.ranked.hits]


def walk(top_k: int, **query: object) -> tuple[list[str], list[Page]]:
    """Every page, each from the previous one's next_offset, as a client pages."""
    shown: list[str] = []
    pages: list[Page] = []
    offset: int | None = 0
    while offset is not None:
        pages.append(paged(offset=offset, top_k=top_k, **query))  # type: ignore[arg-type]
        shown += ids(pages[-1])
        offset = pages[-1].next_offset
    return shown, pages


@settings(deadline=None)
@given(catalogues(), inferences(), explicit_filters(), st.sampled_from(MODES), st.booleans(),
       st.integers(1, 7))
def test_pages_concatenate_to_the_whole_order(cat: Catalogue, inferred: Inferred,
                                              explicit: Filters, mode: str, collapse: bool,
                                              top_k: int) -> None:
    """The generated catalogues (at most 40 products) fit in the pool floor, so every page
    ranks the same candidates: the pages, followed by next_offset, are the whole order once."""
    query = {"cat": cat, "inferred": inferred, "explicit": explicit, "mode": mode,
             "collapse": collapse}
    shown, pages = walk(top_k, **query)
    whole = ids(paged(offset=0, top_k=POOL_FLOOR, **query))  # type: ignore[arg-type]
    assert shown == whole  # no duplicate, no gap, nothing left out
    assert len(set(shown)) == len(shown)
    assert all(len(p.ranked.hits) == top_k for p in pages[:-1])  # only the last page is short
    assert [p.offset for p in pages] == [i * top_k for i in range(len(pages))]


@settings(deadline=None)
@given(catalogues(), inferences(), explicit_filters(), st.sampled_from(MODES), st.booleans(),
       st.integers(0, 12), st.integers(1, 8))
def test_a_page_is_a_slice_of_the_larger_page_ending_with_it(
        cat: Catalogue, inferred: Inferred, explicit: Filters, mode: str, collapse: bool,
        offset: int, top_k: int) -> None:
    """Within the floor (offset + top_k <= POOL_FLOOR / POOL_PER_RESULT), whatever the catalogue."""
    query = {"cat": cat, "inferred": inferred, "explicit": explicit, "mode": mode,
             "collapse": collapse}
    end = offset + top_k
    assert end <= POOL_FLOOR // POOL_PER_RESULT
    first = ids(paged(offset=0, top_k=end, **query))  # type: ignore[arg-type]
    assert ids(paged(offset=offset, top_k=top_k, **query)) == first[offset:]  # type: ignore[arg-type]


def test_store_ordered_pages_concatenate_beyond_the_floor() -> None:
    """Deeper pages read larger pools; with an exact store and nothing re-ranking deep
    candidates (infer=off; similar and average_vector recommend on a FLAT index) a larger pool
    only appends to the order."""
    rng = np.random.default_rng(3)
    scores = rng.permutation(600) / 600.0
    cat = Catalogue(tuple(Hit(Product(f"p{i}"), float(s), scores={"image": float(s)},
                              group_id=f"g{i // 3}" if i % 7 == 0 else "")
                          for i, s in enumerate(scores)))
    query = {"cat": cat, "inferred": Inferred(), "explicit": Filters(), "mode": "off",
             "collapse": True}
    shown, pages = walk(30, **query)
    assert len(pages) > POOL_FLOOR // 30  # the walk went past the pool floor
    whole = ids(paged(offset=0, top_k=MAX_WINDOW, **query))  # type: ignore[arg-type]
    assert shown and shown == whole[:len(shown)]
    assert len(set(shown)) == len(shown)


def test_next_offset_stops_before_the_window_limit() -> None:
    cat = Catalogue(tuple(Hit(Product(f"p{i}"), 1.0 - i / 5000, scores={"text": 0.5})
                          for i in range(1200)))
    query = {"cat": cat, "inferred": Inferred(), "explicit": Filters(), "mode": "off",
             "collapse": False}
    assert paged(offset=940, top_k=30, **query).next_offset == 970  # type: ignore[arg-type]
    # 1000 + 30 > MAX_WINDOW: a next page of the same size would be refused, so none is offered.
    last = paged(offset=970, top_k=30, **query)  # type: ignore[arg-type]
    assert len(last.ranked.hits) == 30 and last.next_offset is None
    with pytest.raises(ValueError, match="offset must be >= 0 and top_k >= 1"):
        window(-1, 10)
    # Exactly the page's end ranked: no next page to offer.
    exact = order(cat.hits[:30], inferred=Inferred(), mode="off")
    assert page_of(exact, offset=0, top_k=30).next_offset is None
    assert page_of(exact, offset=0, top_k=29).next_offset == 29


@settings(deadline=None)
@given(st.integers(2, 30), st.integers(1, 30), st.floats(0.05, 1.0), st.integers(0, 2**16))
def test_mmr_picks_are_a_prefix_so_diverse_pages_concatenate(n: int, k: int, diversity: float,
                                                             seed: int) -> None:
    """MMR re-orders the window offset + top_k and the page is sliced from it: page 2 continues
    page 1 because the greedy picks for a shorter window are the start of a longer one's."""
    rng = np.random.default_rng(seed)
    hits = [Hit(Product(f"p{i}"), float(s)) for i, s in enumerate(np.sort(rng.random(n))[::-1])]
    vectors = {h.product.product_id: rng.normal(size=4).astype(np.float32) for h in hits}
    longer = mmr(hits, vectors, top_k=n, diversity=diversity)
    assert len(longer) == n
    assert mmr(hits, vectors, top_k=k, diversity=diversity) == longer[:k]
    # The page shows MMR's order (SearchService passes it as `reordered`), not the ranking's.
    ordering = order(hits, inferred=Inferred(), mode="off")
    page = page_of(ordering, offset=0, top_k=k, reordered=longer)
    assert ids(page) == [h.product.product_id for h in longer[:k]]
