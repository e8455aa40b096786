"""Sizing the ingest pipeline's Ray resources from what the cluster has (pure, unit-tested).

Why this exists: Ray Data actors hold their CPU reservation for their whole life, while every
task asks for its own. A trial pipeline whose actors reserved 1.5 of 2 CPUs and whose read
tasks asked for Ray's default 1 CPU never scheduled a single read (backpressured on its
ResourceBudget) and hung. So every stage here gets an explicit, fractional share, and
`check()` proves actors + at least one task of each kind fit in the cluster with room left.

Logical CPUs are reservations, not threads: on a 2-core box the image actor reserves 1 CPU but
runs 2 torch threads, because the model is the bottleneck and the other stages are light and
interleave with it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# Read tasks only pull a few KB of manifest rows from the object store: a tenth of a CPU.
READ_CPUS = 0.1
# Hash + decode + preprocess of one ~224px photo is ~5 ms against ~25 ms in the image model,
# so a quarter CPU per prepare actor is plenty on a small machine.
SMALL_PREPARE_CPUS = 0.25
TEXT_CPUS = 0.25  # MiniLM is ~10x cheaper per product than the image model
# CPU left unreserved for the driver (streaming executor + the single Milvus writer).
DRIVER_HEADROOM = 0.25
# On 2 CPU threads EfficientNet-Lite0 runs fastest at small batches (large ones thrash cache).
CPU_IMAGE_BATCH = 8
GPU_IMAGE_BATCH = 64
CPU_TEXT_BATCH = 64
GPU_TEXT_BATCH = 256


@dataclass(frozen=True)
class Plan:
    image_actors: int
    image_cpus: float
    image_gpus: float
    image_threads: int
    image_batch: int
    text_actors: int
    text_cpus: float
    text_gpus: float
    text_threads: int
    text_batch: int
    prepare_actors: int
    prepare_cpus: float
    read_cpus: float
    device: str

    def reserved_cpus(self) -> float:
        """What the actors hold for their lifetime."""
        return (self.image_actors * self.image_cpus + self.text_actors * self.text_cpus
                + self.prepare_actors * self.prepare_cpus)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def plan_resources(cpus: float, gpus: float = 0.0, *, num_gpus: float = 0.0,
                   image_batch: int | None = None, text_batch: int | None = None,
                   max_image_actors: int | None = None) -> Plan:
    """Split `cpus`/`gpus` (what the cluster has free, ray.available_resources()) between
    the stages.

    Actors: image embedders, one text embedder, prepare (read/decode/preprocess). Tasks: the
    manifest-chunk reads, at READ_CPUS each, always left room to run. num_gpus > 0 puts both
    embedders on CUDA: one image actor per whole GPU asked for (3/4 of it; a fractional ask
    gets one actor), and the text actor gets the remaining quarter.
    """
    if cpus < 1:
        raise ValueError(f"the ingest job needs at least 1 CPU, the cluster has {cpus:g}")
    if num_gpus > gpus + 1e-9:
        raise ValueError(f"--num-gpus {num_gpus:g} asked for, the cluster has {gpus:g} GPUs")
    small = cpus <= 4
    text_cpus = TEXT_CPUS if small else 1.0
    text_threads = 1 if small else 2
    prepare_cpus = SMALL_PREPARE_CPUS if small else 1.0
    min_prepare = 2 if cpus >= 2 else 1
    free = cpus - text_cpus - min_prepare * prepare_cpus - READ_CPUS - DRIVER_HEADROOM
    image_gpus = text_gpus = 0.0
    device = "cpu"
    if num_gpus > 0:
        device = "cuda"
        image_actors = max(1, math.floor(num_gpus))
        per_gpu = num_gpus / image_actors
        image_gpus, text_gpus = round(per_gpu * 0.75, 4), round(per_gpu * 0.25, 4)
        image_threads = 1
        image_cpus = 1.0 if cpus >= 4 else 0.25
    elif small:
        # One image actor reserving what is free (in quarters), all cores as torch threads:
        # the model is the bottleneck and the light stages interleave with it.
        image_actors = 1
        image_cpus = max(0.25, math.floor(free * 4) / 4)
        image_threads = max(1, int(cpus))
    else:
        # Bigger nodes: 2-thread actors (the model's sweet spot) on 3/4 of what is free.
        image_cpus, image_threads = 2.0, 2
        share = (cpus - text_cpus - READ_CPUS - DRIVER_HEADROOM) * 0.75
        image_actors = max(1, math.floor(share / image_cpus))
    if max_image_actors:
        image_actors = min(image_actors, max_image_actors)
    # Whatever the actors leave goes to prepare actors (GPUs eat images far faster than CPUs).
    room = cpus - image_actors * image_cpus - text_cpus - READ_CPUS - DRIVER_HEADROOM
    cap = 2 if small and device == "cpu" else 64
    prepare_actors = max(1, min(cap, math.floor(room / prepare_cpus + 1e-9)))
    plan = Plan(
        image_actors=image_actors, image_cpus=image_cpus, image_gpus=image_gpus,
        image_threads=image_threads,
        image_batch=image_batch or (GPU_IMAGE_BATCH if device == "cuda" else CPU_IMAGE_BATCH),
        text_actors=1, text_cpus=text_cpus, text_gpus=text_gpus, text_threads=text_threads,
        text_batch=text_batch or (GPU_TEXT_BATCH if device == "cuda" else CPU_TEXT_BATCH),
        prepare_actors=prepare_actors, prepare_cpus=prepare_cpus, read_cpus=READ_CPUS,
        device=device)
    check(plan, cpus, gpus)
    return plan


def check(plan: Plan, cpus: float, gpus: float = 0.0) -> None:
    """Fail before starting anything if the pipeline could not make progress on this cluster:
    the actors hold their share for life, and a read task must still fit beside them."""
    need_cpus = plan.reserved_cpus() + plan.read_cpus
    if need_cpus > cpus + 1e-9:
        raise ValueError(
            f"ingest plan needs {need_cpus:g} CPUs for its actors plus one read task, the "
            f"cluster has {cpus:g}: lower --image-actors")
    need_gpus = plan.image_actors * plan.image_gpus + plan.text_actors * plan.text_gpus
    if need_gpus > gpus + 1e-9:
        raise ValueError(f"ingest plan needs {need_gpus:g} GPUs, the cluster has {gpus:g}")
