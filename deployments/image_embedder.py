"""ImageEmbedder deployment: batches concurrent requests into one forward pass."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import ray
from PIL import Image
from ray import serve

from deployments.device import check_device
from lookalike.config import Settings
from lookalike.embedding.factory import image_embedder
from lookalike.metrics import observe_batch


@serve.deployment(
    ray_actor_options={"num_cpus": 0.5},
    # >= max_batch_size, or batches never fill; headroom so the router never waits on admission.
    max_ongoing_requests=16,
    # A full queue sheds (BackPressureError -> the router answers 503 "overloaded").
    max_queued_requests=128,
    autoscaling_config={"min_replicas": 2, "max_replicas": 2, "target_ongoing_requests": 4},
    user_config={"max_batch_size": 4, "batch_wait_timeout_s": 0.003},
)
class ImageEmbedderDeployment:
    def __init__(self, settings: dict[str, Any], num_threads: int = 1) -> None:
        config = Settings(**settings)
        check_device(config, type(self).__name__, ray.get_gpu_ids())
        # One torch thread per replica: replicas scale out instead of fighting over cores.
        self.embedder = image_embedder(config, num_threads=num_threads)

    def reconfigure(self, config: dict[str, Any]) -> None:
        self.embed.set_max_batch_size(int(config.get("max_batch_size", 4)))
        self.embed.set_batch_wait_timeout_s(float(config.get("batch_wait_timeout_s", 0.003)))

    def info(self) -> dict[str, Any]:
        # `resize`: the preprocessing's first step, which the router applies before sending.
        return {"dim": self.embedder.dim, "version": self.embedder.version,
                "resize": self.embedder.preprocess.resize,
                "cross_modal": getattr(self.embedder, "cross_modal", False)}

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.003)
    async def embed(self, images: list[Image.Image]) -> list[np.ndarray]:
        # The forward pass runs in a thread so the replica keeps collecting the next batch.
        observe_batch("image", len(images))  # shows whether batches actually fill
        vectors = await asyncio.to_thread(self.embedder.embed, images)
        return list(vectors)
