"""P7: the embedders on torch vs ONNX Runtime (fp32, and int8 dynamic quantization), side by
side in one process and one run, at the same thread counts.

    .venv/bin/python bench/p7_runtime.py [--threads 1 2] [--rounds 3] [--products 64]

Image: images/s of the model on preprocessed pixels (preprocessing is the same code for every
runtime) at batch 1, 2, 4, 8, 16. Text: texts/s at batch 1, 16, 64 (tokenizing included: the
same tokenizer for every runtime). Runtimes are interleaved round by round and each figure is
the median over rounds, so a neighbour's load spikes hit all runtimes alike. Also the cosine of
each runtime's vectors against torch's on the sample. Writes bench/results/p7_runtime.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from bench.common import machine, write_result
from lookalike.catalog import demo, load_manifest
from lookalike.embedding import ImageEmbedder, TextEmbedder
from lookalike.embedding.onnx_runtime import OnnxOptions
from lookalike.images import decode_image

IMAGE_BATCHES = (1, 2, 4, 8, 16)
TEXT_BATCHES = (1, 16, 64)


def per_second(fn, items: list, bs: int, min_items: int) -> float:
    fn(items[:bs])  # warm this shape
    start, n = time.perf_counter(), 0
    while n < min_items:
        fn([items[(n + i) % len(items)] for i in range(bs)])
        n += bs
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--products", type=int, default=64)
    ap.add_argument("--image-items", type=int, default=48, help="images per measurement")
    ap.add_argument("--text-items", type=int, default=128, help="texts per measurement")
    ap.add_argument("--runtimes", nargs="+", default=["torch", "onnx", "onnx-int8"])
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="p7-") as tmp:
        out = Path(tmp) / "demo"
        demo.build(out, args.products, seed=7)
        products, _ = load_manifest(out / "manifest.jsonl")
        images = [decode_image(Path(r).read_bytes()) for p in products for r in p.images]
        texts = [p.text() for p in products]
        cache = Path(tmp) / "models"  # exported here, once per runtime (export time not measured)

        def make(runtime: str, threads: int) -> tuple[ImageEmbedder, TextEmbedder]:
            onnx = None if runtime == "torch" else OnnxOptions(
                cache, quantize="int8" if runtime.endswith("int8") else "none")
            pair = (ImageEmbedder(num_threads=threads, onnx=onnx),
                    TextEmbedder(num_threads=threads, onnx=onnx))
            # A failed export falls back to torch with a warning; here it would be mislabelled.
            if onnx is not None and any(e.graph is None for e in pair):
                raise SystemExit(f"{runtime}: the ONNX graph did not load (see the warning)")
            return pair

        results: dict = {"machine": machine(), "products": len(products), "images": len(images),
                         "rounds": args.rounds, "by_threads": {}}
        for threads in args.threads:
            embedders = {rt: make(rt, threads) for rt in args.runtimes}
            pixels = embedders[args.runtimes[0]][0].preprocess(images)
            pix_list = list(pixels)
            img: dict[str, dict[int, list[float]]] = {rt: {b: [] for b in IMAGE_BATCHES}
                                                      for rt in args.runtimes}
            txt: dict[str, dict[int, list[float]]] = {rt: {b: [] for b in TEXT_BATCHES}
                                                      for rt in args.runtimes}
            for _ in range(args.rounds):
                for rt, (ie, te) in embedders.items():
                    torch.set_num_threads(threads)  # process-wide; ORT sessions hold their own
                    for b in IMAGE_BATCHES:
                        img[rt][b].append(per_second(
                            lambda xs, ie=ie: ie.embed_pixels(np.stack(xs)), pix_list, b,
                            args.image_items))
                    for b in TEXT_BATCHES:
                        txt[rt][b].append(per_second(te.embed, texts, b, args.text_items))
            ref_i = embedders["torch"][0].embed_pixels(pixels) if "torch" in embedders else None
            ref_t = embedders["torch"][1].embed(texts) if "torch" in embedders else None
            block: dict = {}
            for rt, (ie, te) in embedders.items():
                med_i = {b: round(statistics.median(v), 2) for b, v in img[rt].items()}
                med_t = {b: round(statistics.median(v), 2) for b, v in txt[rt].items()}
                entry = {"image_per_s_by_batch": med_i, "image_batch1": med_i[1],
                         "image_best": max(med_i.values()),
                         "image_best_batch": max(med_i, key=med_i.get),
                         "text_per_s_by_batch": med_t, "text_batch1": med_t[1],
                         "text_best": max(med_t.values()),
                         "text_best_batch": max(med_t, key=med_t.get),
                         "version": [ie.version, te.version]}
                if ref_i is not None:
                    ci = (ie.embed_pixels(pixels) * ref_i).sum(1)
                    ct = (te.embed(texts) * ref_t).sum(1)
                    entry["cosine_vs_torch"] = {"image_min": round(float(ci.min()), 6),
                                                "text_min": round(float(ct.min()), 6)}
                block[rt] = entry
            if "torch" in block:
                base = block["torch"]
                for rt, entry in block.items():
                    entry["speedup_vs_torch"] = {
                        k: round(entry[k] / base[k], 3)
                        for k in ("image_batch1", "image_best", "text_batch1", "text_best")}
            results["by_threads"][str(threads)] = block
            del embedders
    path = write_result("p7_runtime", results)
    for threads, block in results["by_threads"].items():
        for rt, e in block.items():
            print(f"threads={threads} {rt:10s} img/s b1 {e['image_batch1']:7.2f} best "
                  f"{e['image_best']:7.2f}@{e['image_best_batch']:<2}  texts/s b1 "
                  f"{e['text_batch1']:7.2f} best {e['text_best']:7.2f}@{e['text_best_batch']:<2} "
                  f"speedup {e.get('speedup_vs_torch')} cos {e.get('cosine_vs_torch')}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
