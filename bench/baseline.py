"""Baseline in the original design's style: one synchronous process, one worker, no batching.

    LOOKALIKE_DATA_DIR=... LOOKALIKE_LITE_PORT=... python -m bench.baseline --port 8100

Same HTTP API (`create_api`), same models, same Milvus collection as the Serve app, so a
comparison measures the serving architecture only. The embedders run in-process on the event
loop, one image at a time: while one request is embedded nothing else progresses, as in a
single-threaded WSGI server. Torch may use every core for that one forward pass (the best a
single process can do). Binds loopback only.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from lookalike.api import create_api
from lookalike.config import Settings
from lookalike.embedding import ImageEmbedder, TextEmbedder
from lookalike.observability import request_observer
from lookalike.search import SearchService
from lookalike.store import MilvusStore
from lookalike.store.lite_server import LiteServer


def build(settings: Settings, *, torch_threads: int) -> object:
    image = ImageEmbedder.from_settings(settings, num_threads=torch_threads)
    text = TextEmbedder.from_settings(settings, num_threads=torch_threads)

    # Deliberately blocking inside `async def`: no batching, no overlap of two forward passes.
    async def embed_image(img: object) -> np.ndarray:
        return image.embed([img])[0]

    async def embed_text(q: str) -> np.ndarray:
        return text.embed([q])[0]

    if settings.embedded:
        LiteServer.from_settings(settings).ensure_running()
    store = MilvusStore.from_settings(settings, image_dim=image.dim, text_dim=text.dim)
    store.ensure_collection()
    service = SearchService(store=store, embed_image=embed_image, embed_text=embed_text,
                            media_dir=settings.media_dir, facets_ttl_s=settings.facets_ttl_s,
                            model_version=f"{image.version}|{text.version}")
    # The same JSON request log as the Serve app (to stderr), so both pay for logging.
    return create_api(service, settings, observer=request_observer())


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    app = build(Settings(), torch_threads=args.torch_threads)
    # One worker process, one event loop, loopback only; no access log (the JSON log replaces it).
    uvicorn.run(app, host="127.0.0.1", port=args.port, workers=1, access_log=False,
                log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
