"""CLIP embedders on a tiny random CLIP saved to a tmp dir: the real transformers code path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from lookalike.config import Settings
from lookalike.embedding import ModelUnavailableError
from lookalike.embedding.clip import ClipImageEmbedder, ClipImagePreprocessor, ClipTextEmbedder
from lookalike.embedding.factory import image_embedder, text_embedder
from tests.tiny_clip import PROJECTION_DIM, build_tiny_clip

PHOTOS = [Image.fromarray(skimage.data.coffee()), Image.fromarray(skimage.data.chelsea()),
          Image.new("L", (40, 90), 200)]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("clip"))


def test_settings_pick_clip_for_both_roles(clip_dir: Path) -> None:
    s = Settings(clip_model=str(clip_dir))
    ie, te = image_embedder(s), text_embedder(s)
    assert isinstance(ie, ClipImageEmbedder) and isinstance(te, ClipTextEmbedder)
    assert ie.dim == te.dim == PROJECTION_DIM and ie.cross_modal and te.cross_modal
    # No resize for the router or the ingest's prepare stage to do: CLIP's processor does its own.
    assert isinstance(ie.preprocess, ClipImagePreprocessor) and ie.preprocess.resize is None


def test_image_vectors_are_normalised_and_match_the_ray_data_path(clip_dir: Path) -> None:
    ie = ClipImageEmbedder(str(clip_dir))
    direct = ie.embed(PHOTOS)
    assert direct.shape == (3, PROJECTION_DIM) and direct.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(direct, axis=1), 1.0, atol=1e-5)
    # The ingest path: prepare sends the decoded RGB pixels, the image stage runs the embedder's
    # preprocessing and its __call__.
    pixels = ie.preprocess([np.asarray(p.convert("RGB"), dtype=np.uint8) for p in PHOTOS])
    assert pixels.shape[1:] == ie.preprocess.input_size
    via_batch = ie({"pixels": np.asarray(list(pixels), dtype=object)})["image_vector"]
    np.testing.assert_allclose(via_batch, direct, atol=1e-5)
    assert not np.allclose(direct[0], direct[1])  # different photos, different vectors


def test_text_vectors_share_the_image_space(clip_dir: Path) -> None:
    te, ie = ClipTextEmbedder(str(clip_dir)), ClipImageEmbedder(str(clip_dir))
    vecs = te.embed(["red summer dress", "black leather boots " * 40])  # the 2nd is truncated
    assert vecs.shape == (2, PROJECTION_DIM)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(te({"text": np.array(["red summer dress"])})["text_vector"][0],
                               vecs[0], atol=1e-5)
    # One space: the cosine of a text and a photo is a plain dot product of unit vectors.
    assert -1.0 <= float(vecs[0] @ ie.embed(PHOTOS[:1])[0]) <= 1.0
    assert te.version != ie.version and te.version.startswith(f"clip:{clip_dir}:text")


def test_versions_follow_the_weights(clip_dir: Path, tmp_path: Path) -> None:
    other = build_tiny_clip(tmp_path / "other", seed=1)
    assert ClipImageEmbedder(str(clip_dir)).version.split("@")[1] != \
        ClipImageEmbedder(str(other)).version.split("@")[1]
    assert ClipTextEmbedder(str(clip_dir)).version == ClipTextEmbedder(str(clip_dir)).version


def test_missing_clip_dir_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="LOOKALIKE_CLIP_MODEL"):
        ClipImageEmbedder(str(tmp_path / "nothing-here"))
