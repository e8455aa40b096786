"""Boosts, filter mode with relaxation, and explicit filters winning, over a fake store search
(pure ranking logic; the real store is in tests/integration/test_search_understanding.py)."""

from __future__ import annotations

from lookalike.catalog.product import Product
from lookalike.rank.attributes import CHEAP_WEIGHT, WEIGHTS, boost, rank
from lookalike.rank.inferred import Inferred
from lookalike.store.base import Filters, Hit

CATALOGUE = [
    Product("a", category="dress", color="red", size="M", price=30.0),
    Product("b", category="dress", color="blue", size="M", price=80.0),
    Product("c", category="coat", color="red", size="L", price=120.0),
    Product("d", category="dress", color="red", size="S", price=45.0),
    Product("e", category="bag", color="black", size="one size", price=20.0),
]
# The vector scores a query gets: "e" is the closest vector, "a" has everything asked for.
SCORES = {"e": 0.9, "c": 0.8, "b": 0.65, "d": 0.6, "a": 0.5}


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


RED_DRESS = Inferred(categories=("dress",), colors=("red",), why={"color": "the words 'crimson'"})


def ids(hits: list[Hit]) -> list[str]:
    return [h.product.product_id for h in hits]


def test_boost_puts_products_with_the_inferred_attributes_first() -> None:
    got = rank(FakeSearch(), explicit=Filters(), infer=lambda _: RED_DRESS, mode="boost", top_k=5)
    assert ids(got.hits)[:2] == ["d", "a"]  # both red dresses, in vector order
    assert ids(got.hits)[2:] == ["c", "b", "e"]  # then one attribute (0.8 + colour, 0.65 + category), then none
    a = next(h for h in got.hits if h.product.product_id == "a")
    assert a.score == 0.5 + WEIGHTS["category"] + WEIGHTS["color"]
    assert {b["attribute"] for b in a.explain["boosts"]} == {"category", "color"}
    assert a.explain["vector"] == {"text": 0.5} and a.explain["base_score"] == 0.5


def test_off_is_the_plain_vector_ranking() -> None:
    got = rank(FakeSearch(), explicit=Filters(), infer=lambda _: RED_DRESS, mode="off", top_k=3)
    assert ids(got.hits) == ["e", "c", "b"] and not got.inferred
    assert all(h.explain["boosts"] == [] for h in got.hits)


def test_boost_fetches_the_full_matches_the_pool_lacks() -> None:
    search = FakeSearch()
    inferred = Inferred(categories=("dress",), sizes=("S",))
    got = rank(search, explicit=Filters(), infer=lambda _: inferred, mode="boost", top_k=2)
    assert ids(got.hits)[0] == "d"  # the only full match, though the vector ranks it 4th
    assert search.calls[0][0] == Filters(categories=("dress",), sizes=("S",))
    assert len(search.calls) == 2  # one full match for two places: partial matches fill up


def test_boost_needs_one_search_when_full_matches_fill_the_page() -> None:
    search = FakeSearch()
    got = rank(search, explicit=Filters(), infer=lambda _: RED_DRESS, mode="boost", top_k=2)
    assert ids(got.hits) == ["d", "a"] and len(search.calls) == 1


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
    assert got.relaxed == ["size", "price", "color"] and ids(got.hits) == ["c"]


def test_filter_mode_without_a_shortfall_relaxes_nothing() -> None:
    got = rank(FakeSearch(), explicit=Filters(), infer=lambda _: RED_DRESS, mode="filter", top_k=2)
    assert got.relaxed == [] and ids(got.hits) == ["d", "a"]


def test_reading_more_than_the_page_relaxes_only_for_the_page() -> None:
    """Variant collapsing reads a few times top_k: two red dresses fill a page of two, so
    nothing is relaxed even though ten were read for."""
    got = rank(FakeSearch(), explicit=Filters(), infer=lambda _: RED_DRESS, mode="filter",
               top_k=10, enough=2)
    assert got.relaxed == [] and ids(got.hits) == ["d", "a"]
    assert rank(FakeSearch(), explicit=Filters(), infer=lambda _: RED_DRESS, mode="filter",
                top_k=10).relaxed  # without it, ten wanted: the filters give way


def test_cheap_prefers_lower_prices() -> None:
    hits = FakeSearch()(Filters(categories=("dress",)), 10)
    got = boost(hits, Inferred(cheap=True, why={"cheap": "the words ask for a low price"}))
    weight = {h.product.product_id: h.explain["boosts"][0]["weight"] for h in got}
    assert weight["a"] > weight["d"] > weight["b"] > 0  # 30, 45, 80
    assert weight["a"] == CHEAP_WEIGHT  # the cheapest gets the whole weight
    assert all(h.explain["boosts"][0]["value"] == "cheap" for h in got)


def test_photo_inference_sees_the_pool() -> None:
    seen: list[list[Hit] | None] = []

    def infer(pool: list[Hit] | None) -> Inferred:
        seen.append(pool)
        return Inferred()

    rank(FakeSearch(), explicit=Filters(), infer=infer, mode="filter", top_k=2, needs_pool=True)
    assert seen[0] is not None and len(seen[0]) == 5


def test_cheap_alone_ranks_a_pool_by_price() -> None:
    search = FakeSearch()
    got = rank(search, explicit=Filters(), infer=lambda _: Inferred(cheap=True), mode="boost", top_k=2)
    assert search.calls[0][1] > 2  # more candidates than the page, to find the cheap ones
    assert ids(got.hits)[0] == "e"  # 20: the cheapest, and the best vector score too
