import pytest

from lookalike.api_params import (ApiError, make_filters, parse_infer, parse_top_k, parse_weight,
                                  split_values)


def test_split_values_accepts_repeats_and_commas() -> None:
    assert split_values(["red,blue", "green", " red "]) == ("red", "blue", "green")


@pytest.mark.parametrize("value,expected", [(None, 10), ("5", 5), (100, 100)])
def test_top_k(value: object, expected: int) -> None:
    assert parse_top_k(value, 100) == expected


@pytest.mark.parametrize("value", ["0", "101", "x", "2.5"])
def test_top_k_rejects(value: str) -> None:
    with pytest.raises(ApiError) as exc:
        parse_top_k(value, 100)
    assert exc.value.status == 422


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan", "abc"])
def test_weight_rejects(value: str) -> None:
    with pytest.raises(ApiError):
        parse_weight(value)


def test_make_filters() -> None:
    f = make_filters(categories=["dress"], colors="red,blue", sizes=None, min_price="10", max_price=None)
    assert (f.categories, f.colors, f.min_price) == (("dress",), ("red", "blue"), 10.0)
    with pytest.raises(ApiError):
        make_filters(categories=None, colors=None, sizes=None, min_price=5, max_price=1)
    with pytest.raises(ApiError):
        make_filters(categories=[{"x": 1}], colors=None, sizes=None, min_price=None, max_price=None)


@pytest.mark.parametrize(("value", "want"), [(None, "boost"), ("", "boost"), ("boost", "boost"),
                                             ("filter", "filter"), ("off", "off")])
def test_parse_infer(value: object, want: str) -> None:
    assert parse_infer(value) == want


@pytest.mark.parametrize("value", ["Boost", "on", 1, ["off"], {"x": 1}])
def test_parse_infer_refuses_other_values(value: object) -> None:
    with pytest.raises(ApiError) as err:
        parse_infer(value)
    assert err.value.status == 422 and err.value.code == "invalid_parameter"
