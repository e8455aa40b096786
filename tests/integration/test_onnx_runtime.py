"""ONNX Runtime, the default CPU runtime, against torch on the real packaged models and a sample
of the demo catalogue: the same vectors (cosine >= 0.999) and model version, chosen by default,
exported once into the model cache and reused from there, and torch (with one warning) when the
cached graph is broken."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from lookalike.catalog import demo, load_manifest
from lookalike.config import Settings
from lookalike.embedding import ImageEmbedder, TextEmbedder
from lookalike.images import decode_image

pytestmark = pytest.mark.weights  # the packaged models, exported

MIN_COSINE = 0.999
N_PRODUCTS = 40
TORCH = {"model_runtime": "torch"}


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
def default_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The defaults, with a model cache of this module's own: these tests see the export
    (the rest of the suite shares one cache, tests/conftest.py)."""
    return Settings(data_dir=tmp_path_factory.mktemp("data"),
                    model_cache_dir=tmp_path_factory.mktemp("models"))


def graphs(settings: Settings) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns
            for p in (settings.resolved_model_cache_dir / "onnx").glob("*.onnx")}


def test_the_default_runtime_on_the_cpu_is_onnx_and_gives_torchs_image_vectors(
        sample, default_settings: Settings) -> None:
    images, _ = sample
    torch_side = ImageEmbedder.from_settings(Settings(**TORCH), num_threads=1)
    onnx_side = ImageEmbedder.from_settings(default_settings, num_threads=1)
    assert onnx_side.graph is not None and onnx_side.runtime == "onnx"
    assert torch_side.graph is None and torch_side.runtime == "torch"
    a, b = torch_side.embed(images), onnx_side.embed(images)
    assert a.shape == b.shape == (len(images), torch_side.dim) and b.dtype == np.float32
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)  # same L2 normalisation
    cos = (a * b).sum(1)
    assert cos.min() >= MIN_COSINE, cos.min()
    # The Ray Data entry (ingest) goes through the same forward.
    pixels = onnx_side.preprocess(images[:3])
    assert np.allclose(onnx_side({"pixels": pixels})["image_vector"], b[:3], atol=1e-6)
    # Torch's vectors, so torch's model version: a replica that fell back serves the same
    # collection, and an upgrade to this default re-embeds nothing.
    assert onnx_side.version == torch_side.version


def test_the_default_runtime_gives_torchs_text_vectors(sample, default_settings: Settings) -> None:
    _, texts = sample
    torch_side = TextEmbedder.from_settings(Settings(**TORCH), num_threads=1)
    onnx_side = TextEmbedder.from_settings(default_settings, num_threads=1)
    assert onnx_side.runtime == "onnx"
    a = torch_side.embed(texts)
    b = onnx_side.embed(texts)
    one = onnx_side.embed(texts[:1])  # batch of one: no padding, other sequence length
    assert a.shape == b.shape and b.dtype == np.float32
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cos = (a * b).sum(1)
    assert cos.min() >= MIN_COSINE, cos.min()
    assert float(one[0] @ a[0]) >= MIN_COSINE
    assert np.allclose(onnx_side({"text": np.array(texts[:2])})["text_vector"], b[:2], atol=1e-6)
    assert onnx_side.version == torch_side.version


def test_the_graphs_are_exported_once_into_the_cache(sample, default_settings: Settings) -> None:
    before = graphs(default_settings)  # written by the tests above (module-scoped cache)
    assert sorted(name.split("-")[0] for name in before) == ["image", "text"]
    ImageEmbedder.from_settings(default_settings, num_threads=1)
    TextEmbedder.from_settings(default_settings, num_threads=1)
    assert graphs(default_settings) == before  # loaded, not exported again
    leftovers = [p.name for p in (default_settings.resolved_model_cache_dir / "onnx").iterdir()
                 if not p.name.endswith((".onnx", ".lock"))]
    assert leftovers == []  # no temporary files


@pytest.mark.parametrize("embedder", [ImageEmbedder, TextEmbedder])
def test_a_broken_cached_graph_runs_torch_with_one_warning(
        sample, default_settings: Settings, tmp_path: Path, embedder: type,
        caplog: pytest.LogCaptureFixture) -> None:
    role = "image" if embedder is ImageEmbedder else "text"
    shutil.copytree(default_settings.resolved_model_cache_dir, tmp_path, dirs_exist_ok=True)
    broken = [p for p in (tmp_path / "onnx").glob(f"{role}-*.onnx")]
    assert len(broken) == 1
    broken[0].write_bytes(broken[0].read_bytes()[:1000])  # a truncated file
    settings = default_settings.model_copy(update={"model_cache_dir": tmp_path})
    with caplog.at_level(logging.WARNING, logger="lookalike.embedding.onnx_runtime"):
        fallen = embedder.from_settings(settings, num_threads=1)
    warnings = [r for r in caplog.records
                if r.name == "lookalike.embedding.onnx_runtime" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and f"the {role} model" in warnings[0].getMessage()
    assert fallen.graph is None and fallen.runtime == "torch"
    torch_side = embedder.from_settings(Settings(**TORCH), num_threads=1)
    assert fallen.version == torch_side.version
    images, texts = sample
    batch = images[:2] if role == "image" else texts[:2]
    assert np.array_equal(fallen.embed(batch), torch_side.embed(batch))


def test_text_int8_is_its_own_graph_and_version(sample, default_settings: Settings,
                                                tmp_path: Path) -> None:
    _, texts = sample
    shutil.copytree(default_settings.resolved_model_cache_dir, tmp_path / "models")
    settings = Settings(data_dir=tmp_path, model_cache_dir=tmp_path / "models",
                        text_quantize="int8")
    fp32 = TextEmbedder.from_settings(settings.model_copy(update={"text_quantize": "none"}))
    copied = graphs(settings)
    int8 = TextEmbedder.from_settings(settings)
    assert int8.version.endswith("+onnx-int8") and int8.version != fp32.version
    added = set(graphs(settings)) - set(copied)
    assert int8.runtime == "onnx-int8" and len(added) == 1 and added.pop().startswith("text-")
    # text_quantize leaves the image model fp32: the same graph as without it.
    image = ImageEmbedder.from_settings(settings)
    fp32_image = ImageEmbedder.from_settings(settings.model_copy(update={"text_quantize": "none"}))
    assert image.runtime == "onnx" and image.graph.path == fp32_image.graph.path
    # Close, but not the same vectors: why int8 has its own version (resume re-embeds).
    cos = (fp32.embed(texts) * int8.embed(texts)).sum(1)
    assert 0.8 < cos.mean() < 0.99999
