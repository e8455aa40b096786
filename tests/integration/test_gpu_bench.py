"""bench/gpu_embedder.py's code path on the CPU, tiny sizes, with Ray, pymilvus and pydantic
made unimportable: the GPU machine it is written for has none of them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.checks import all_of

pytestmark = pytest.mark.weights  # its child loads the packaged models (the hook sees no child)
ROOT = Path(__file__).resolve().parents[2]

# Runs the script as `python bench/gpu_embedder.py ...` would, after blocking the imports.
RUNNER = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ray", "pymilvus", "pydantic", "pydantic_settings"):
            raise ImportError(f"{name} is not on the GPU machine")
sys.meta_path.insert(0, Block())
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_gpu_bench_runs_on_cpu_without_ray_milvus_pydantic(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(ROOT / "bench" / "gpu_embedder.py"), "--device", "cpu",
         "--batch-sizes", "1,2", "--text-batch-sizes", "1,3", "--iters", "1", "--warmup", "1",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert json.loads(proc.stdout) == result
    assert result["machine"]["device"] == "cpu"
    image = result["image"]
    assert [r["batch"] for r in image["results"]] == [1, 2] and image["dim"] == 1280
    assert image["dtype"] == "torch.float32"  # fp16 only on CUDA
    all_of(image["results"], lambda r: r["forward_img_per_s"] > 0 and r["end_to_end_img_per_s"] > 0)
    text = result["text"]
    assert [r["batch"] for r in text["results"]] == [1, 3] and text["dim"] == 384
    all_of(text["results"], lambda r: r["texts_per_s"] > 0)


def test_fp16_copy_of_the_text_model_is_picked_when_the_wheel_is_absent(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from bench.gpu_embedder import pick_text_model
    finally:
        sys.path.remove(str(ROOT))
    assert pick_text_model("packaged", None) == "packaged"
    assert pick_text_model("/some/dir", tmp_path) == "/some/dir"
    assert pick_text_model("auto", tmp_path) == "packaged"  # installed in this venv
