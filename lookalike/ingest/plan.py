"""Sizing the ingest pipeline's Ray resources from what the cluster has (pure, unit-tested).

Why this exists: Ray Data actors hold their CPU reservation for their whole life, while every
task asks for its own. A trial pipeline whose actors reserved 1.5 of 2 CPUs and whose read
tasks asked for Ray's default 1 CPU never scheduled a single read (backpressured on its
ResourceBudget) and hung. So every stage here gets an explicit, fractional share, and
`check()` proves actors + at least one task of each kind fit in the cluster with room left.

Logical CPUs are reservations, not threads: on a 2-core box each of the two image actors
reserves a quarter CPU but runs a whole torch thread, because the model is the bottleneck and
the other stages are light and interleave with it.

The plan is sized on what is FREE (a cluster that serves the app has most of its CPUs held by
the Serve replicas, for their whole life), node by node (an actor runs on one node, so 1 CPU
free on each of two nodes is no room for a 1.5-CPU actor). `wait_for_plan` waits a bounded
time for room, saying what it waits for, and then fails with a message (`NoRoom`) instead of
leaving the job RUNNING at 0 rows behind actors that can never be placed.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
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
SAY_EVERY_S = 10.0  # how often a waiting job says what it waits for


class NoRoom(RuntimeError):
    """The cluster did not have the free resources the ingest needs within the wait."""


@dataclass(frozen=True)
class Room:
    """What a cluster has free: CPUs node by node, GPUs in all; its CPUs in all (for messages)."""

    node_cpus: tuple[float, ...]
    gpus: float = 0.0
    total_cpus: float = 0.0

    @property
    def cpus(self) -> float:
        return sum(self.node_cpus)

    def describe(self) -> str:
        nodes = ", ".join(f"{c:g}" for c in sorted(self.node_cpus, reverse=True)) or "none"
        return (f"{self.cpus:g} of the cluster's {self.total_cpus:g} CPUs are free (per node: "
                f"{nodes}); the rest is held by running actors and tasks, e.g. the Serve app's "
                "replicas, which hold theirs for as long as they run")


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
                   max_image_actors: int | None = None,
                   node_cpus: Sequence[float] | None = None, cores: int | None = None) -> Plan:
    """Split `cpus`/`gpus` (what the cluster has free, ray.available_resources()) between
    the stages.

    Actors: image embedders, one text embedder, prepare (read/decode/preprocess). Tasks: the
    manifest-chunk reads, at READ_CPUS each, always left room to run. num_gpus > 0 puts both
    embedders on CUDA: one image actor per whole GPU asked for (3/4 of it; a fractional ask
    gets one actor), and the text actor gets the remaining quarter. `node_cpus` (free CPUs of
    each node): the actors are shrunk until they can be placed node by node. `cores`: the
    node's physical cores when known (a one-node Ray); its CPUs are scheduling slots and may
    be more (`lookalike demo` adds the app's replica slots), and one-thread image actors beyond
    the cores only take turns on them.
    """
    if cpus < 1:
        raise ValueError(f"the ingest job needs at least 1 free CPU, {cpus:g} are free")
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
        # One one-thread image actor per core, sharing what is free (in quarters): a second
        # torch thread buys this model little (two 1-thread processes 55.8 img/s against 41.7
        # for one 2-thread process at its best batch, issue 16), and the light stages
        # interleave with the model.
        image_actors = max(1, min(int(cpus), cores) if cores else int(cpus))
        image_cpus = max(0.25, math.floor(free * 4 / image_actors) / 4)
        image_threads = 1
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
    if node_cpus is not None:
        plan = _fit_to_nodes(plan, node_cpus)
    check(plan, cpus, gpus, node_cpus)
    return plan


def _asks(plan: Plan) -> list[float]:
    """Each actor's CPUs, and one read task's."""
    return ([plan.image_cpus] * plan.image_actors + [plan.text_cpus] * plan.text_actors
            + [plan.prepare_cpus] * plan.prepare_actors + [plan.read_cpus])


def fits_on_nodes(asks: Sequence[float], node_cpus: Sequence[float]) -> bool:
    """First-fit decreasing: can every ask be placed on some node's free CPUs?"""
    free = sorted(node_cpus, reverse=True)
    for ask in sorted(asks, reverse=True):
        for i, room in enumerate(free):
            if room + 1e-9 >= ask:
                free[i] = room - ask
                break
        else:
            return False
    return True


def _fit_to_nodes(plan: Plan, node_cpus: Sequence[float]) -> Plan:
    """Smaller image actors (in quarters), then fewer prepare actors, until they fit."""
    while not fits_on_nodes(_asks(plan), node_cpus):
        if plan.device == "cpu" and plan.image_cpus > 0.25:
            plan = dataclasses.replace(plan, image_cpus=plan.image_cpus - 0.25)
        elif plan.prepare_actors > 1:
            plan = dataclasses.replace(plan, prepare_actors=plan.prepare_actors - 1)
        else:
            break  # check() says what does not fit
    return plan


def check(plan: Plan, cpus: float, gpus: float = 0.0,
          node_cpus: Sequence[float] | None = None) -> None:
    """Fail before starting anything if the pipeline could not make progress on this cluster:
    the actors hold their share for life, and a read task must still fit beside them."""
    need_cpus = plan.reserved_cpus() + plan.read_cpus
    if need_cpus > cpus + 1e-9:
        raise ValueError(
            f"ingest plan needs {need_cpus:g} CPUs for its actors plus one read task, "
            f"{cpus:g} are free: lower --image-actors")
    if node_cpus is not None and not fits_on_nodes(_asks(plan), node_cpus):
        raise ValueError(
            f"ingest plan's actors ({plan.image_actors} x {plan.image_cpus:g} CPU image, "
            f"{plan.text_actors} x {plan.text_cpus:g} text, {plan.prepare_actors} x "
            f"{plan.prepare_cpus:g} prepare) do not fit on the nodes' free CPUs")
    need_gpus = plan.image_actors * plan.image_gpus + plan.text_actors * plan.text_gpus
    if need_gpus > gpus + 1e-9:
        raise ValueError(f"ingest plan needs {need_gpus:g} GPUs, the cluster has {gpus:g}")


def wait_for_plan(read_room: Callable[[], Room], make: Callable[[Room], Plan], *, wait_s: float,
                  say: Callable[[str], None], poll_s: float = 1.0,
                  clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> Plan:
    """The plan for the first room that holds one, polled for up to `wait_s` seconds; says what
    it waits for every SAY_EVERY_S, then raises NoRoom with what was missing and what to do."""
    deadline = clock() + wait_s
    next_say = clock()
    while True:
        room = read_room()
        try:
            return make(room)
        except ValueError as exc:
            reason = str(exc)
        now = clock()
        if now >= deadline:
            raise NoRoom(
                f"no room for the ingest after waiting {wait_s:g} s: {reason}. {room.describe()}. "
                "Free some (scale the Serve app down, stop other jobs), add a node or give Ray "
                "more logical CPUs (`ray start --num-cpus N`), or wait longer (--wait-s); then "
                "run the job again (it resumes)")
        if now >= next_say:
            say(f"waiting up to {deadline - now:.0f} s for free CPUs: {reason}. {room.describe()}")
            next_say = now + SAY_EVERY_S
        sleep(poll_s)
