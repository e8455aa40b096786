"""The Serve application: image + text embedders composed under the SearchRouter ingress.

    serve run serve_config.yaml                 # local Ray, foreground
    serve run serve_config.gpu.yaml             # the same app, embedders on GPUs
    RAY_AUTH_MODE=token serve deploy serve_config.yaml   # against `ray start --head`

`build_app` is the typed builder named in serve_config.yaml; it does no I/O at import.
Replicas, autoscaling, batch sizes and GPUs live in the Serve config YAML.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from ray.serve import Application

from lookalike.config import Settings
from lookalike.deployments.image_embedder import ImageEmbedderDeployment
from lookalike.deployments.search_router import SearchRouter
from lookalike.deployments.text_embedder import TextEmbedderDeployment


class AppArgs(BaseModel):
    # Overrides on top of LOOKALIKE_* environment variables (e.g. {"collection": "products"}).
    settings: dict[str, Any] = Field(default_factory=dict)
    image_threads: int = Field(1, ge=1, le=64)
    text_threads: int = Field(1, ge=1, le=64)


def build_app(args: AppArgs | dict[str, Any] | None = None) -> Application:
    args = args if isinstance(args, AppArgs) else AppArgs(**(args or {}))
    settings = Settings(**args.settings)  # fails fast on bad values, before any replica starts
    # The embedders get no secret at all: they reach neither the store, the media nor writes.
    embedder_settings = settings.replica_settings(secrets=False)
    # The router gets every secret's value (S3 keys, Milvus token) as a SecretStr: masked
    # wherever Serve prints its arguments. Every router replica must check writes against one
    # admin key: resolve it once, here.
    router_settings = {**settings.replica_settings(), "admin_key": settings.resolved_admin_key()}
    # No resources in code: Serve replaces a deployment's ray_actor_options with the YAML's
    # whole, so GPUs set here were silently dropped. serve_config.gpu.yaml gives the GPUs; an
    # embedder told to use CUDA without one fails at start with a message saying so.
    return SearchRouter.bind(ImageEmbedderDeployment.bind(embedder_settings, args.image_threads),
                             TextEmbedderDeployment.bind(embedder_settings, args.text_threads),
                             router_settings)
