"""Processes racing to export one ONNX graph leave one whole graph (the model cache's file lock
and atomic rename; tiny module, real torch export, real onnxruntime). Here, not in the unit
tier, because it starts three interpreters that each import torch."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import torch

from lookalike.embedding import onnx_runtime as ort_cache
from tests.unit.test_onnx_runtime import EXAMPLE, export, tiny


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
