"""Boosts, understood limits, filter mode with relaxation, and explicit filters winning, over a
fake store search (pure ranking logic; the real store is in
tests/integration/test_search_understanding.py, the invariants in test_ranking_properties.py)."""

from __future__ import annotations

import math
from dataclasses import replace

from lookalike.catalog.product import Product
from lookalike.rank.attributes import (
    BOOST_BOUND,
    CHEAP_WEIGHT,
    LIMITS,
    PHOTO_FACTOR,
    WEIGHTS,
    Breaks,
    boosts,
    breaks,
    cheap_decay,
    explain,
)
from lookalike.rank.inferred import Inferred
from lookalike.rank.ranking import EXACT_SCORE, POOL_FLOOR, Ranked, merge_candidates, order
from lookalike.rank.ranking import passes as passes_filters
from lookalike.rank.retrieval import retrieve
from lookalike.store.base import Filters, Hit
from tests.checks import all_of

CATALOGUE = [
    Product("a", category="dress", color="red", size="M", price=30.0),
    Product("b", category="dress", color="blue", size="M", price=80.0),
    Product("c", category="coat", color="red", size="L", price=120.0),
    Product("d", category="dress", color="red", size="S", price=45.0),
    Product("e", category="bag", color="black", size="one size", price=20.0),
]
# The vector scores a query gets: "e" is the closest vector, "a" has everything asked for.
SCORES = {"e": 0.9, "c": 0.75, "b": 0.65, "d": 0.6, "a": 0.5}


def passes(p: Product, f: Filters) -> bool:
    return ((not f.categories or p.category in f.categories) and (not f.colors or p.color in f.colors)
            and (not f.sizes or p.size in f.sizes)
            and (f.max_price is None or (p.price or 0) <= f.max_price)
            and (f.min_price is None or (p.price or 0) >= f.min_price))


class FakeSearch:
    def __init__(self) -> None:
        self.calls: list[tuple[Filters, int]] = []

    def __call__(self, filters: Filters, top_k: int) -> list[Hit]:
        self.calls.append((filters, top_k))
        hits = [Hit(p, SCORES[p.product_id], scores={"text": SCORES[p.product_id]})
                for p in CATALOGUE if passes(p, filters)]
        return sorted(hits, key=lambda h: -h.score)[:top_k]


def rank(search: FakeSearch, *, explicit: Filters, infer, mode: str, top_k: int) -> Ranked:
    """What SearchService does: retrieve one candidate set, rank it, cut the page."""
    found = retrieve(search, explicit=explicit, infer=infer, mode=mode, pool=POOL_FLOOR,
                     reads=top_k + 1, collapse_variants=False)
    return order(found.hits, inferred=found.inferred, mode=mode,
                 explicit=explicit).page(top_k)


RED_DRESS = Inferred(categories=("dress",), colors=("red",), why={"color": "the words 'crimson'"})


def ids(hits: list[Hit]) -> list[str]:
    return [h.product.product_id for h in hits]


def test_boost_puts_products_with_the_inferred_attributes_first() -> None:
    got = rank(FakeSearch(), explicit=Filters(), infer=lambda _: RED_DRESS, mode="boost", top_k=5)
    assert ids(got.hits)[:2] == ["d", "a"]  # both red dresses, in vector order
    # then one attribute (0.75 + colour, 0.65 + category), then none: within BOOST_BOUND of "e"
    assert ids(got.hits)[2:] == ["c", "b", "e"]
    a = next(h for h in got.hits if h.product.product_id == "a")
    assert a.score == 0.5 + WEIGHTS["category"] + WEIGHTS["color"]
    assert {b["attribute"] for b in a.explain["boosts"]} == {"category", "color"}
    assert a.explain["vector"] == {"text": 0.5} and a.explain["base_score"] == 0.5


def test_off_is_the_plain_vector_ranking() -> None:
    got = rank(FakeSearch(), explicit=Filters(), infer=lambda _: RED_DRESS, mode="off", top_k=3)
    assert ids(got.hits) == ["e", "c", "b"] and not got.inferred
    all_of(got.hits, lambda h: h.explain["boosts"] == [])


def test_a_size_in_the_words_is_a_limit_and_a_shortfall_says_so() -> None:
    search = FakeSearch()
    inferred = Inferred(categories=("dress",), sizes=("S",))
    got = rank(search, explicit=Filters(), infer=lambda _: inferred, mode="boost", top_k=2)
    assert ids(got.hits)[0] == "d"  # the only one in size S, though the vector ranks it 4th
    # then the rest, all breaking the size: by score plus boosts (b: a dress, 0.65 + 0.4)
    assert ids(got.hits)[1] == "b"
    assert got.relaxed == ["size"] and got.relaxed_detail == [{"attribute": "size", "kept": 1}]
    assert rank(FakeSearch(), explicit=Filters(), infer=lambda _: inferred, mode="boost",
                top_k=1).relaxed == []  # one product in size S fills a page of one


def test_a_price_in_the_words_keeps_its_products_first_then_the_nearest_prices() -> None:
    inferred = Inferred(categories=("dress",), colors=("red",), max_price=40.0)
    got = rank(FakeSearch(), explicit=Filters(), infer=lambda _: inferred, mode="boost", top_k=5)
    # 30 and 20 keep "under 40"; then 45, 80, 120: the nearest price first, whatever the boosts.
    assert ids(got.hits) == ["a", "e", "d", "b", "c"]
    assert got.relaxed_detail == [{"attribute": "price", "kept": 2}]
    assert got.hits[2].explain["breaks"] == ["price"]


def test_no_product_with_everything_asked_for_is_said_though_every_limit_holds() -> None:
    # "red bag under 50": the one bag is black. Under 50 holds (the bag, 20; a red dress, 30),
    # so nothing is relaxed, yet nothing is a red bag under 50: the page must not pretend.
    inferred = Inferred(categories=("bag",), colors=("red",), max_price=50.0)
    got = rank(FakeSearch(), explicit=Filters(), infer=lambda _: inferred, mode="boost", top_k=2)
    assert got.relaxed == [] and got.full_matches == 0
    all_of(got.hits, lambda h: h.product.price <= 50)
    assert ids(got.hits)[0] == "e"
    dress = Inferred(categories=("dress",), colors=("red",))
    assert rank(FakeSearch(), explicit=Filters(), infer=lambda _: dress, mode="boost",
                top_k=5).full_matches == 2  # "a" and "d"; the page shows 3 more after them
    assert rank(FakeSearch(), explicit=Filters(), infer=lambda _: Inferred(), mode="boost",
                top_k=5).full_matches is None  # nothing asked for: nothing to say


def test_both_searches_read_the_pool_whatever_the_page_size() -> None:
    """The pool and the full matches are sized by the pool, never by top_k: a page of two and
    a page of five come from the same candidates (the old code searched top_k and stopped
    when the full matches filled the page, so a boost acted as a filter for small pages).
    A pool of 4 of the 5 products, whose one red dress ("d") is too few for either page: the
    full-match search runs (retrieval.pool_suffices), and finds "a" beyond the pool."""
    calls, pages = [], []
    for top_k in (2, 5):
        search = FakeSearch()
        found = retrieve(search, explicit=Filters(), infer=lambda _: RED_DRESS, mode="boost",
                         pool=4, reads=top_k + 1, collapse_variants=False)
        pages.append(order(found.hits, inferred=found.inferred, mode="boost").page(top_k))
        calls.append(search.calls)
    assert calls[0] == calls[1] == [(Filters(), 4),
                                    (Filters(categories=("dress",), colors=("red",)), 4)]
    assert ids(pages[0].hits) == ids(pages[1].hits)[:2] == ["d", "a"]
    # The whole catalogue fits the pool: the full matches are in it, one search.
    search = FakeSearch()
    retrieve(search, explicit=Filters(), infer=lambda _: RED_DRESS, mode="boost",
             pool=POOL_FLOOR, reads=3, collapse_variants=False)
    assert search.calls == [(Filters(), POOL_FLOOR)]


def test_explicit_filters_win_over_inferred_ones() -> None:
    got = rank(FakeSearch(), explicit=Filters(colors=("blue",)), infer=lambda _: RED_DRESS,
               mode="filter", top_k=5)
    assert ids(got.hits) == ["b"]  # blue (explicit) dress (inferred); red is overridden
    assert got.inferred.colors == () and got.inferred.overridden == ("color",)


def test_filter_mode_relaxes_inferred_attributes_never_explicit_ones() -> None:
    inferred = Inferred(categories=("dress",), colors=("red",), sizes=("S",), max_price=50.0)
    got = rank(FakeSearch(), explicit=Filters(), infer=lambda _: inferred, mode="filter", top_k=2)
    # size S leaves one product: size goes first, then red dresses <= 50 are two.
    assert got.relaxed == ["size"] and ids(got.hits) == ["d", "a"]
    got = rank(FakeSearch(), explicit=Filters(categories=("coat",)), infer=lambda _: inferred,
               mode="filter", top_k=3)
    # The one coat is red: size and price are dropped, colour is not (the old code went on
    # dropping until three products passed, though only one coat exists).
    assert got.relaxed == ["size", "price"] and ids(got.hits) == ["c"]


def test_filter_mode_without_a_shortfall_relaxes_nothing() -> None:
    got = rank(FakeSearch(), explicit=Filters(), infer=lambda _: RED_DRESS, mode="filter", top_k=2)
    assert got.relaxed == [] and ids(got.hits) == ["d", "a"]


def test_filter_mode_relaxes_for_the_page_and_pages_are_prefixes() -> None:
    """Two red dresses fill a page of two; a page of ten relaxes, and starts with them."""
    two = rank(FakeSearch(), explicit=Filters(), infer=lambda _: RED_DRESS, mode="filter", top_k=2)
    ten = rank(FakeSearch(), explicit=Filters(), infer=lambda _: RED_DRESS, mode="filter", top_k=10)
    assert two.relaxed == [] and ids(two.hits) == ["d", "a"]
    assert ten.relaxed == ["color", "category"] and ids(ten.hits)[:2] == ["d", "a"]
    assert ten.relaxed_detail == [{"attribute": "color", "kept": 3},
                                  {"attribute": "category", "kept": 3}]


def test_cheap_prefers_lower_prices() -> None:
    hits = FakeSearch()(Filters(categories=("dress",)), 10)
    got = order(hits, inferred=Inferred(cheap=True, why={"cheap": "the words ask for a low price"}),
                mode="boost").hits
    weight = {h.product.product_id: h.explain["boosts"][0]["weight"] for h in got}
    assert weight["a"] > weight["d"] > weight["b"] > 0  # 30, 45, 80
    assert weight["a"] == CHEAP_WEIGHT  # the cheapest gets the whole weight
    all_of(got, lambda h: h.explain["boosts"][0]["value"] == "cheap", "boosted hits")


def test_cheap_is_measured_against_what_the_words_ask_for() -> None:
    # "cheap dresses": the €20 bag and the €120 coat are candidates too, but the cheapest
    # dress (30) gets the whole weight and the dearest (80) is measured against the dresses.
    hits = FakeSearch()(Filters(), 10)
    got = order(hits, inferred=Inferred(categories=("dress",), cheap=True), mode="boost").hits
    cheap = {h.product.product_id: next(b["weight"] for b in h.explain["boosts"]
                                        if b["value"] == "cheap") for h in got}
    assert cheap["a"] == CHEAP_WEIGHT and cheap["e"] == CHEAP_WEIGHT  # both at the dresses' lowest
    assert cheap["a"] > cheap["d"] > cheap["b"] > cheap["c"] > 0


def test_photo_inference_sees_the_pool() -> None:
    seen: list[list[Hit]] = []

    def infer(pool: list[Hit]) -> Inferred:
        seen.append(pool)
        return Inferred()

    search = FakeSearch()
    rank(search, explicit=Filters(), infer=infer, mode="filter", top_k=2)
    assert len(seen[0]) == 5 and len(search.calls) == 1  # the pool is the vote's neighbours


def test_cheap_alone_ranks_a_pool_by_price() -> None:
    search = FakeSearch()
    got = rank(search, explicit=Filters(), infer=lambda _: Inferred(cheap=True), mode="boost", top_k=2)
    assert search.calls == [(Filters(), POOL_FLOOR)]  # the pool, to find the cheap ones
    assert ids(got.hits)[0] == "e"  # 20: the cheapest, and the best vector score too


def test_the_boost_bound_is_the_sum_of_the_weights() -> None:
    assert BOOST_BOUND == sum(WEIGHTS.values()) + CHEAP_WEIGHT


def test_an_inference_is_something_when_it_names_an_attribute_or_cheap() -> None:
    assert not Inferred()
    assert Inferred(cheap=True) and Inferred(colors=("red",)) and Inferred(max_price=50.0)
    assert not Inferred(why={"color": "photo"}, overridden=("color",))


def test_each_boost_says_what_it_is_worth_and_why() -> None:
    """A photo's guesses weigh PHOTO_FACTOR of the words' (the page's "why" shows each)."""
    inferred = Inferred(categories=("dress", "skirt"), colors=("red",), cheap=True,
                        from_photo=frozenset({"color"}),
                        why={"category": "the word 'dress'", "color": "the photo",
                             "cheap": "the word 'cheap'"})
    hit = Hit(CATALOGUE[0], 0.5, scores={"text": 0.5})  # "a": a red dress at €30
    got = boosts(hit, inferred, lambda price: 0.5 if price == 30.0 else 0.0)
    assert got == [
        {"attribute": "category", "value": "dress, skirt", "weight": WEIGHTS["category"],
         "why": "the word 'dress'"},
        {"attribute": "color", "value": "red", "weight": WEIGHTS["color"] * PHOTO_FACTOR,
         "why": "the photo"},
        {"attribute": "price", "value": "cheap", "weight": round(CHEAP_WEIGHT * 0.5, 6),
         "why": "the word 'cheap'"}]
    # Without a reason on record, the reason is empty, never missing.
    assert {b["why"] for b in boosts(hit, replace(inferred, why={}), lambda _: 1.0)} == {""}


def _priced(*prices: float | None) -> list[Hit]:
    return [Hit(Product(f"p{i}", price=p), 0.5) for i, p in enumerate(prices)]


def test_cheap_halves_every_median_minus_cheapest() -> None:
    decay = cheap_decay(_priced(50.0, 10.0, 30.0, None, 20.0, 40.0))  # median 30, cheapest 10
    assert [decay(p) for p in (10.0, 30.0, 50.0, 5.0)] == [1.0, 0.5, 0.25, 1.0]
    # Prices closer than a euro: the step is one euro, not a cent's difference.
    close = cheap_decay(_priced(10.0, 10.5, 11.0))
    assert close(11.0) == 0.5
    assert cheap_decay(_priced(None))(42.0) == 0.0  # no price to compare: no "cheap" boost


def test_a_limit_is_broken_by_how_far_it_is_missed() -> None:
    under_50 = Inferred(max_price=50.0)
    assert breaks(_priced(50.5)[0], under_50, LIMITS) == Breaks(("price",), 0.5)
    assert breaks(_priced(20.0)[0], Inferred(min_price=10.0, max_price=50.0), LIMITS) == Breaks()
    assert breaks(_priced(None)[0], under_50, LIMITS) == Breaks(("price",), math.inf)
    # Nothing about price asked: nothing broken, no distance.
    assert breaks(_priced(500.0)[0], Inferred(sizes=("M",)), LIMITS) == Breaks(("size",), 0.0)


def test_an_explanation_holds_the_score_its_parts_boosts_and_what_was_inferred() -> None:
    inferred = Inferred(categories=("dress",), why={"category": "the word 'dress'"})
    hit = Hit(CATALOGUE[0], 0.1234567, image_index=1,
              scores={"image": 0.2345678, "text": 0.3456789, "rrf": 0.5})
    ups = boosts(hit, inferred, None)
    got = explain(hit, base=0.1234567, boosts=ups, inferred=inferred,
                  broken=Breaks(("price",), 3.0))
    assert got == {"base_score": 0.123457, "vector": {"image": 0.234568, "text": 0.345679},
                   "boosts": ups, "matched_image": 1, "fusion": "rrf", "breaks": ["price"],
                   "inferred": {k: v for k, v in inferred.as_dict().items() if k != "why"}}
    assert "why" in inferred.as_dict() and "why" not in got["inferred"]
    plain = explain(Hit(CATALOGUE[0], 0.5, scores={"text": 0.5}), base=0.5, boosts=[],
                    inferred=Inferred(), exact=True)
    assert plain["exact_photo_match"] is True
    assert "fusion" not in plain and "breaks" not in plain
    assert "exact_photo_match" not in got


def test_a_full_match_from_beyond_a_full_pool_scores_at_most_its_lowest() -> None:
    """The full-match search's scores (a text's rank among full matches only) must not outrank
    the pool; when the pool was not cut, it holds every product and nothing is capped."""
    pool = [Hit(CATALOGUE[i], s) for i, s in ((4, 0.9), (2, 0.8), (1, 0.7))]
    full = [Hit(CATALOGUE[3], 0.95), Hit(CATALOGUE[0], 0.5), Hit(CATALOGUE[4], 0.99)]
    merged = merge_candidates(pool, full, pool_limit=3)
    assert [(h.product.product_id, h.score) for h in merged] == [
        ("e", 0.9), ("c", 0.8), ("b", 0.7), ("d", 0.7), ("a", 0.5)]
    uncut = merge_candidates(pool, full, pool_limit=4)
    assert [(h.product.product_id, h.score) for h in uncut][3:] == [("d", 0.95), ("a", 0.5)]
    assert merge_candidates([], full[:1], pool_limit=0)[0].score == 0.95


def test_the_python_filter_keeps_the_stores_semantics() -> None:
    """ranking.passes is what the store's filter expression does (bounds inclusive; a range
    excludes products without a price, or with a negative one); every attribute must hold."""
    coat = Product("c", category="coat", color="red", size="L", price=120.0)
    assert passes_filters(coat, Filters())
    assert passes_filters(coat, Filters(min_price=120.0, max_price=120.0))
    assert not passes_filters(coat, Filters(max_price=119.99))
    assert not passes_filters(coat, Filters(min_price=120.01))
    assert not passes_filters(coat, Filters(min_price=10.0, max_price=100.0))
    for price in (None, -1.0):
        assert not passes_filters(replace(coat, price=price), Filters(max_price=500.0))
    assert passes_filters(replace(coat, price=0.0), Filters(max_price=500.0))
    assert passes_filters(replace(coat, price=None), Filters(colors=("red",)))
    for miss in (Filters(categories=("dress",)), Filters(colors=("blue",)),
                 Filters(sizes=("S",))):
        assert not passes_filters(coat, miss), miss
    assert passes_filters(coat, Filters(categories=("dress", "coat"), colors=("red",),
                                        sizes=("L",)))


def test_inferences_less_what_the_shopper_dropped_and_joined_with_explicit_filters() -> None:
    full = Inferred(categories=("dress",), colors=("red",), sizes=("M",), min_price=10.0,
                    max_price=50.0, cheap=True)
    assert full.without(()) is full
    assert full.without(["category"]) == replace(full, categories=())
    assert full.without(["color", "size"]) == replace(full, colors=(), sizes=())
    assert full.without(["price"]) == replace(full, min_price=None, max_price=None)
    assert full.without(["cheap"]) == replace(full, cheap=False)
    # Explicit filters win attribute by attribute; inferences fill what they leave open.
    assert full.filters(Filters(colors=("blue",), max_price=30.0)) == Filters(
        categories=("dress",), colors=("blue",), sizes=("M",), min_price=10.0, max_price=30.0)
    assert full.filters(Filters(sizes=("L",), min_price=20.0)) == Filters(
        categories=("dress",), colors=("red",), sizes=("L",), min_price=20.0, max_price=50.0)
    # A price range's bounds are inclusive, as the filter's.
    assert full.matching(replace(CATALOGUE[0], size="M", price=10.0)) == [
        "category", "color", "size", "price"]
    assert "price" in full.matching(replace(CATALOGUE[0], price=50.0))
    assert "price" not in full.matching(replace(CATALOGUE[0], price=50.01))


def test_infer_off_orders_by_score_alone_and_an_exact_match_says_so() -> None:
    hits = [Hit(CATALOGUE[i], s, scores={"image": s}) for i, s in
            ((4, 0.9), (2, 0.8), (0, 0.55), (3, EXACT_SCORE))]
    off = order(hits, inferred=RED_DRESS, mode="off")
    assert ids(off.hits) == ["d", "e", "c", "a"]  # the exact match, then by score
    assert off.full is None and off.inferred == Inferred()
    all_of(off.hits, lambda h: h.explain["boosts"] == [] and "breaks" not in h.explain)
    assert off.hits[0].explain["exact_photo_match"] is True
    assert "exact_photo_match" not in off.hits[1].explain
    # The same under boost: "a", a red dress, is lifted over "c", but not over "d"'s exact tier.
    boost = order(hits, inferred=RED_DRESS, mode="boost")
    assert ids(boost.hits)[:1] == ["d"] and ids(boost.hits).index("a") < ids(boost.hits).index("c")


def test_what_was_inferred_reads_as_the_api_shows_it() -> None:
    full = Inferred(categories=("dress",), colors=("red", "pink"), sizes=("M",), min_price=10.0,
                    max_price=50.0, cheap=True, why={"color": "the photo"},
                    overridden=("size",))
    assert full.as_dict() == {"categories": ["dress"], "colors": ["red", "pink"], "sizes": ["M"],
                              "price": {"gte": 10.0, "lte": 50.0}, "cheap": True,
                              "why": {"color": "the photo"}, "overridden_by_filters": ["size"]}
    assert Inferred(max_price=50.0).as_dict() == {"price": {"lte": 50.0}}
    assert Inferred().as_dict() == {}
