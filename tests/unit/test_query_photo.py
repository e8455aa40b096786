"""Photo colour and category inference on rendered demo articles and plain pictures."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lookalike.catalog.demo import COLORS, load_source, render
from lookalike.query.photo import _to_lab, dominant_rgb, photo_color, vote_category
from lookalike.query.vocabulary import Vocabulary

SHADES = Vocabulary.from_values(categories=[], colors=list(COLORS), sizes=[]).shades


@pytest.mark.parametrize("color", list(COLORS))
def test_rendered_articles_are_named_after_their_ink(color: str) -> None:
    images, _ = load_source(12, split="test", source="vendored")
    named = [photo_color(render(a, COLORS[color]), SHADES) for a in images]
    assert named.count(color) >= 11, named


def test_a_dark_background_is_ignored_too() -> None:
    px = np.zeros((100, 100, 3), np.uint8)
    px[30:70, 30:70] = (30, 70, 200)
    assert photo_color(Image.fromarray(px), SHADES) == "blue"


def test_a_blank_photo_has_no_colour() -> None:
    assert dominant_rgb(Image.new("RGB", (80, 80), (246, 244, 240))) is None


def test_no_catalogue_colours_no_inference() -> None:
    assert photo_color(render(load_source(1, split="test", source="vendored")[0][0], COLORS["red"]), {}) is None


@pytest.mark.parametrize(("neighbours", "want"), [
    ([("bag", 0.9), ("bag", 0.8), ("coat", 0.7)], "bag"),
    ([("bag", 0.5), ("coat", 0.5)], "bag"),  # a tie still holds half the weight: the first wins
    ([("bag", 0.4), ("coat", 0.35), ("dress", 0.3)], None),
    ([], None),
    ([("", 0.9)], None),
    ([("dress", -0.2), ("dress", -0.1)], None),
    ([("coat", 0.99), ("bag", 0.9), ("bag", 0.9), ("bag", 0.9)], "coat"),  # the product itself
])
def test_vote_category(neighbours: list[tuple[str, float]], want: str | None) -> None:
    assert vote_category(neighbours) == want


# Every branch of the conversion: sRGB's linear toe (channel <= 10), Lab's linear toe (L < 8),
# each primary, white and grey. The reference is scikit-image's (D65, exact constants); ours
# rounds them (7.787, 1.089): 0.02 apart at most, so 0.05 (a JND is about 2.3) still catches a
# wrong constant.
@pytest.mark.parametrize("rgb", [(255, 255, 255), (119, 119, 119), (255, 0, 0), (0, 255, 0),
                                 (0, 0, 255), (8, 8, 8), (25, 20, 30), (3, 200, 90)])
def test_lab_is_cie_lab(rgb: tuple[int, int, int]) -> None:
    from skimage.color import rgb2lab

    want = rgb2lab(np.asarray([[rgb]], np.float64) / 255.0)[0, 0]
    assert _to_lab(np.asarray(rgb, np.float64)) == pytest.approx(want, abs=0.05)
