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
