"""TextEmbedder deployment: batches concurrent queries into one forward pass."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import ray
from ray import serve

from deployments.device import check_device
from lookalike.config import Settings
from lookalike.embedding.factory import text_embedder
from lookalike.metrics import observe_batch


@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=32,
    # A full queue sheds (BackPressureError -> the router answers 503 "overloaded").
    max_queued_requests=128,
    # Two from the start: one killed (or restarting, ~10 s to load a model on a busy box)
    # leaves the other serving, so a crash never stalls text search.
    autoscaling_config={"min_replicas": 2, "max_replicas": 2, "target_ongoing_requests": 8},
    user_config={"max_batch_size": 16, "batch_wait_timeout_s": 0.002},
)
class TextEmbedderDeployment:
    def __init__(self, settings: dict[str, Any], num_threads: int = 1) -> None:
        config = Settings(**settings)
        check_device(config, type(self).__name__, ray.get_gpu_ids())
        self.embedder = text_embedder(config, num_threads=num_threads)

    def reconfigure(self, config: dict[str, Any]) -> None:
        self.embed.set_max_batch_size(int(config.get("max_batch_size", 16)))
        self.embed.set_batch_wait_timeout_s(float(config.get("batch_wait_timeout_s", 0.002)))

    def info(self) -> dict[str, Any]:
        return {"dim": self.embedder.dim, "version": self.embedder.version,
                "cross_modal": getattr(self.embedder, "cross_modal", False)}

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def embed(self, texts: list[str]) -> list[np.ndarray]:
        observe_batch("text", len(texts))  # shows whether batches actually fill
        vectors = await asyncio.to_thread(self.embedder.embed, texts)
        return list(vectors)
