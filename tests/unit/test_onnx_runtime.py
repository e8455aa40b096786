"""The ONNX model cache on tiny modules (real torch export, real onnxruntime): a graph with other
vectors than torch is refused, and a failure means torch plus one warning. Processes racing to
export: tests/integration/test_onnx_export_race.py; the real models:
tests/integration/test_onnx_runtime.py."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from lookalike.config import Settings
from lookalike.embedding import onnx_runtime as ort_cache

EXAMPLE = (torch.arange(16, dtype=torch.float32).reshape(2, 8) / 16,)


def tiny(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.Tanh(), torch.nn.Linear(6, 4))


def export(module: torch.nn.Module, path: Path) -> None:
    ort_cache._export_once(module, EXAMPLE, input_names=["x"], dynamic_axes={"x": {0: "batch"}},
                           path=path, quantize="none")


def test_a_graph_with_other_vectors_than_torch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    export(tiny(0), path)
    ort_cache._check_graph(tiny(0), EXAMPLE, path, ["x"])  # its own module: passes
    with pytest.raises(ValueError, match="not torch's"):
        ort_cache._check_graph(tiny(1), EXAMPLE, path, ["x"])


def test_a_failed_export_means_torch_and_one_warning(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    not_a_dir = tmp_path / "cache"
    not_a_dir.write_text("a file where the model cache should be")
    with caplog.at_level(logging.WARNING, logger=ort_cache.__name__):
        graph = ort_cache.graph_or_torch(lambda: export(tiny(0), not_a_dir / "onnx" / "t.onnx"),
                                         role="image")
    assert graph is None
    warnings = [r for r in caplog.records if r.name == ort_cache.__name__]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "running it on torch" in warnings[0].getMessage()


@pytest.mark.parametrize(("update", "image", "text"), [
    ({}, "", ""),  # auto on the CPU: fp32 ONNX, torch's model version
    ({"text_quantize": "int8"}, "", "+onnx-int8"),
    ({"model_runtime": "torch"}, None, None),
    ({"device": "cuda"}, None, None),  # auto on CUDA: torch
])
def test_options_follow_the_settings(update: dict, image: str | None, text: str | None) -> None:
    settings = Settings(**update)
    tags = [None if o is None else o.tag
            for o in (ort_cache.options_from_settings(settings, role) for role in ("image", "text"))]
    assert tags == [image, text]
