"""Variant groups' pure logic: hashes as vectors, the pair rule, labels, collapsing."""

from __future__ import annotations

import numpy as np
from PIL import Image

from lookalike.catalog.product import Product
from lookalike.store.base import Hit
from lookalike.variants import (
    Photo,
    Thresholds,
    assign,
    collapse,
    explicit_group,
    hamming,
    is_variant,
    phash_hex,
    phash_vector,
    vector_phash,
)

# The rule's logic at fixed thresholds (the tuned defaults live in Settings and may move).
T = Thresholds(same_photo_hash=2, same_photo_cosine=0.6, reshoot_cosine=0.88, reshoot_hash=20)


def unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def test_hash_vectors_turn_hamming_into_cosine_and_back() -> None:
    a, b = "ffff0000ffff0000", "ffff0000ffff00ff"  # 8 bits apart
    va, vb = np.asarray(phash_vector(a)), np.asarray(phash_vector(b))
    assert np.isclose(np.linalg.norm(va), 1.0)
    assert np.isclose(va @ vb, 1 - hamming(a, b) / 32) and hamming(a, b) == 8
    assert vector_phash(phash_vector(a)) == a


def test_tinted_copies_of_one_shape_hash_alike_and_another_shape_does_not() -> None:
    shape = np.zeros((64, 64), dtype=np.float32)
    shape[8:56, 20:44] = 1.0
    other = np.zeros((64, 64), dtype=np.float32)
    other[30:40, 4:60] = 1.0

    def tint(mask: np.ndarray, rgb: tuple[int, int, int]) -> Image.Image:
        bg = np.array([246, 244, 240], dtype=np.float32)
        img = bg * (1 - mask[..., None]) + np.array(rgb, dtype=np.float32) * mask[..., None]
        return Image.fromarray(img.astype(np.uint8))

    red, blue = phash_hex(tint(shape, (200, 30, 40))), phash_hex(tint(shape, (30, 70, 200)))
    assert hamming(red, blue) <= T.same_photo_hash
    assert hamming(red, phash_hex(tint(other, (200, 30, 40)))) > 4 * T.same_photo_hash


def test_pair_rule_same_picture_or_reshoot_within_a_category() -> None:
    v = unit([1, 0, 0])
    near = unit([1, 0.3, 0])  # cosine ~0.96
    loose = unit([1, 1.2, 0])  # cosine ~0.64
    base = Photo("a", "dress", "0" * 16, v)
    assert is_variant(base, Photo("b", "dress", "0000000000000003", loose), T)  # 2 bits
    assert not is_variant(base, Photo("b", "dress", "000000000000000f", loose), T)  # 4 bits
    assert is_variant(base, Photo("b", "dress", "00000000000fffff", near), T)  # 20 bits, re-shoot
    assert not is_variant(base, Photo("b", "dress", "000000000fffffff", near), T)  # 28 bits
    assert not is_variant(base, Photo("b", "coat", "0" * 16, v), T)  # another category
    assert not is_variant(base, Photo("a", "dress", "0" * 16, v), T)  # itself


def test_assign_new_group_join_merge_and_leave() -> None:
    # a new group of fresh products gets a label no product id can have
    labels, merged = assign({"a", "b", "c"}, {}, [("a", "b")])
    assert labels["a"] == labels["b"] and labels["a"].startswith("~") and labels["c"] == "c"
    assert merged == {}
    # a fresh product joins an existing group without relabelling it
    labels, merged = assign({"d"}, {"a": "~g1"}, [("d", "a")])
    assert labels == {"d": "~g1"} and merged == {}
    # a fresh product bridging two groups merges them into the smaller label
    labels, merged = assign({"d"}, {"a": "~g1", "x": "~g2"}, [("d", "a"), ("d", "x")])
    assert labels["d"] == "~g1" and labels["x"] == "~g1" and merged == {"~g2": "~g1"}
    # a matched ungrouped product gets the group's label too
    labels, _ = assign({"d"}, {"s": "s"}, [("d", "s")])
    assert labels["d"] == labels["s"] and labels["d"].startswith("~")
    # a fresh product that matches nothing any more is its own group again
    labels, _ = assign({"a"}, {}, [])
    assert labels == {"a": "a"}


def test_explicit_group_comes_from_the_attributes() -> None:
    assert explicit_group({"group_id": " tee-1 "}) == "tee-1"
    assert explicit_group({"brand": "x"}) == "" and explicit_group(None) == ""


def hit(pid: str, group: str = "") -> Hit:
    return Hit(Product(pid), 1.0, group_id=group)


def test_collapse_keeps_the_best_ranked_member_of_each_group() -> None:
    hits = [hit("a", "~g"), hit("b", "~g"), hit("c"), hit("d", "~h"), hit("e", "~g"), hit("f")]
    assert [h.product.product_id for h in collapse(hits, 10)] == ["a", "c", "d", "f"]
    assert [h.product.product_id for h in collapse(hits, 2)] == ["a", "c"]
    # no label: the product is its own group
    assert [h.product.product_id for h in collapse([hit("a"), hit("a2", "a")], 5)] == ["a"]


def test_the_thresholds_defaults_are_the_settings_defaults() -> None:
    from lookalike.config import Settings

    assert Thresholds() == Thresholds.from_settings(Settings())


def test_the_pair_rule_thresholds_are_inclusive() -> None:
    # exactly at each threshold is a variant: 0.5 and 0.875 are exact in float32
    t = Thresholds(same_photo_hash=1, same_photo_cosine=0.5, reshoot_cosine=0.875, reshoot_hash=3)
    base = Photo("a", "dress", "0" * 16, np.array([1.0, 0.0], np.float32))
    at_same = np.array([0.5, 0.5], np.float32)
    at_reshoot = np.array([0.875, 0.0], np.float32)
    assert is_variant(base, Photo("b", "dress", "0000000000000001", at_same), t)
    assert is_variant(base, Photo("b", "dress", "0000000000000007", at_reshoot), t)
    assert not is_variant(base, Photo("b", "dress", "000000000000000f", at_reshoot), t)


def test_a_product_without_a_hash_has_all_bits_clear() -> None:
    assert phash_vector("") == [-0.125] * 64 == phash_vector("0" * 16)


def test_fresh_products_reaching_one_group_apart_all_join_it() -> None:
    # d bridges ~a and ~b (merged into ~a); e reaches ~b only, through another member: e must
    # get ~a too, or the merge would leave it under a label that no longer exists
    existing = {"q": "~a", "s": "~b", "t": "~b"}
    labels, merged = assign({"d", "e"}, existing, [("d", "q"), ("d", "s"), ("e", "t")])
    assert merged == {"~b": "~a"}
    assert labels["d"] == labels["e"] == labels["s"] == labels["t"] == "~a"


def test_every_fresh_product_gets_a_label_whatever_the_order_of_groups() -> None:
    singles = [f"s{i}" for i in range(10)]
    pairs = [(f"a{i}", f"b{i}") for i in range(10)]
    labels, _ = assign({*singles, *(p for pair in pairs for p in pair)}, {}, pairs)
    assert {s: labels[s] for s in singles} == {s: s for s in singles}
    assert all(labels[a] == labels[b] != a for a, b in pairs)


def test_thresholds_come_from_the_matching_settings() -> None:
    from types import SimpleNamespace

    s = SimpleNamespace(variant_hash_distance=1, variant_min_cosine=0.5,
                        variant_reshoot_cosine=0.9, variant_reshoot_hash_distance=7,
                        variant_neighbours=3)
    assert Thresholds.from_settings(s) == Thresholds(1, 0.5, 0.9, 7, 3)
