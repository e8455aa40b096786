"""The one device check the embedder replicas make before loading a model.

Serve takes a deployment's `ray_actor_options` from the YAML whole, so GPUs are given by the
config (serve_config.gpu.yaml), never by code. A replica told to use CUDA that Ray gave no GPU
would otherwise fail deep inside torch ("sees no GPU": Ray hides every GPU from an actor that
did not ask for one); this says which config to use instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from lookalike.config import Settings


class NoGpuForReplica(RuntimeError):
    pass


def check_device(settings: Settings, deployment: str, gpu_ids: Sequence[object]) -> None:
    """gpu_ids: ray.get_gpu_ids() inside the replica."""
    if settings.device == "cuda" and not gpu_ids:
        raise NoGpuForReplica(
            f"LOOKALIKE_DEVICE=cuda, but Ray gave this {deployment} replica no GPU: its "
            "ray_actor_options have no num_gpus. Deploy with serve_config.gpu.yaml "
            "(`serve run serve_config.gpu.yaml`), or set num_gpus for this deployment in your "
            "Serve config, or use LOOKALIKE_DEVICE=cpu.")
