"""The invariants of one query's ranking (issue 29), property-tested over generated catalogues.

Each example is a catalogue (products with a category, colour, size, maybe a price, a vector
score in [0, 1], maybe a variant group), a query's inferences, explicit filters and a mode. A
fake store search stands in for Milvus: the best `limit` products that pass the filters, by
score. `page` is what SearchService does with it: retrieve the candidates
(lookalike/rank/retrieval.py), rank them (lookalike/rank/ranking.py), cut the page.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lookalike.catalog.product import Product
from lookalike.rank.attributes import BOOST_BOUND
from lookalike.rank.inferred import MODES, Inferred
from lookalike.rank.mmr import mmr
from lookalike.rank.ranking import (
    EXACT_SCORE,
    LOOKAHEAD,
    POOL_FLOOR,
    Ranked,
    merge_candidates,
    order,
    pool_size,
)
from lookalike.rank.retrieval import pool_suffices, retrieve
from lookalike.store.base import Filters, Hit

CATEGORIES = ("dress", "coat", "bag", "t-shirt")
COLORS = ("red", "blue", "black")
SIZES = ("S", "M", "L")
EXACT_ID = "exact"


def keeps(p: Product, f: Filters) -> bool:
    """Milvus' filter semantics: a product without a price never matches a price range."""
    priced = f.min_price is None and f.max_price is None or p.price is not None
    return (priced and (not f.categories or p.category in f.categories)
            and (not f.colors or p.color in f.colors) and (not f.sizes or p.size in f.sizes)
            and (f.min_price is None or p.price >= f.min_price)
            and (f.max_price is None or p.price <= f.max_price))


@dataclass(frozen=True)
class Catalogue:
    hits: tuple[Hit, ...]  # every product with the score this query gives it

    def search(self, filters: Filters, limit: int) -> list[Hit]:
        found = [h for h in self.hits if keeps(h.product, filters)]
        return sorted(found, key=lambda h: -h.score)[:limit]

    def score(self, pid: str) -> float:
        return next(h.score for h in self.hits if h.product.product_id == pid)


def page(cat: Catalogue, *, inferred: Inferred, explicit: Filters, mode: str, top_k: int,
         collapse: bool = False) -> Ranked:
    # As SearchService asks: the page and the look-ahead are what it reads.
    found = retrieve(cat.search, explicit=explicit, infer=lambda _: inferred, mode=mode,
                     pool=pool_size(top_k), reads=top_k + LOOKAHEAD, collapse_variants=collapse)
    return order(found.hits, inferred=found.inferred, mode=mode, explicit=explicit,
                 collapse_variants=collapse).page(top_k)


def page_of_both_searches(cat: Catalogue, *, inferred: Inferred, explicit: Filters, mode: str,
                          top_k: int, collapse: bool) -> Ranked:
    """The page from the pool and the full-match search, always both (as before the skip)."""
    pool = pool_size(top_k)
    hits = cat.search(explicit, pool)
    held = inferred.under(explicit) if mode != "off" else Inferred()
    if held.attributes():
        hits = merge_candidates(hits, cat.search(held.filters(explicit), pool), pool_limit=pool)
    return order(hits, inferred=held, mode=mode, explicit=explicit,
                 collapse_variants=collapse).page(top_k)


def ids(ranked: Ranked) -> list[str]:
    return [h.product.product_id for h in ranked.hits]


prices = st.one_of(st.none(), st.integers(1, 200).map(float))
products = st.tuples(st.sampled_from(CATEGORIES), st.sampled_from(COLORS), st.sampled_from(SIZES),
                     prices, st.floats(0.0, 0.99), st.integers(0, 5))


@st.composite
def catalogues(draw: st.DrawFn, kind: str | None = None, min_size: int = 1,
               max_size: int = 40) -> Catalogue:
    rows = draw(st.lists(products, min_size=min_size, max_size=max_size))
    modality = kind or draw(st.sampled_from(("image", "text")))
    hits = []
    for i, (category, color, size, price, score, group) in enumerate(rows):
        p = Product(f"p{i}", category=category, color=color, size=size, price=price)
        # a few products share a variant group ("" is the product's own group)
        hits.append(Hit(p, score, scores={modality: score}, group_id=f"g{group}" if group else ""))
    return Catalogue(tuple(hits))


def subset(values: tuple[str, ...]) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.sampled_from(values), max_size=2, unique=True).map(tuple)


@st.composite
def price_range(draw: st.DrawFn) -> tuple[float | None, float | None]:
    lo = draw(st.one_of(st.none(), st.integers(1, 150).map(float)))
    hi = draw(st.one_of(st.none(), st.integers(int(lo or 1), 200).map(float)))
    return lo, hi


@st.composite
def inferences(draw: st.DrawFn) -> Inferred:
    lo, hi = draw(price_range())
    return Inferred(categories=draw(subset(CATEGORIES)), colors=draw(subset(COLORS)),
                    sizes=draw(subset(SIZES)), min_price=lo, max_price=hi, cheap=draw(st.booleans()),
                    from_photo=frozenset(draw(subset(("category", "color")))))


@st.composite
def explicit_filters(draw: st.DrawFn) -> Filters:
    lo, hi = draw(st.one_of(st.just((None, None)), price_range()))
    return Filters(categories=draw(subset(CATEGORIES)), colors=draw(subset(COLORS)),
                   sizes=draw(st.one_of(st.just(()), subset(SIZES))), min_price=lo, max_price=hi)


page_sizes = st.integers(1, POOL_FLOOR)


@settings(deadline=None)
@given(catalogues(), inferences(), explicit_filters(), st.sampled_from(MODES), st.booleans(),
       page_sizes, page_sizes)
def test_a_smaller_page_is_a_prefix_of_a_larger_one(cat: Catalogue, inferred: Inferred,
                                                    explicit: Filters, mode: str, collapse: bool,
                                                    a: int, b: int) -> None:
    k, big = sorted((a, b))
    small = page(cat, inferred=inferred, explicit=explicit, mode=mode, top_k=k, collapse=collapse)
    large = page(cat, inferred=inferred, explicit=explicit, mode=mode, top_k=big, collapse=collapse)
    assert ids(small) == ids(large)[:k]


def _deep_keepers() -> Catalogue:
    """300 coats by falling score: the best 150 at 100 (they break "under 50"), the rest at 10."""
    return Catalogue(tuple(
        Hit(Product(f"p{i}", category="coat", color="red", size="M",
                    price=100.0 if i < 150 else 10.0), 1.0 - i / 300, scores={"text": 1.0 - i / 300})
        for i in range(300)))


# A pool that grew with the page would find the coats under 50 for top_k 50 (pool 250) and not
# for top_k 10 (pool 100): they would lead the larger page only.
@example(_deep_keepers(), Inferred(categories=("dress",), max_price=50.0), Filters(), "boost",
         False, 10, 50)
@settings(max_examples=60, deadline=None)
@given(catalogues(min_size=POOL_FLOOR + 1, max_size=3 * POOL_FLOOR), inferences(),
       explicit_filters(), st.sampled_from(MODES), st.booleans(), page_sizes, page_sizes)
def test_pages_up_to_the_floor_are_prefixes_in_a_catalogue_larger_than_the_pool(
        cat: Catalogue, inferred: Inferred, explicit: Filters, mode: str, collapse: bool,
        a: int, b: int) -> None:
    """The catalogue holds more products than a pool reads, so a page size that changed the
    pool (the old max(100, 5 x top_k)) would change the candidates: top_k 10 and 50 differ."""
    k, big = sorted((a, b))
    small = page(cat, inferred=inferred, explicit=explicit, mode=mode, top_k=k, collapse=collapse)
    large = page(cat, inferred=inferred, explicit=explicit, mode=mode, top_k=big, collapse=collapse)
    assert ids(small) == ids(large)[:k]


def _red_dresses_first() -> Catalogue:
    """300 products by falling score: 150 red dresses, then 150 others, ten per variant group."""
    return Catalogue(tuple(
        Hit(Product(f"p{i}", category="dress" if i < 150 else "coat",
                    color="red" if i < 150 else "blue", size="M", price=30.0),
            1.0 - i / 300, scores={"image": 1.0 - i / 300}, group_id=f"g{i // 10}")
        for i in range(300)))


# A shopper's usual query: a category and a colour from the words, nothing else. With the page
# sizes shoppers use, the pool often holds enough full matches to skip the second search.
everyday_inferences = st.builds(lambda c, k: Inferred(categories=(c,), colors=(k,)),
                                st.sampled_from(CATEGORIES), st.sampled_from(COLORS))


# The common case the skip is for: the pool (p0-p100) holds 11 groups of red dresses, enough
# for any page up to 10 and its look-ahead; a page of 11 needs the second search.
@example(_red_dresses_first(), Inferred(categories=("dress",), colors=("red",)), Filters(),
         "boost", True, 10)
@example(_red_dresses_first(), Inferred(categories=("dress",), colors=("red",)), Filters(),
         "filter", True, 11)
@settings(max_examples=60, deadline=None)
@given(catalogues(min_size=POOL_FLOOR + 1, max_size=3 * POOL_FLOOR),
       st.one_of(everyday_inferences, inferences()), st.one_of(st.just(Filters()),
                                                               explicit_filters()),
       st.sampled_from(MODES),
       st.booleans(), st.one_of(st.integers(1, 12), page_sizes))
def test_skipping_the_full_match_search_changes_no_result_the_page_shows(
        cat: Catalogue, inferred: Inferred, explicit: Filters, mode: str, collapse: bool,
        top_k: int) -> None:
    """retrieval.pool_suffices: the page (and whether a next one exists) is the page that the
    pool and the full-match search give together."""
    got = page(cat, inferred=inferred, explicit=explicit, mode=mode, top_k=top_k,
               collapse=collapse)
    both = page_of_both_searches(cat, inferred=inferred, explicit=explicit, mode=mode,
                                 top_k=top_k, collapse=collapse)
    assert ids(got) == ids(both)
    assert got.relaxed == both.relaxed and got.relaxed_detail == both.relaxed_detail
    # The count is the same wherever the page could say "Only N" (N at most the page).
    if both.full_matches is not None and min(got.full_matches or 0, both.full_matches) <= top_k:
        assert got.full_matches == both.full_matches


def test_a_pool_with_enough_full_matches_costs_one_search_and_one_without_them_two() -> None:
    cat = _red_dresses_first()
    red_dress = Inferred(categories=("dress",), colors=("red",))
    for top_k, searches in ((10, 1), (11, 2)):
        found = retrieve(cat.search, explicit=Filters(), infer=lambda _: red_dress, mode="boost",
                         pool=pool_size(top_k), reads=top_k + LOOKAHEAD, collapse_variants=True)
        assert found.searches == searches, top_k
    base = cat.search(Filters(), pool_size(10))
    enough = {"pool": pool_size(10), "reads": 10 + LOOKAHEAD, "mode": "boost",
              "collapse_variants": True}
    assert pool_suffices(base, red_dress, Filters(), **enough)
    # MMR reads the whole window; "cheap" is priced against the candidates: both searches.
    assert not pool_suffices(base, red_dress, Filters(), **{**enough, "reads": None})
    assert not pool_suffices(base, replace(red_dress, cheap=True), Filters(), **enough)
    # A pool that holds every product that passes the filters: nothing else to find.
    assert pool_suffices(base[:50], red_dress, Filters(), **{**enough, "reads": None})
    # A text query has no photo to match exactly; a text+image score can hide the query photo
    # outside the pool, and so can a photo pool whose lowest cosine is EXACT_SCORE already.
    text = [replace(h, scores={"text": h.score}) for h in base]
    assert pool_suffices(text, red_dress, Filters(), **enough)
    fused = [replace(h, scores={"image": h.score, "text": h.score}) for h in base]
    assert not pool_suffices(fused, red_dress, Filters(), **enough)
    near = [replace(h, score=EXACT_SCORE, scores={"image": EXACT_SCORE}) for h in base]
    assert not pool_suffices(near, red_dress, Filters(), **enough)
    # The pool's 101 red dresses are 11 variant groups: 11 results collapsed, 101 not.
    deep = {**enough, "reads": 20}
    assert not pool_suffices(base, red_dress, Filters(), **deep)
    assert pool_suffices(base, red_dress, Filters(), **{**deep, "collapse_variants": False})
    ungrouped = [replace(h, group_id="") for h in base]
    assert pool_suffices(ungrouped, red_dress, Filters(), **deep)
    # Eleven groups hold red dresses, but a blue one leads ten of them: collapsed, the page
    # shows one full match (and would say "Only 1"), so the full matches are searched for.
    # Under infer=filter every red dress ranks before every blue one, and leads its group.
    led = [replace(h, product=replace(h.product, color="blue"), score=0.9, scores={"image": 0.9})
           if i % 10 == 1 else replace(h, score=0.5 - i / 1000, scores={"image": 0.5 - i / 1000})
           for i, h in enumerate(base)]
    led.sort(key=lambda h: -h.score)
    assert not pool_suffices(led, red_dress, Filters(), **enough)
    assert pool_suffices(led, red_dress, Filters(), **{**enough, "collapse_variants": False})
    assert pool_suffices(led, red_dress, Filters(), **{**enough, "mode": "filter"})


def test_infer_off_makes_one_search_and_infers_nothing() -> None:
    cat = _red_dresses_first()
    asked = []
    found = retrieve(cat.search, explicit=Filters(), mode="off", pool=pool_size(10), reads=None,
                     infer=lambda _: asked.append(1) or Inferred(categories=("dress",)),
                     collapse_variants=False)
    assert (found.searches, found.inferred, asked) == (1, Inferred(), [])
    assert [h.product.product_id for h in found.hits] == [f"p{i}" for i in range(pool_size(10))]


def with_exact_match(cat: Catalogue, explicit: Filters, category: str, color: str) -> Catalogue:
    """The catalogue plus the product whose stored photo is the query photo (cosine 1.0), made
    to pass the explicit filters."""
    price = explicit.min_price if explicit.min_price is not None else explicit.max_price
    p = Product(EXACT_ID, category=explicit.categories[0] if explicit.categories else category,
                color=explicit.colors[0] if explicit.colors else color,
                size=explicit.sizes[0] if explicit.sizes else "M",
                price=price if price is not None else 99.0)
    return Catalogue((*cat.hits, Hit(p, 1.0, scores={"image": 1.0}, group_id="g1")))


@settings(deadline=None)
@given(catalogues(kind="image"), inferences(), explicit_filters(), st.sampled_from(MODES),
       st.booleans(), page_sizes, st.sampled_from(CATEGORIES), st.sampled_from(COLORS))
def test_an_exact_photo_match_is_first(cat: Catalogue, inferred: Inferred, explicit: Filters,
                                       mode: str, collapse: bool, top_k: int, category: str,
                                       color: str) -> None:
    cat = with_exact_match(cat, explicit, category, color)
    got = page(cat, inferred=inferred, explicit=explicit, mode=mode, top_k=top_k, collapse=collapse)
    assert ids(got)[0] == EXACT_ID


def limits_broken(p: Product, inferred: Inferred) -> tuple[int, float]:
    """(how many understood limits p breaks, how far outside the price range it is)."""
    broken, distance = 0, 0.0
    if inferred.sizes and p.size not in inferred.sizes:
        broken += 1
    lo, hi = inferred.min_price, inferred.max_price
    if lo is not None or hi is not None:
        if p.price is None:
            broken, distance = broken + 1, float("inf")
        else:
            distance = max((lo or 0.0) - p.price, p.price - hi if hi is not None else 0.0, 0.0)
            broken += distance > 0
    return broken, distance


def _hit(pid: str, category: str, score: float) -> Hit:
    return Hit(Product(pid, category=category, color="red", size="S", price=30.0), score,
               scores={"text": score})


# Issue 29's case, rare among random catalogues: the one red dress, far behind a red coat by
# vector, filled a page of one on its own.
@example(Catalogue((_hit("dress", "dress", 0.1), _hit("coat", "coat", 0.95))),
         Inferred(categories=("dress",), colors=("red",)), Filters(), 1)
@settings(deadline=None)
@given(catalogues(), inferences(), explicit_filters(), page_sizes)
def test_inferred_attributes_never_remove_and_lift_at_most_the_bound(
        cat: Catalogue, inferred: Inferred, explicit: Filters, top_k: int) -> None:
    everything = page(cat, inferred=inferred, explicit=explicit, mode="boost", top_k=POOL_FLOOR)
    assert set(ids(everything)) == {h.product.product_id for h in cat.hits
                                    if keeps(h.product, explicit)}
    # Among products that keep (or break) the understood limits alike, a shown one's vector
    # score is never lower by more than the bound than that of any product after it, shown
    # on this page or left out of it.
    got = page(cat, inferred=inferred, explicit=explicit, mode="boost", top_k=top_k)
    held = inferred.under(explicit)
    left_out = [h for h in everything.hits if h.product.product_id not in set(ids(got))]
    for i, first in enumerate(got.hits):
        for later in [*got.hits[i + 1:], *left_out]:
            if limits_broken(first.product, held) == limits_broken(later.product, held):
                assert (cat.score(later.product.product_id) - cat.score(first.product.product_id)
                        <= BOOST_BOUND + 1e-9)


@settings(deadline=None)
@given(catalogues(min_size=3), inferences(), explicit_filters(), page_sizes)
def test_understood_limits_are_kept_or_reported(cat: Catalogue, inferred: Inferred,
                                                explicit: Filters, top_k: int) -> None:
    got = page(cat, inferred=inferred, explicit=explicit, mode="boost", top_k=top_k)
    held = inferred.under(explicit)
    broken = [limits_broken(h.product, held) for h in got.hits]
    # Every product that keeps the limits before every one that breaks one; the breakers with
    # fewest broken and nearest in price first.
    assert broken == sorted(broken)
    candidates = [h.product for h in cat.hits if keeps(h.product, explicit)]
    detail = {d["attribute"]: d["kept"] for d in got.relaxed_detail}
    if any(b for b, _ in broken):  # only when too few keep them all to fill the page
        assert sum(limits_broken(p, held)[0] == 0 for p in candidates) < top_k
    for limit in ("size", "price"):
        if limit not in held.attributes():
            continue
        page_breaks = any(limit not in held.matching(h.product) for h in got.hits)
        assert (limit in got.relaxed) == page_breaks
        if page_breaks:  # which limit, and how many products keep it
            assert detail[limit] == sum(limit in held.matching(p) for p in candidates)


@settings(deadline=None)
@given(catalogues(), inferences(), explicit_filters(), st.sampled_from(MODES), page_sizes)
def test_the_full_match_count_is_what_the_page_can_promise(
        cat: Catalogue, inferred: Inferred, explicit: Filters, mode: str, top_k: int) -> None:
    got = page(cat, inferred=inferred, explicit=explicit, mode=mode, top_k=top_k)
    held = inferred.under(explicit) if mode != "off" else Inferred()
    asked = held.attributes()
    if not asked:
        assert got.full_matches is None
        return
    # Every candidate with all of them at once, whatever the page size: what the page says
    # ("No black bags under €50", "Only 2 …") is about the catalogue, not about top_k.
    candidates = [h.product for h in cat.hits if keeps(h.product, explicit)]
    assert got.full_matches == sum(len(held.matching(p)) == len(asked) for p in candidates)
    shown = sum(len(held.matching(h.product)) == len(asked) for h in got.hits)
    assert shown <= got.full_matches
    if mode == "filter":  # relaxing starts only after the last full match
        assert shown == min(got.full_matches, len(got.hits))


@settings(deadline=None)
@given(catalogues(), inferences(), explicit_filters(), st.sampled_from(MODES), st.booleans(),
       page_sizes)
def test_explicit_filters_always_hold(cat: Catalogue, inferred: Inferred, explicit: Filters,
                                      mode: str, collapse: bool, top_k: int) -> None:
    got = page(cat, inferred=inferred, explicit=explicit, mode=mode, top_k=top_k, collapse=collapse)
    assert all(keeps(h.product, explicit) for h in got.hits)
    if collapse:  # one product per variant group
        groups = [h.group_id or h.product.product_id for h in got.hits]
        assert len(groups) == len(set(groups))


@settings(deadline=None)
@given(catalogues(min_size=2), inferences(), explicit_filters(), st.sampled_from(MODES),
       st.floats(0.05, 1.0), page_sizes, st.integers(0, 2**16))
def test_diversity_reorders_within_a_tier_only(cat: Catalogue, inferred: Inferred,
                                                explicit: Filters, mode: str, diversity: float,
                                                top_k: int, seed: int) -> None:
    """MMR never lifts a product that breaks an understood limit (or needed more relaxing) above
    one that keeps it, nor anything above the exact photo match: the tiers stay in order."""
    found = retrieve(cat.search, explicit=explicit, infer=lambda _: inferred, mode=mode,
                     pool=pool_size(top_k), reads=None, collapse_variants=False)
    ordering = order(found.hits, inferred=found.inferred, mode=mode, explicit=explicit)
    rng = np.random.default_rng(seed)
    vectors = {h.product.product_id: rng.normal(size=4).astype(np.float32) for h in ordering.hits}
    mixed = mmr(ordering.hits, vectors, top_k=top_k, diversity=diversity, tiers=ordering.tiers)
    assert len(mixed) == min(top_k, len(ordering.hits))
    shown = [ordering.tiers[h.product.product_id] for h in mixed]
    assert shown == sorted(shown)
