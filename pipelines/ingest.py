"""The ingest job: manifest -> prepare tasks -> image/text embedder actors -> one Milvus writer.

    manifest pre-pass (driver)      validate rows, attach stored content hashes
      -> prepare (Ray tasks)        read images, hash, skip unchanged, decode + preprocess
      -> ImageStage (actor pool)    ImageEmbedder.__call__
      -> TextStage (actor pool)     TextEmbedder.__call__
      -> StoreWriter (driver)       regroup per product, upsert <=1,000 rows a call
    then --delete-missing, one flush, and a wait for the indexes (--no-wait-index skips it).

Memory: the rows in flight (images, pixels, vectors) stream through Ray Data under a capped
object-store budget, the writer holds one batch, and the pre-pass reads the manifest 1,000 rows
at a time. What grows with the catalogue: the worklist (ids, paths and hashes, in Ray's object
store, which spills to disk) and the set of the manifest's ids that --delete-missing keeps (in
the driver, on the order of 100 bytes a product).
The stages are the core's (lookalike.ingest.stages); this module only wires them into Ray Data.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data
from ray.data import ActorPoolStrategy, Datasource, ExecutionResources, ReadTask, TaskPoolStrategy
from ray.data.block import BlockMetadata

from lookalike.config import Settings
from lookalike.ingest.fetch import FetchLimits
from lookalike.ingest.plan import NoRoom, Plan, Room, plan_resources, wait_for_plan
from lookalike.ingest.record import ingest_record, save_last_ingest
from lookalike.ingest.stages import ImageStage, PrepareStage, TextStage, probe_models
from lookalike.ingest.summary import ErrorSink, Summary
from lookalike.ingest.worklist import iter_chunks, store_lookup
from lookalike.ingest.writer import StoreWriter, flush_and_wait_for_index
from lookalike.store import aliases
from lookalike.store.base import catalog_source
from lookalike.store.milvus import WRITE_BATCH_ROWS, MilvusStore

log = logging.getLogger("lookalike.ingest")

PREPARE_BATCH = 8  # products per prepare call: small batches keep the stream smooth
# Products per worklist block (one read task each): enough blocks for every prepare actor to
# have work, few enough that per-task overhead stays negligible (20k products: 313 reads).
WORKLIST_BLOCK = 64
# Object-store budget for rows in flight. Preprocessed pixels are 600 KB an image and prepare
# outruns the image model ~5x, so without a cap Ray Data would queue gigabytes ahead of it.
IN_FLIGHT_BYTES = 256 * 1024 * 1024
DELETE_CHUNK = 1000
# Beyond --wait-s for room, what the embedder actors get to start (load their models) before
# the job gives up on them: placed on the nodes the plan saw, unless something took the CPUs.
ACTOR_START_S = 180


@dataclass(frozen=True)
class IngestOptions:
    manifest: Path
    delete_missing: bool = False
    errors_out: Path | None = None
    num_gpus: float = 0.0
    image_batch: int | None = None
    text_batch: int | None = None
    write_batch: int = WRITE_BATCH_ROWS  # image rows per upsert call
    max_image_actors: int | None = None
    in_flight_bytes: int = IN_FLIGHT_BYTES
    # The catalogue's name: its products are stored with source "catalog:<name>", and
    # --delete-missing only ever deletes products of that source.
    source: str = "default"
    # Wait for the vector indexes after the final flush (no slow window after the job).
    wait_index: bool = True
    index_timeout_s: float = 600.0
    wait_s: float = 120.0  # for free CPUs, then NoRoom


def free_room() -> Room:
    """What the connected cluster has free now, node by node (not its totals: replicas of a
    Serve app on the same cluster hold their CPUs for life)."""
    from ray._private.state import available_resources_per_node

    free = available_resources_per_node()
    return Room(node_cpus=tuple(float(r.get("CPU", 0)) for r in free.values()),
                gpus=sum(float(r.get("GPU", 0)) for r in free.values()),
                total_cpus=float(ray.cluster_resources().get("CPU", 0)))


def make_plan(opts: IngestOptions) -> Plan:
    return wait_for_plan(
        free_room,
        lambda room: plan_resources(room.cpus, room.gpus, num_gpus=opts.num_gpus,
                                    image_batch=opts.image_batch, text_batch=opts.text_batch,
                                    max_image_actors=opts.max_image_actors,
                                    node_cpus=room.node_cpus,
                                    # One node: this one (a local Ray, or the driver on a
                                    # one-node cluster), so its cores are known.
                                    cores=os.cpu_count() if len(room.node_cpus) == 1 else None),
        wait_s=opts.wait_s, say=log.warning)


def _read_chunk(ref: Any) -> list[pa.Table]:
    return [ray.get(ref)]


class WorklistSource(Datasource):
    """The pre-pass's chunks, already in the object store, as a Ray Data source.

    Why not ray.data.from_arrow_refs: it runs one metadata task per table before anything
    starts (thousands for a large catalogue); the driver already knows rows and bytes.
    """

    def __init__(self, chunks: list[tuple[Any, int, int]]) -> None:
        self.chunks = chunks  # (object ref, rows, bytes)

    def estimate_inmemory_data_size(self) -> int:
        return sum(size for _, _, size in self.chunks)

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        return [ReadTask(partial(_read_chunk, ref),
                         BlockMetadata(num_rows=rows, size_bytes=size, exec_stats=None, input_files=None))
                for ref, rows, size in self.chunks]


def build_dataset(chunks: list[tuple[Any, int, int]], plan: Plan, settings: Settings,
                  dims: dict[str, Any], load_now: bool = False) -> ray.data.Dataset:
    model_settings = settings.model_copy(update={"device": plan.device})
    # A small fractional CPU on the reads: Ray's default of 1 CPU a task is what starved the
    # trial pipeline of reads once the actors held their share.
    ds = ray.data.read_datasource(WorklistSource(chunks), num_cpus=plan.read_cpus,
                                  compute=TaskPoolStrategy(size=max(2, plan.prepare_actors)))
    ds = ds.map_batches(
        PrepareStage, batch_size=PREPARE_BATCH, batch_format="numpy",
        fn_constructor_kwargs={"limits": FetchLimits.from_settings(settings),
                               "resize": dims["image_resize"]},
        num_cpus=plan.prepare_cpus, compute=ActorPoolStrategy(size=plan.prepare_actors))
    ds = ds.map_batches(
        ImageStage, batch_size=plan.image_batch, batch_format="numpy",
        fn_constructor_kwargs={"settings": model_settings, "num_threads": plan.image_threads,
                               "dim": dims["image_dim"], "load_now": load_now},
        num_cpus=plan.image_cpus, num_gpus=plan.image_gpus or None,
        compute=ActorPoolStrategy(size=plan.image_actors))
    return ds.map_batches(
        TextStage, batch_size=plan.text_batch, batch_format="numpy",
        fn_constructor_kwargs={"settings": model_settings, "num_threads": plan.text_threads,
                               "dim": dims["text_dim"], "load_now": load_now},
        num_cpus=plan.text_cpus, num_gpus=plan.text_gpus or None,
        compute=ActorPoolStrategy(size=plan.text_actors))


_PROBED: dict[tuple[Any, ...], dict[str, Any]] = {}


def _model_key(settings: Settings) -> tuple[Any, ...]:
    key: list[Any] = [settings.image_model, settings.image_weights, settings.text_model,
                      settings.clip_model]
    for value in (settings.image_weights, settings.text_model, settings.clip_model):
        path = Path(value)
        if value and path.exists():  # a local checkpoint or model dir may be replaced in place
            key.append(path.stat().st_mtime_ns)
    return tuple(key)


def _probe(settings: Settings, plan: Plan) -> dict[str, Any]:
    """Model versions and dims, remembered for this process (repeated runs in one process, as
    in tests and notebooks, load the models once instead of every time)."""
    key = _model_key(settings)
    if key not in _PROBED:
        # max_calls=1: the worker exits afterwards instead of idling with both models in memory.
        task = ray.remote(num_cpus=plan.read_cpus, max_calls=1)(probe_models)
        _PROBED[key] = ray.get(task.remote(settings.model_copy(update={"device": "cpu"})))
    return _PROBED[key]


def _put(table: pa.Table) -> tuple[Any, int, int]:
    return ray.put(table), table.num_rows, table.nbytes


def delete_missing(store: MilvusStore, keep: set[str], source: str) -> int:
    """Remove this catalogue's stored products that its manifest no longer lists (ids collected
    first, then deleted, so the scan never runs over a collection it is changing). Products of
    other sources (PUT through the API, other catalogues) are never touched."""
    gone = [pid for pid in store.iter_product_ids(source=source) if pid not in keep]
    deleted = 0
    for start in range(0, len(gone), DELETE_CHUNK):
        deleted += store.delete(gone[start:start + DELETE_CHUNK])
    return deleted


def run_ingest(opts: IngestOptions, settings: Settings) -> Summary:
    """Run the job on the connected Ray cluster (ray.init() is the caller's)."""
    summary = Summary()
    errors = ErrorSink(summary, opts.errors_out)
    source = catalog_source(opts.source)
    plan = make_plan(opts)
    log.info("ingest plan", extra={"fields": {"event": "ingest_plan", **plan.as_dict()}})
    at = time.monotonic()
    probe = _probe(settings, plan)
    summary.probe_s = time.monotonic() - at
    summary.model_version = probe["model_version"]
    at = time.monotonic()
    store = MilvusStore.from_settings(settings, image_dim=probe["image_dim"], text_dim=probe["text_dim"])
    ctx = ray.data.DataContext.get_current()
    saved_limits, saved_wait = ctx.execution_options.resource_limits, ctx.wait_for_min_actors_s
    try:
        ctx.execution_options.resource_limits = ExecutionResources(
            object_store_memory=opts.in_flight_bytes)
        # Actor pools wait for their actors this long, then fail (Ray's default waits forever).
        ctx.wait_for_min_actors_s = int(opts.wait_s) + ACTOR_START_S
        store.ensure_collection()
        # Never write one model's vectors into a collection of another (after an upgrade).
        aliases.check_writer(store.client, settings.collection, aliases.model_spec(settings))
        keep: set[str] = set()
        summary.collection_s, at = time.monotonic() - at, time.monotonic()
        # Small blocks: Ray Data hands a whole block to one prepare actor, so 1,000-row blocks
        # would leave the others idle. take() copies the rows (a pickled slice could drag the
        # whole chunk's buffers along).
        chunks = []
        # A product the store lacks (or holds from other models) will be embedded: the stages
        # load their models from the start.
        load_now = False
        for table in iter_chunks(opts.manifest, store_lookup(store, source), summary.model_version,
                                 summary, errors, keep, catalog_root=settings.catalog_root):
            load_now = load_now or bool(pc.any(pc.equal(table["stored_hash"], "")).as_py())
            chunks.extend(_put(table.take(list(range(start, min(start + WORKLIST_BLOCK, table.num_rows)))))
                          for start in range(0, table.num_rows, WORKLIST_BLOCK))
        summary.worklist_s = time.monotonic() - at
        writer = StoreWriter(store, summary, errors, summary.model_version, opts.write_batch,
                             source=source)
        if chunks:
            try:
                for batch in build_dataset(chunks, plan, settings, probe, load_now).iter_batches(
                        batch_size=None, batch_format="numpy", prefetch_batches=1):
                    writer.consume(batch)
            except ray.exceptions.GetTimeoutError as exc:
                raise NoRoom(f"the ingest's actors were not all started within "
                             f"{ctx.wait_for_min_actors_s} s (plan: {plan.as_dict()}); free "
                             f"CPUs now: {free_room().describe()}") from exc
        writer.close()
        del chunks
        if opts.delete_missing and not keep:
            # A wrong file or a broken export must not wipe the catalogue.
            log.warning("--delete-missing ignored: the manifest has no valid product")
        elif opts.delete_missing:
            # Products whose images failed this time are still listed, so they are kept.
            summary.deleted = delete_missing(store, keep, source)
        writer.group_variants(settings)
        flush_and_wait_for_index(store, summary, wait=opts.wait_index,
                                 timeout_s=opts.index_timeout_s)
        summary.finish()
        # Only the file name: the record is shown on the public page (GET /v1/info).
        save_last_ingest(store, ingest_record(summary.as_dict(), manifest=opts.manifest.name,
                                              source=source))
    finally:
        # Leave the caller's context as it was.
        ctx.execution_options.resource_limits, ctx.wait_for_min_actors_s = saved_limits, saved_wait
        errors.close()
        store.close()
    summary.emit()
    return summary
