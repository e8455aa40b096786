"""Measure variant detection (lookalike/variants.py) against known variants.

    python -m lookalike.eval.variants                      # 1,000 products, 2 ingest runs
    python -m lookalike.eval.variants --products 400 --reshoot-share 0.2 --runs 1

The catalogue: the demo builder's products with its colour variants (the same article in
several colours; ground truth: the `article` attribute), plus near-duplicate re-shoots of a
share of them (a copy resized, re-encoded as a lower-quality JPEG and slightly cropped, as a
separate product of the same article). Products are embedded in-process with the configured
models, written to a fresh collection of a milvus-lite server it starts on a free loopback port,
in `--runs` parts with a detection pass after each (as successive ingest runs would: later
parts must find their variants among earlier ones). Prints JSON: pairwise precision and recall
of "same group" against "same article", overall and per kind of pair, and the pass's time.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
from PIL import Image

from lookalike.catalog import demo, load_manifest
from lookalike.catalog.product import Product
from lookalike.variants import Thresholds, detect, group_key

if TYPE_CHECKING:
    from lookalike.config import Settings


def reshoot(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The same photo as another shop's copy: cropped 2-6% a side, resized, re-encoded."""
    w, h = image.size
    box = [int(w * rng.uniform(0.02, 0.06)), int(h * rng.uniform(0.02, 0.06)),
           w - int(w * rng.uniform(0.02, 0.06)), h - int(h * rng.uniform(0.02, 0.06))]
    side = int(rng.integers(160, 400))
    out = image.convert("RGB").crop(box).resize((side, side), Image.BICUBIC)
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=int(rng.integers(55, 85)))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def build(out: Path, n_products: int, *, variant_share: float, reshoot_share: float,
          seed: int = 7) -> list[Product]:
    """The demo catalogue plus re-shoot copies; every product has an `article` attribute."""
    products, errors = load_manifest(demo.build(out, n_products, seed=seed,
                                                variant_share=variant_share))
    if errors:
        raise ValueError(f"demo catalogue: {errors[0]}")
    rng = np.random.default_rng(seed + 1)
    copies = []
    for p in products:
        if rng.random() < reshoot_share:
            path = out / "images" / f"{p.product_id}-reshoot.jpg"
            reshoot(Image.open(p.images[0]), rng).save(path, quality=90)
            copies.append(replace(p, product_id=f"{p.product_id}-reshoot", images=(str(path),),
                                  attributes={**p.attributes, "reshoot_of": p.product_id}))
    return products + copies


def pair_scores(truth: dict[str, str], predicted: dict[str, str],
                kinds: dict[tuple[str, str], str] | None = None) -> dict[str, Any]:
    """Pairwise precision/recall of `predicted` groups against `truth` groups (id -> label)."""
    def pairs(labels: dict[str, str]) -> set[tuple[str, str]]:
        groups: dict[str, list[str]] = defaultdict(list)
        for pid, label in labels.items():
            groups[label].append(pid)
        return {tuple(sorted(pair)) for members in groups.values()  # type: ignore[misc]
                for pair in combinations(members, 2)}

    want, got = pairs(truth), pairs(predicted)
    hit = want & got
    out: dict[str, Any] = {
        "true_pairs": len(want), "predicted_pairs": len(got), "correct_pairs": len(hit),
        "precision": round(len(hit) / len(got), 4) if got else None,
        "recall": round(len(hit) / len(want), 4) if want else None}
    if kinds:
        by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for pair in want:
            kind = kinds.get(pair, "colour variant")
            by_kind[kind][0] += 1
            by_kind[kind][1] += pair in got
        out["recall_by_kind"] = {k: round(found / n, 4) for k, (n, found) in by_kind.items()}
    return out


def pair_kinds(products: list[Product]) -> dict[tuple[str, str], str]:
    """A true pair is a re-shoot when one is a copy of the other, else a colour variant (a
    copy and its original's other colours count as re-shoots of a variant)."""
    kinds = {}
    for p in products:
        orig = p.attributes.get("reshoot_of")
        if orig:
            kinds[tuple(sorted((p.product_id, str(orig))))] = "re-shoot"
    return kinds  # type: ignore[return-value]


def run(n_products: int, *, variant_share: float, reshoot_share: float, runs: int,
        work_dir: Path, settings: Settings | None = None) -> dict[str, Any]:
    from lookalike.config import Settings
    from lookalike.embedding import ImageEmbedder, TextEmbedder
    from lookalike.indexing import batched, embed_products
    from lookalike.ports import free_port
    from lookalike.store.lite_server import LiteServer
    from lookalike.store.milvus import MilvusStore

    products = build(work_dir / "catalogue", n_products, variant_share=variant_share,
                     reshoot_share=reshoot_share)
    server = None
    if settings is None:
        settings = Settings(data_dir=work_dir / "data", lite_port=free_port(),
                            collection="variants_eval")
        server = LiteServer(settings.data_dir, settings.lite_port)
        server.ensure_running()
    image_embedder = ImageEmbedder.from_settings(settings)
    text_embedder = TextEmbedder.from_settings(settings)
    store = MilvusStore.from_settings(settings, image_dim=image_embedder.dim, text_dim=text_embedder.dim)
    try:
        if store.client.has_collection(settings.collection):
            store.drop()
        store.ensure_collection()
        rng = np.random.default_rng(11)
        order = [products[i] for i in rng.permutation(len(products))]  # runs mix articles
        thresholds = Thresholds.from_settings(settings)
        detect_s = 0.0
        for part in np.array_split(np.arange(len(order)), runs):
            written = []
            for batch in batched([order[i] for i in part], 64):
                items = embed_products(batch, image_embedder=image_embedder,
                                       text_embedder=text_embedder)
                store.upsert(items)
                written += [it.product.product_id for it in items]
            start = time.perf_counter()
            detect(store, written, thresholds)
            detect_s += time.perf_counter() - start
        records = store.get([p.product_id for p in products])
        predicted = {pid: group_key(pid, r.group_id) for pid, r in records.items()}
        truth = {p.product_id: str(p.attributes["article"]) for p in products}
        scores = pair_scores(truth, predicted, pair_kinds(products))
        return {"products": len(products), "articles": len(set(truth.values())),
                "runs": runs, "variant_share": variant_share, "reshoot_share": reshoot_share,
                "thresholds": thresholds.__dict__, **scores,
                "detect_seconds": round(detect_s, 2)}
    finally:
        if server is not None:
            store.drop()
        store.close()
        if server is not None:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--variant-share", type=float, default=demo.DEMO_VARIANT_SHARE)
    parser.add_argument("--reshoot-share", type=float, default=0.1)
    parser.add_argument("--runs", type=int, default=2, help="ingest runs the catalogue comes in")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lookalike-variants-") as tmp:
        result = run(args.products, variant_share=args.variant_share,
                     reshoot_share=args.reshoot_share, runs=args.runs,
                     work_dir=args.work_dir or Path(tmp))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
