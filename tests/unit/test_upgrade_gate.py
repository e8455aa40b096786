"""The upgrade's pure decisions: the quality gate and the collection names."""

from __future__ import annotations

from lookalike.store import aliases
from lookalike.upgrade import gate


def figures(text: float, image: float, ndcg: float) -> dict[str, dict[str, float]]:
    return {"text": {"p@10": text}, "image": {"p@10": image, "ndcg@10": ndcg}}


def test_equal_or_better_figures_pass() -> None:
    assert gate(figures(0.8, 0.6, 0.5), figures(0.8, 0.6, 0.5), 0.0) == []
    assert gate(figures(0.8, 0.6, 0.5), figures(0.9, 0.7, 0.5), 0.0) == []


def test_any_worse_figure_refuses_and_is_named() -> None:
    assert gate(figures(0.8, 0.6, 0.5), figures(0.8, 0.59, 0.5), 0.0) == [
        "image p@10 0.6000 -> 0.5900"]
    assert len(gate(figures(0.8, 0.6, 0.5), figures(0.7, 0.2, 0.1), 0.0)) == 3


def test_tolerance_lets_a_small_drop_pass() -> None:
    assert gate(figures(0.8, 0.6, 0.5), figures(0.79, 0.6, 0.5), 0.02) == []
    assert gate(figures(0.8, 0.6, 0.5), figures(0.75, 0.6, 0.5), 0.02) != []


def test_a_figure_missing_on_either_side_is_not_compared() -> None:
    assert gate({"image": {"p@10": 0.6}}, figures(0.1, 0.6, 0.1), 0.0) == []


class Listing:
    """Only list_collections: what next_collection_name reads."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def list_collections(self) -> list[str]:
        return self.names


def test_collection_names_carry_the_model_and_count_up() -> None:
    a = aliases.collection_name("products", "model-a", 1)
    assert a.startswith("products_") and a.endswith("_g1")
    assert aliases.collection_name("products", "model-b", 1) != a
    # The next generation counts past every collection of this alias, whatever its model.
    b3 = aliases.collection_name("products", "model-b", 3)
    others = ["products_eval", "productsx_0123456789_g9", b3, a]
    assert aliases.next_collection_name(Listing(others), "products", "model-a").endswith("_g4")
    assert aliases.next_collection_name(Listing([]), "products", "m").endswith("_g1")


def test_retired_lists_only_this_alias_s_model_collections() -> None:
    a, b = aliases.collection_name("products", "m", 1), aliases.collection_name("products", "n", 2)
    listing = Listing([a, b, "products_eval", "other_0123456789_g1"])
    listing.has_collection = lambda name: False  # type: ignore[attr-defined]  # no alias yet
    assert aliases.retired(listing, "products") == sorted([a, b])
