"""Ingest a product catalogue manifest into Milvus with Ray Data.

Locally (starts a private Ray instance on loopback, and the embedded milvus-lite server when
LOOKALIKE_MILVUS_URI is "embedded", the default, and none is serving yet; both are stopped when
the job ends, while a server that was already serving is left running):

    python ingest_job.py --manifest data/demo/manifest.jsonl
    python ingest_job.py --manifest catalogue.csv --delete-missing --errors-out errors.jsonl

Against a Ray cluster (the job shows in the dashboard, its logs in `ray job logs`):

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python ingest_job.py --manifest /shared/catalogue.parquet \\
        --milvus-uri http://milvus:19530 --num-gpus 1

The job is idempotent (keyed by product_id) and resumable: a re-run skips every product whose
content hash (metadata + image bytes) and model version are already stored, so after a crash
just run it again. Bad rows and unreadable images are reported with their row number and never
stop the job. Settings come from LOOKALIKE_* variables (see lookalike/config.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def _source_name(value: str) -> str:
    if not value or len(value) > 100 or not all(c.isalnum() or c in "._-" for c in value):
        raise argparse.ArgumentTypeError("1-100 letters, digits, '.', '_' or '-'")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--manifest", type=Path, required=True, help="JSONL, CSV or Parquet manifest")
    p.add_argument("--milvus-uri", help="Milvus URI, overrides LOOKALIKE_MILVUS_URI ('embedded' "
                   "or http://host:19530)")
    p.add_argument("--collection", help="overrides LOOKALIKE_COLLECTION")
    p.add_argument("--delete-missing", action="store_true",
                   help="delete this catalogue's stored products that the manifest no longer "
                   "lists (never products PUT through the API or of another --source)")
    p.add_argument("--source", default="default", type=_source_name,
                   help="the catalogue's name (default 'default'): its products are stored as "
                   "source 'catalog:NAME'; give each feed its own name")
    p.add_argument("--errors-out", type=Path, help="write every row error here as JSONL")
    p.add_argument("--num-gpus", type=float, default=0.0,
                   help="GPUs for the embedders (runs them on CUDA); default CPU only")
    p.add_argument("--image-batch", type=int, help="images per embedder call (default 8 CPU, 64 GPU)")
    p.add_argument("--text-batch", type=int, help="texts per embedder call (default 64 CPU, 256 GPU)")
    p.add_argument("--write-batch", type=int, default=1000, help="image rows per Milvus upsert")
    p.add_argument("--image-actors", type=int, help="cap on image embedder actors")
    p.add_argument("--wait-s", type=float, default=120.0,
                   help="how long to wait for free CPUs (and for the embedder actors to be "
                   "placed) before failing with what is missing (default 120)")
    p.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS"),
                   help="Ray cluster to join (default: $RAY_ADDRESS; unset or 'local' starts a "
                   "private one)")
    p.add_argument("--num-cpus", type=int, help="CPUs for a locally started Ray (default: all)")
    p.add_argument("--no-wait-index", action="store_true",
                   help="report done right after the final flush, without waiting for the "
                   "vector indexes (searches are slower until they finish building)")
    p.add_argument("--index-timeout", type=float, default=600.0,
                   help="seconds to wait for the indexes at most (default 600)")
    return p.parse_args(argv)


def setup_logging() -> None:
    from lookalike.logs import json_logger

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The job's own records (plan, row errors, the summary) are JSON lines, easy to parse.
    json_logger("lookalike.ingest")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.manifest.is_file():
        print(f"manifest not found: {args.manifest}", file=sys.stderr)
        return 2
    if not args.ray_address or args.ray_address == "local":
        # A private local Ray binds to loopback only (Ray otherwise picks the LAN address);
        # must be set before ray is imported. Forced: an inherited 1 would move it onto the LAN.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    setup_logging()

    import ray

    from lookalike.config import Settings
    from lookalike.ingest.plan import NoRoom
    from lookalike.launch.local_ray import init_local
    from lookalike.pipelines.ingest import IngestOptions, run_ingest
    from lookalike.store.lite_server import EmbeddedStoreRefused, LiteServer

    overrides = {k: v for k, v in (("milvus_uri", args.milvus_uri),
                                   ("collection", args.collection)) if v}
    settings = Settings(**overrides)
    lite = LiteServer.from_settings(settings) if settings.embedded else None
    started_lite = False
    try:
        if args.ray_address and args.ray_address != "local":
            ray.init(address=args.ray_address)
        else:
            init_local(num_cpus=args.num_cpus, include_dashboard=None)
        # After ray.init: the embedded store refuses a cluster of several hosts. The job leaves
        # nothing running that it started: an embedded server it had to start is stopped on
        # the way out; one already serving (the app's, `lookalike demo`) is left alone.
        started_lite = lite.ensure_running() if lite else False
        opts = IngestOptions(manifest=args.manifest, delete_missing=args.delete_missing,
                             source=args.source, errors_out=args.errors_out, num_gpus=args.num_gpus,
                             image_batch=args.image_batch, text_batch=args.text_batch,
                             write_batch=args.write_batch, max_image_actors=args.image_actors,
                             wait_index=not args.no_wait_index,
                             index_timeout_s=args.index_timeout, wait_s=args.wait_s)
        summary = run_ingest(opts, settings)
        print(summary.table(), flush=True)
    except (NoRoom, EmbeddedStoreRefused) as exc:
        # What the job waited for, or why it cannot run here: one clear line, no traceback.
        print(f"ingest_job: {exc}", file=sys.stderr, flush=True)
        return 3
    finally:
        ray.shutdown()
        if started_lite:
            lite.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
