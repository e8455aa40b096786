"""The ONNX model cache on tiny modules (real torch export, real onnxruntime): processes that
export at once leave one whole graph, a graph with other vectors than torch is refused, and a
failure means torch plus one warning. The real models: tests/integration/test_onnx_runtime.py."""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path

import numpy as np
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


def _race(path: Path, barrier, out) -> None:
    barrier.wait()
    try:
        export(tiny(0), path)
        out.put(path.stat().st_ino)  # a second export would rename a new file (new inode) in
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a failure
        out.put(f"error: {exc!r}")


def test_processes_racing_to_export_leave_one_whole_graph(tmp_path: Path) -> None:
    path = tmp_path / "onnx" / "tiny-abc.onnx"
    ctx = multiprocessing.get_context("spawn")  # fork after torch's thread pools can hang
    n = 3
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(path, barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    inodes = [out.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert len(inodes) == n and len(set(inodes)) == 1, inodes  # exported once, by one of them
    assert not str(inodes[0]).startswith("error")
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".lock"]
    got = ort_cache.OnnxGraph(path, num_threads=1).run({"x": EXAMPLE[0].numpy()})
    with torch.inference_mode():
        assert np.allclose(got, tiny(0)(*EXAMPLE).numpy(), atol=1e-6)


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
