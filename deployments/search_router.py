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
from lookalike.deployments.observability import router_observer
from lookalike.images import resize_short_side
from lookalike.live import LiveService, Models, in_process_models
from lookalike.search import EmbedderUnavailable, Overloaded
from lookalike.store.lite_server import LiteServer

log = logging.getLogger(__name__)
EMBED_TIMEOUT_S = 20.0  # an embed that takes longer is a stuck replica: 503, not a hang
# A replica that died between routing and answering: the next try goes to another (or to
# its replacement). Once, so a real outage still answers within the timeout.
REPLICA_GONE = (RayActorError, ActorUnavailableError, ReplicaUnavailableError)
READY_FRESH_S = 5.0  # an embed that succeeded this recently proves the embedders are up


# Replicas, resources and queue bounds: serve_config.yaml (and its GPU overlay) only.
@serve.deployment
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
        # The embedders' own first step (their resize), run here: replicas get a ~256-pixel
        # image, never the upload; pure PIL, so the router loads no torch.
        resize = image_info.get("resize")
        shrink = (functools.partial(resize_short_side, size=resize["short_side"],
                                    interpolation=resize["interpolation"]) if resize else None)
        primary = Models(f"{image_info['version']}|{text_info['version']}", self._embed_image,
                         self._embed_text, image_info["dim"], text_info["dim"],
                         cross_modal=bool(text_info.get("cross_modal")), shrink_image=shrink,
                         min_short_side=resize["short_side"] if resize else None)
        # Searches go to the collection behind the alias, with that collection's model; during
        # `lookalike upgrade` writes also reach the new collection (lookalike/live.py). Another
        # model than the deployments' own is loaded in this process only when a collection needs it.
        self.service = LiveService(settings=self.settings, primary=primary,
                                   load_models=in_process_models(self.settings))
        await asyncio.to_thread(self.service.start)
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
            except Exception as exc:  # a failing model is an outage, not a 500
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
                          observer=router_observer(), echo_request_id=False)
