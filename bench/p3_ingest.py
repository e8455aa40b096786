"""Bench P3: the ingest job's images/s against the raw embedders, and its peak memory, at 2k and
20k products (target: ingest >= 0.8 x the image model's best-batch throughput; memory flat).

    .venv/bin/python bench/p3_ingest.py                       # 2,000 and 20,000 products
    .venv/bin/python bench/p3_ingest.py --sizes 2000 --rerun  # quick, plus the idempotent re-run

For each size the real job (`python ingest_job.py`, its own local Ray, a private milvus-lite) runs
as a subprocess into a fresh collection, while a sampler sums RSS and PSS over the job's whole
process tree (driver, raylet, GCS, every Ray worker) once a second. The raw embedders are timed
in this process just before each job, on the same catalogue's photos and texts, so both numbers
see the same machine load. Results: bench/results/p3_ingest.json (gitignored) and a table.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, machine, raw_image_processes, write_result
from lookalike.catalog import demo
from lookalike.ports import free_port
from lookalike.store.lite_server import LiteServer

REPO = Path(__file__).resolve().parents[1]


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def tree_memory(root: int) -> dict[str, int]:
    """Summed RSS and PSS (bytes) of `root` and all its descendants. RSS counts shared pages
    (libraries, Ray's object store) once per process; PSS splits them, so it is the fair total."""
    kids, todo, total = _children(), [root], {"rss": 0, "pss": 0, "procs": 0, "driver_rss": 0}
    while todo:
        pid = todo.pop()
        todo.extend(kids.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("Rss", "Pss"):
                    total[key.lower()] += int(value.split()[0]) * 1024
                    if key == "Rss" and pid == root:
                        total["driver_rss"] = int(value.split()[0]) * 1024
            total["procs"] += 1
        except (OSError, ValueError):
            continue
    return total


class Sampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.peak: dict[str, int] = {"rss": 0, "pss": 0, "procs": 0, "driver_rss": 0}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            now = tree_memory(self.pid)
            self.peak = {k: max(self.peak[k], now[k]) for k in self.peak}
            self.stop.wait(self.every_s)


def raw_throughput(manifest: Path, threads: int) -> dict[str, Any]:
    """Best-batch images/s and texts/s of the embedders alone (model time only)."""
    import numpy as np

    from lookalike.catalog import load_manifest
    from lookalike.embedding import ImageEmbedder, TextEmbedder
    from lookalike.images import decode_image

    products, _ = load_manifest(manifest)
    image = ImageEmbedder(num_threads=threads)
    refs = [ref for p in products[:64] for ref in p.images][:64]
    pixels = image.preprocess([decode_image(Path(r).read_bytes()) for r in refs])
    best_img: dict[str, float] = {}
    for bs in (1, 4, 8, 16, 32):
        image({"pixels": pixels[:bs]})  # warm
        start, n = time.perf_counter(), 0
        while n < 96:
            image({"pixels": pixels[:bs]})
            n += bs
        best_img[str(bs)] = round(n / (time.perf_counter() - start), 2)
    del image
    text = TextEmbedder(num_threads=threads)
    texts = np.array([p.text() for p in products[:512]], dtype=object)
    best_txt: dict[str, float] = {}
    for bs in (64, 256):
        text({"text": texts[:bs]})
        start, n = time.perf_counter(), 0
        while n < 512:
            text({"text": texts[:bs]})
            n += bs
        best_txt[str(bs)] = round(n / (time.perf_counter() - start), 2)
    del text
    gc.collect()
    # The other way to use the cores: one one-thread process per core (preprocessing included).
    cores = os.cpu_count() or 1
    procs = {f"{cores}x1 thread, batch {bs}": raw_image_processes(refs[:32], cores, bs, seconds=8.0)
             for bs in (1, 8)} if cores > 1 else {}
    return {"threads": threads, "image_per_s_by_batch": best_img, "image_processes": procs,
            "text_per_s_by_batch": best_txt,
            "image_best": max([*best_img.values(), *procs.values()]), "text_best": max(best_txt.values())}


def run_job(manifest: Path, env: dict[str, str], collection: str, extra: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, str(REPO / "ingest_job.py"), "--manifest", str(manifest),
           "--collection", collection, *extra]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    sampler = Sampler(proc.pid)
    sampler.start()
    _out, err = proc.communicate()
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"ingest job failed ({proc.returncode}):\n{err[-4000:]}")
    summary = next(json.loads(line) for line in err.splitlines()
                   if line.startswith("{") and '"event":"ingest_summary"' in line)
    return {"summary": summary, "wall_s_with_ray_start": round(time.monotonic() - start, 2),
            "peak_tree_rss_mib": round(sampler.peak["rss"] / 2**20, 1),
            "peak_tree_pss_mib": round(sampler.peak["pss"] / 2**20, 1),
            "peak_driver_rss_mib": round(sampler.peak["driver_rss"] / 2**20, 1),
            "peak_processes": sampler.peak["procs"]}


def catalogue(work: Path, sizes: list[int]) -> dict[int, Path]:
    """One demo catalogue of max(sizes) products; smaller sizes are its first rows."""
    full = work / "catalogue" / "manifest.jsonl"
    biggest = max(sizes)
    if not full.exists() or sum(1 for _ in full.open()) != biggest:
        print(f"building a {biggest}-product demo catalogue under {full.parent} ...", flush=True)
        demo.build(full.parent, biggest)
    lines = full.read_text().splitlines()
    out = {}
    for n in sizes:
        path = full.parent / f"manifest-{n}.jsonl"
        path.write_text("\n".join(lines[:n]) + "\n")
        out[n] = path
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--work", type=Path, default=RESULTS / "p3_work")
    ap.add_argument("--rerun", action="store_true", help="also time an idempotent re-run per size")
    ap.add_argument("--job-args", default="", help="extra ingest_job.py arguments")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    manifests = catalogue(args.work, args.sizes)  # kept between runs: building it takes minutes
    # An empty store each run: over the last run's collection the job would skip every
    # product as unchanged and measure an idempotent re-run instead.
    shutil.rmtree(args.work / "data", ignore_errors=True)
    server = LiteServer(args.work / "data", free_port())
    server.ensure_running()
    env = {**os.environ, "LOOKALIKE_DATA_DIR": str(server.data_dir),
           "LOOKALIKE_LITE_PORT": str(server.port), "LOOKALIKE_PORT": str(free_port()),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "RAY_USAGE_STATS_ENABLED": "0"}
    threads = os.cpu_count() or 1  # the one-process ceiling: every core a torch thread
    results: dict[str, Any] = {"bench": "p3_ingest", "machine": machine(), "runs": []}
    try:
        for n, manifest in manifests.items():
            raw = raw_throughput(manifest, threads)
            print(f"[{n}] raw: image {raw['image_per_s_by_batch']} img/s by batch, "
                  f"{raw['image_processes']} img/s in processes, "
                  f"text {raw['text_per_s_by_batch']} texts/s", flush=True)
            collection = f"p3_{n}"
            job = run_job(manifest, env, collection, args.job_args.split())
            s = job["summary"]
            images, products = s["images_embedded"], s["embedded"]
            # The same work done by the bare models: every image, plus one text per product.
            model_s = images / raw["image_best"] + products / raw["text_best"]
            run = {"products": n, "raw": raw, **job,
                   "ingest_images_per_s": s["images_per_s"],
                   "steady_images_per_s": s["steady_images_per_s"],
                   "ratio_vs_image_model": round(s["images_per_s"] / raw["image_best"], 3),
                   "steady_ratio_vs_image_model": round(s["steady_images_per_s"] / raw["image_best"], 3),
                   # Model time for this work / the job's time: 1.0 means zero pipeline overhead.
                   "ratio_vs_both_models": round(model_s / s["seconds"], 3),
                   "steady_ratio_vs_both_models": round(model_s / max(s["steady_seconds"], 1e-9), 3)}
            if args.rerun:
                again = run_job(manifest, env, collection, args.job_args.split())
                run["rerun"] = {k: again["summary"][k] for k in ("embedded", "skipped_unchanged", "seconds")}
            results["runs"].append(run)
            print(f"[{n}] ingest {s['images_per_s']} img/s end-to-end, {s['steady_images_per_s']} "
                  f"steady; peak tree PSS {job['peak_tree_pss_mib']} MiB, RSS "
                  f"{job['peak_tree_rss_mib']} MiB", flush=True)
            path = write_result("p3_ingest", results)
    finally:
        server.stop()
    print_table(results)
    print(f"\nwritten {path}")
    return 0


def print_table(results: dict[str, Any]) -> None:
    print("\nP3 ingest    products  images  img/s e2e  img/s steady  raw img/s  ratio e2e  ratio steady"
          "  both-models e2e/steady  peak PSS MiB  peak RSS MiB  driver RSS MiB")
    for r in results["runs"]:
        s = r["summary"]
        print(f"{'':12} {r['products']:>8}  {s['images_embedded']:>6}  {r['ingest_images_per_s']:>9}"
              f"  {r['steady_images_per_s']:>12}  {r['raw']['image_best']:>9}  "
              f"{r['ratio_vs_image_model']:>9}  {r['steady_ratio_vs_image_model']:>12}  "
              f"{r['ratio_vs_both_models']:>11}/{r['steady_ratio_vs_both_models']:<10}  "
              f"{r['peak_tree_pss_mib']:>12}  "
              f"{r['peak_tree_rss_mib']:>12}  {r['peak_driver_rss_mib']:>14}")


if __name__ == "__main__":
    raise SystemExit(main())
