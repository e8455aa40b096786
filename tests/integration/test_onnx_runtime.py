"""LOOKALIKE_MODEL_RUNTIME=onnx against torch on the real packaged models and a sample of the
demo catalogue: the same vectors (cosine >= 0.999), chosen by the setting, exported once
into the data dir's model cache and reused from there."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tests.prerequisites import require

require(importlib.util.find_spec("onnxruntime") is not None
        and importlib.util.find_spec("onnx") is not None,
        "onnxruntime and onnx", "pip install -c constraints.txt -e '.[onnx]'")

from lookalike.catalog import demo, load_manifest  # noqa: E402
from lookalike.config import Settings  # noqa: E402
from lookalike.embedding import ImageEmbedder, TextEmbedder  # noqa: E402
from lookalike.images import decode_image  # noqa: E402

MIN_COSINE = 0.999
N_PRODUCTS = 40


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, list[str]]:
    products, errors = load_manifest(demo.build(tmp_path_factory.mktemp("cat"), N_PRODUCTS))
    assert not errors
    images = [decode_image(Path(ref).read_bytes()) for p in products for ref in p.images]
    # Catalogue texts plus shopper-style queries, one long enough to be truncated.
    texts = [p.text() for p in products] + ["red dress", "ankle boots under 50",
                                            "soft cotton " * 80]
    return images, texts


@pytest.fixture(scope="module")
def onnx_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("data"), model_runtime="onnx")


def graphs(settings: Settings) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns
            for p in (settings.resolved_model_cache_dir / "onnx").glob("*.onnx")}


def test_image_vectors_match_torch(sample, onnx_settings: Settings) -> None:
    images, _ = sample
    torch_side = ImageEmbedder.from_settings(Settings(), num_threads=1)
    onnx_side = ImageEmbedder.from_settings(onnx_settings, num_threads=1)
    assert onnx_side.graph is not None and torch_side.graph is None
    a, b = torch_side.embed(images), onnx_side.embed(images)
    assert a.shape == b.shape == (len(images), torch_side.dim) and b.dtype == np.float32
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)  # same L2 normalisation
    cos = (a * b).sum(1)
    assert cos.min() >= MIN_COSINE, cos.min()
    # The Ray Data entry (ingest) goes through the same forward.
    pixels = onnx_side.preprocess(images[:3])
    assert np.allclose(onnx_side({"pixels": pixels})["image_vector"], b[:3], atol=1e-6)
    assert onnx_side.version == torch_side.version + "+onnx"


def test_text_vectors_match_torch(sample, onnx_settings: Settings) -> None:
    _, texts = sample
    torch_side = TextEmbedder.from_settings(Settings(), num_threads=1)
    onnx_side = TextEmbedder.from_settings(onnx_settings, num_threads=1)
    a = torch_side.embed(texts)
    b = onnx_side.embed(texts)
    one = onnx_side.embed(texts[:1])  # batch of one: no padding, other sequence length
    assert a.shape == b.shape and b.dtype == np.float32
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cos = (a * b).sum(1)
    assert cos.min() >= MIN_COSINE, cos.min()
    assert float(one[0] @ a[0]) >= MIN_COSINE
    assert onnx_side.version == torch_side.version + "+onnx"


def test_the_graphs_are_exported_once_into_the_cache(sample, onnx_settings: Settings) -> None:
    before = graphs(onnx_settings)  # written by the tests above (module-scoped data dir)
    assert sorted(name.split("-")[0] for name in before) == ["image", "text"]
    ImageEmbedder.from_settings(onnx_settings, num_threads=1)
    TextEmbedder.from_settings(onnx_settings, num_threads=1)
    assert graphs(onnx_settings) == before  # loaded, not exported again


def test_text_int8_is_its_own_graph_and_version(sample, tmp_path: Path) -> None:
    _, texts = sample
    settings = Settings(data_dir=tmp_path, model_runtime="onnx", text_quantize="int8")
    fp32 = TextEmbedder.from_settings(settings.model_copy(update={"text_quantize": "none"}))
    int8 = TextEmbedder.from_settings(settings)
    assert int8.version.endswith("+onnx-int8") and int8.version != fp32.version
    assert len(graphs(settings)) == 2
    image = ImageEmbedder.from_settings(settings)  # text_quantize leaves the image model fp32
    assert image.version.endswith("+onnx") and len(graphs(settings)) == 3
    # Close, but not the same vectors: why int8 has its own version (resume re-embeds).
    cos = (fp32.embed(texts) * int8.embed(texts)).sum(1)
    assert 0.8 < cos.mean() < 0.99999
