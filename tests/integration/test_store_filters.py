"""Filter expressions run on a real collection (tests/unit/test_filters.py compares their text
only): for random products and random Filters, the products the store selects with the
expression are exactly those the Python predicate accepts. The predicate is the one the
ranking properties' fake store uses (tests/unit/test_ranking_properties.py), so this also
proves that fake is congruent with Milvus. Values include quotes, backslashes and non-ASCII
text: the expression is built from typed values and must never be broken by them."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lookalike.catalog import Product
from lookalike.store import Filters, MilvusStore, StoredProduct
from lookalike.store.milvus import filter_expression
from tests.integration.conftest import StoreFactory
from tests.unit.test_ranking_properties import keeps

IMG, TXT = 4, 4
# Few values, so filters and products meet; odd ones, so quoting is exercised.
words = st.sampled_from(["dress", "bag", "red", "M", "", 'a"b', "a\\b", "é", "x' or 1==1"])
prices = st.one_of(st.none(), st.sampled_from([0.0, 9.5, 10.0, 20.5, 40.83]),
                   st.floats(0, 1000, allow_nan=False))
products = st.tuples(words, words, words, prices)  # category, colour, size, price
filters = st.builds(Filters, categories=st.lists(words, max_size=3).map(tuple),
                    colors=st.lists(words, max_size=3).map(tuple),
                    sizes=st.lists(words, max_size=3).map(tuple),
                    min_price=st.one_of(st.none(), prices.filter(lambda p: p is not None)),
                    max_price=st.one_of(st.none(), prices.filter(lambda p: p is not None)))


def stored(p: Product) -> StoredProduct:
    vec = np.ones(IMG, np.float32) / 2  # unit length; the vectors play no part here
    return StoredProduct(p, vec[None, :], np.ones(TXT, np.float32) / 2, "h", "v")


def selected(store: MilvusStore, expr: str) -> set[str]:
    rows = store.client.query(store.collection, filter=expr, output_fields=["product_id"],
                              consistency_level="Strong")
    return {r["product_id"] for r in rows}


def test_the_store_selects_exactly_what_the_predicate_keeps(store_factory: StoreFactory) -> None:
    store = store_factory(IMG, TXT)
    everything: dict[str, Product] = {}  # every example's products stay: the check covers all
    ids = (f"p{n}" for n in itertools.count())
    checked = []

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(new=st.lists(products, min_size=1, max_size=6), f=filters)
    def check(new: list[tuple[str, str, str, float | None]], f: Filters) -> None:
        assume(f)  # no filters: no expression, nothing to run
        made = [Product(next(ids), category=c, color=colour, size=size, price=price,
                        images=("/img/x.jpg",)) for c, colour, size, price in new]
        store.upsert([stored(p) for p in made])
        everything.update((p.product_id, p) for p in made)
        want = {pid for pid, p in everything.items() if keeps(p, f)}
        assert selected(store, filter_expression(f)) == want, filter_expression(f)
        checked.append(f)

    check()
    assert len(checked) >= 50  # the examples ran (Hypothesis runs 60)
