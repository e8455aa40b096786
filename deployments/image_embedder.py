"""ImageEmbedder deployment: batches concurrent requests into one forward pass."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import ray
from PIL import Image
from ray import serve

from lookalike.config import Settings
from lookalike.deployments.device import check_device
from lookalike.deployments.observability import observe_batch
from lookalike.embedding.factory import image_embedder


# Replicas, resources, queue bounds and batching: serve_config.yaml (and its GPU overlay) only.
@serve.deployment
class ImageEmbedderDeployment:
    def __init__(self, settings: dict[str, Any], num_threads: int = 1) -> None:
        config = Settings(**settings)
        check_device(config, type(self).__name__, ray.get_gpu_ids())
        # One torch thread per replica: replicas scale out instead of fighting over cores.
        self.embedder = image_embedder(config, num_threads=num_threads)

    def reconfigure(self, config: dict[str, Any]) -> None:
        # The Serve config's user_config: batching is tuned there, per machine.
        self.embed.set_max_batch_size(int(config["max_batch_size"]))
        self.embed.set_batch_wait_timeout_s(float(config["batch_wait_timeout_s"]))

    def info(self) -> dict[str, Any]:
        # `resize`: the preprocessing's first step, which the router applies before sending.
        return {"dim": self.embedder.dim, "version": self.embedder.version,
                "resize": self.embedder.preprocess.resize,
                "cross_modal": getattr(self.embedder, "cross_modal", False)}

    @serve.batch  # sized by reconfigure() from the Serve config's user_config
    async def embed(self, images: list[Image.Image]) -> list[np.ndarray]:
        # The forward pass runs in a thread so the replica keeps collecting the next batch.
        observe_batch("image", len(images))  # shows whether batches actually fill
        vectors = await asyncio.to_thread(self.embedder.embed, images)
        return list(vectors)
