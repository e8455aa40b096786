"""SearchRouter: the HTTP ingress. Holds both embedder handles and the store."""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from lookalike.api import create_api
from lookalike.config import Settings
from lookalike.observability import request_observer
from lookalike.search import SearchService
from lookalike.store import MilvusStore
from lookalike.store.lite_server import LiteServer


@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=64,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
)
@serve.ingress()
class SearchRouter:
    async def __init__(self, image_embedder: DeploymentHandle, text_embedder: DeploymentHandle,
                     settings: dict[str, Any]) -> None:
        self.settings = Settings(**settings)
        self.image = image_embedder
        self.text = text_embedder
        if self.settings.embedded:
            await asyncio.to_thread(LiteServer.from_settings(self.settings).ensure_running)
        image_info, text_info = await asyncio.gather(self.image.info.remote(), self.text.info.remote())
        self.store = MilvusStore.from_settings(self.settings, image_dim=image_info["dim"],
                                               text_dim=text_info["dim"])
        await asyncio.to_thread(self.store.ensure_collection)
        self.service = SearchService(
            store=self.store, embed_image=self._embed_image, embed_text=self._embed_text,
            media_dir=self.settings.media_dir, facets_ttl_s=self.settings.facets_ttl_s,
            model_version=f"{image_info['version']}|{text_info['version']}")

    async def _embed_image(self, image: Any) -> Any:
        return await self.image.embed.remote(image)

    async def _embed_text(self, text: str) -> Any:
        return await self.text.embed.remote(text)

    async def _ready(self) -> dict[str, Any]:
        """Both embedders answer within 5 s (the store is checked by /readyz itself)."""
        await asyncio.wait_for(asyncio.gather(self.image.info.remote(), self.text.info.remote()), 5)
        return {}

    def __serve_build_asgi_app__(self) -> Any:
        # Serve's proxy already echoes X-Request-ID (the id it also hands to this app).
        return create_api(self.service, self.settings, readiness=self._ready,
                          observer=request_observer(), echo_request_id=False)
