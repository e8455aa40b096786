"""Measure retrieval quality on a labelled catalogue.

    python -m lookalike.eval                             # demo catalogue (train split), 2,000
    python -m lookalike.eval --catalogue test --products 1000 --no-text
    python -m lookalike.eval --extra '{"infer": "off"}'  # any request field, e.g. pure vectors

Starts its own milvus-lite server on a free loopback port under --work-dir, fills a fresh
collection from cached vectors, and queries through the HTTP API. Prints JSON; --out writes it.
Figures: text->product P@10 on the query file (attribute queries in a shopper's words),
image->image P/recall/nDCG@10 leave-one-out against exact search on the same vectors, and ANN
recall@10 per filter selectivity.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")




def main(argv: list[str] | None = None) -> int:
    from lookalike.config import Settings
    from lookalike.eval.runner import ADMIN_KEY, DEMO_QUERIES, dumps, evaluate
    from lookalike.ports import free_port
    from lookalike.store.lite_server import LiteServer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--catalogue", choices=("demo", "test"), default="demo")
    ap.add_argument("--products", type=int, default=2000)
    ap.add_argument("--queries", type=Path, default=DEMO_QUERIES)
    ap.add_argument("--no-text", action="store_true", help="skip the text queries")
    ap.add_argument("--image-queries", type=int, default=200)
    ap.add_argument("--ann-queries", type=int, default=50)
    ap.add_argument("--extra", type=json.loads, default={}, help="JSON merged into every request")
    ap.add_argument("--index-type", default="HNSW")
    ap.add_argument("--work-dir", type=Path, default=Path("data/eval"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    lite = LiteServer(args.work_dir / "lite", free_port())
    lite.ensure_running()
    try:
        settings = Settings(data_dir=lite.data_dir, lite_port=lite.port, port=free_port(),
                            collection=f"eval_{args.catalogue}", admin_key=ADMIN_KEY,
                            index_type=args.index_type)
        result = evaluate(settings, catalogue=args.catalogue, n_products=args.products,
                          work_dir=args.work_dir, queries=None if args.no_text else args.queries,
                          image_queries=args.image_queries, ann_queries=args.ann_queries,
                          extra=args.extra)
    finally:
        lite.stop()
    text = dumps(result)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
