"""SearchRouter: the HTTP ingress. Holds both embedder handles and the store."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from lookalike.api import create_api
from lookalike.config import Settings
from lookalike.images import resize_short_side
from lookalike.observability import request_observer
from lookalike.search import EmbedderUnavailable, Overloaded, SearchService
from lookalike.store import MilvusStore
from lookalike.store.lite_server import LiteServer

log = logging.getLogger(__name__)
EMBED_TIMEOUT_S = 20.0  # an embed that takes longer is a stuck replica: 503, not a hang
# A replica that died between routing and answering: the next try goes to another (or to
# its replacement). Once, so a real outage still answers within the timeout.
REPLICA_GONE = (RayActorError, ActorUnavailableError, ReplicaUnavailableError)
READY_FRESH_S = 5.0  # an embed that succeeded this recently proves the embedders are up


@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=64,
    # Past this many waiting requests Serve sheds with a 503 instead of queueing without bound.
    max_queued_requests=256,
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
        image_info, text_info = await asyncio.gather(self.image.info.remote(),
                                                     self.text.info.remote())
        self.store = MilvusStore.from_settings(self.settings, image_dim=image_info["dim"],
                                               text_dim=text_info["dim"])
        await asyncio.to_thread(self.store.ensure_collection)
        # The embedders' own first step (their resize), run here: replicas get a ~256-pixel
        # image, never the upload; pure PIL, so the router loads no torch.
        resize = image_info.get("resize")
        shrink = (functools.partial(resize_short_side, size=resize["short_side"],
                                    interpolation=resize["interpolation"]) if resize else None)
        self.service = SearchService(
            store=self.store, embed_image=self._embed_image, embed_text=self._embed_text,
            media_dir=self.settings.media_dir, facets_ttl_s=self.settings.facets_ttl_s,
            model_version=f"{image_info['version']}|{text_info['version']}",
            shrink_image=shrink, min_short_side=resize["short_side"] if resize else None,
            variant_overfetch=self.settings.variant_overfetch)
        self._ok_at = {"image": 0.0, "text": 0.0}  # when each embedder last answered

    async def _call(self, handle: DeploymentHandle, what: str, item: Any) -> Any:
        for attempt in (0, 1):
            try:
                result = await asyncio.wait_for(handle.embed.remote(item), EMBED_TIMEOUT_S)
                self._ok_at[what] = time.monotonic()
                return result
            except BackPressureError as exc:
                raise Overloaded(f"the {what} embedder is at capacity") from exc
            except REPLICA_GONE as exc:
                if attempt:
                    raise EmbedderUnavailable(f"the {what} embedder replica is gone") from exc
                log.warning("%s embedder replica gone, retrying once: %s", what, exc)
            except asyncio.TimeoutError as exc:
                raise EmbedderUnavailable(f"the {what} embedder did not answer") from exc
            except Exception as exc:  # noqa: BLE001 - a failing model is an outage, not a 500
                raise EmbedderUnavailable(f"the {what} embedder failed: {exc}") from exc
        raise AssertionError("unreachable")

    async def _embed_image(self, image: Any) -> Any:
        return await self._call(self.image, "image", image)

    async def _embed_text(self, text: str) -> Any:
        return await self._call(self.text, "text", text)

    async def _ready(self) -> dict[str, Any]:
        """Both embedders answer. Under load a recent successful embed is the proof, so a
        probe never queues behind embed batches; an idle router asks them (`info`)."""
        now = time.monotonic()
        stale = [(what, handle) for what, handle in (("image", self.image), ("text", self.text))
                 if now - self._ok_at[what] >= READY_FRESH_S]
        await asyncio.gather(*(handle.info.remote() for _, handle in stale))
        for what, _ in stale:
            self._ok_at[what] = time.monotonic()
        return {}

    def __serve_build_asgi_app__(self) -> Any:
        # Serve's proxy already echoes X-Request-ID (the id it also hands to this app).
        return create_api(self.service, self.settings, readiness=self._ready,
                          observer=request_observer(), echo_request_id=False)
