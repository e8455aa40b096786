from lookalike.store.base import Filters
from lookalike.store.milvus import filter_expression


def test_empty_filters_give_no_expression() -> None:
    assert filter_expression(Filters()) == ""


def test_typed_values_are_quoted_not_pasted() -> None:
    expr = filter_expression(Filters(categories=("dress",), colors=('red" or 1==1 or "',)))
    assert expr == 'category in ["dress"] and color in ["red\\" or 1==1 or \\""]'


def test_price_range_and_exclusion() -> None:
    expr = filter_expression(Filters(sizes=("M", "L"), min_price=10, max_price=20.5), ["p1"])
    assert expr == ('size in ["M", "L"] and price >= 10.0 and price <= 20.5 and price >= 0 '
                    'and not (product_id in ["p1"])')
