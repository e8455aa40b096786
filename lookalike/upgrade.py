"""Move a catalogue to another model without downtime, behind the evaluation harness.

    lookalike upgrade --clip-model openai/clip-vit-base-patch32      # or --image-model ...
    lookalike upgrade --text-model DIR --force --drop-old

Steps (the collection behind the alias keeps serving throughout; lookalike/store/aliases.py):
 1. load the live collection's model (recorded on it) and the new one, in this process;
 2. create the next collection for the new model and put a `pending` record on the live one:
    from then on every API write also reaches the new collection, embedded with the new model
    (the routers are told, `notify`, so they load that model before the switch);
 3. copy every product: read it from the live collection, embed its photos and text with the
    new model, write it with its source write version (so a newer API write wins), and undo
    the copy of any product deleted meanwhile;
 4. reconcile until both agree (products written or deleted while the copy ran);
 5. run the harness (lookalike/eval) with the old and with the new model on its labelled
    catalogue; switch the alias only if no headline figure drops by more than the tolerance,
    or with --force;
 6. clear the pending record and tell the running app's routers (`notify`: they resolve the
    alias at start and when told, never per request); --drop-old drops the previous
    collection once readers moved.
A refused upgrade drops the new collection and leaves everything as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lookalike.config import Settings
from lookalike.embedding.factory import image_embedder, text_embedder
from lookalike.images import decode_image
from lookalike.ingest.fetch import FetchLimits, ImageFetchError, fetch, new_client
from lookalike.ingest.record import LAST_INGEST_KEY
from lookalike.media import open_media
from lookalike.store import aliases
from lookalike.store.base import StoredProduct
from lookalike.store.milvus import MilvusStore
from lookalike.variants import phash_hex

log = logging.getLogger(__name__)
COPY_BATCH = 32  # products re-embedded per step
# After the pending record is set: a write that read "no upgrade" just before finishes within
# this; the reconcile passes catch any that takes longer.
PENDING_GRACE_S = 2.0
RECONCILE_PASSES = 5
# Figures the gate compares (harness keys): text->product and image->image retrieval.
GATE_METRICS = (("text", "p@10"), ("image", "p@10"), ("image", "ndcg@10"))


@dataclass(frozen=True)
class UpgradeOptions:
    spec: dict[str, str]  # the new model's settings (aliases.SPEC_FIELDS)
    force: bool = False
    drop_old: bool = False
    tolerance: float = 0.0  # a figure may drop this much and still pass
    eval_products: int = 500
    eval_image_queries: int = 100
    # Requests that read the old collection before the routers were told finish within this;
    # the old collection is dropped only after it (a router that was not told retries a read
    # that fails on the dropped collection on the new one: lookalike/live.py).
    drain_s: float = 5.0


def gate(before: dict[str, Any], after: dict[str, Any], tolerance: float) -> list[str]:
    """The figures the new model makes worse (empty: the upgrade may go ahead)."""
    worse = []
    for part, key in GATE_METRICS:
        old, new = (before.get(part) or {}).get(key), (after.get(part) or {}).get(key)
        if old is not None and new is not None and new < old - tolerance:
            worse.append(f"{part} {key} {old:.4f} -> {new:.4f}")
    return worse


class Upgrade:
    def __init__(self, settings: Settings, options: UpgradeOptions,
                 say: Callable[[str], None] = print,
                 notify: Callable[[], None] | None = None) -> None:
        """`notify`: tells the serving routers that the alias moved (the CLI's calls the
        app's POST /v1/admin/refresh, lookalike/notify.py)."""
        self.settings = settings
        self.options = options
        self.say = say
        self.notify = notify
        self.alias = settings.collection
        self.limits = FetchLimits.from_settings(settings)
        self.media = open_media(settings)  # uploads are stored as media: references

    def _store(self, collection: str, embedders: tuple[Any, Any]) -> MilvusStore:
        return MilvusStore.from_settings(self.settings.model_copy(update={"collection": collection}),
                                         image_dim=embedders[0].dim, text_dim=embedders[1].dim)

    def _embedders(self, spec: dict[str, str]) -> tuple[Any, Any]:
        s = self.settings.model_copy(update=spec)
        return image_embedder(s), text_embedder(s)

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        current = self._embedders(aliases.model_spec(self.settings))
        admin = self._store(self.alias, current)
        admin.ensure_collection()
        live = aliases.adopt(admin.client, self.alias, version=_version(current),
                             spec=aliases.model_spec(self.settings))
        if live.pending:
            self.say(f"an earlier upgrade to {live.pending} did not finish: dropping it")
            aliases.set_pending(admin.client, live.collection, None)
            if admin.client.has_collection(live.pending):
                admin.client.drop_collection(live.pending)
        old_spec = (live.model or {}).get("spec") or aliases.model_spec(self.settings)
        old = current if old_spec == aliases.model_spec(self.settings) else self._embedders(old_spec)
        new = self._embedders({**old_spec, **self.options.spec})
        if live.model_version and live.model_version != _version(old):
            raise RuntimeError(f"{live.collection} holds {live.model_version}, but its recorded "
                               f"settings load {_version(old)}")
        name = aliases.next_collection_name(admin.client, self.alias, _version(new))
        self.say(f"live: {live.collection} ({_version(old)})\nnew:  {name} ({_version(new)})")
        source, target = self._store(live.collection, old), self._store(name, new)
        source.ensure_collection()  # checks the dims and loads it (a rename releases it)
        target.ensure_collection()
        aliases.set_model(admin.client, name, _version(new), {**old_spec, **self.options.spec})
        aliases.set_pending(admin.client, live.collection, name)
        if self.notify is not None:
            # The routers see the pending record now: they load the new model in the
            # background, so the switch later waits for nothing (their writes read it anyway).
            self.notify()
        result: dict[str, Any] = {"live": live.collection, "candidate": name,
                                  "old_model": _version(old), "new_model": _version(new)}
        switched = False
        try:
            time.sleep(PENDING_GRACE_S)
            result["copied"] = self._copy(source, target, new, list(source.newest_versions()))
            result["reconciled"] = self._reconcile(source, target, new)
            self.say(f"copied {result['copied']} products; evaluating both models")
            result["eval_old"] = self._evaluate(old)
            result["eval_new"] = self._evaluate(new)
            worse = gate(result["eval_old"], result["eval_new"], self.options.tolerance)
            result["worse"] = worse
            if worse and not self.options.force:
                self.say("refused: the new model is worse (" + "; ".join(worse) + "); "
                         "--force switches anyway")
                return result
            result["reconciled"] += self._reconcile(source, target, new)
            # `lookalike status` and /v1/info read the last ingest's record from the live one.
            record = source.get_property(LAST_INGEST_KEY)
            if record:
                target.set_property(LAST_INGEST_KEY, record)
            aliases.switch(admin.client, self.alias, name)
            switched = True
            result["switched_at"] = time.time()
            self.say(f"switched {self.alias} -> {name}" + (" (forced)" if worse else ""))
        finally:
            result["switched"] = switched
            aliases.set_pending(admin.client, live.collection, None)
            if not switched:
                # Writes that read the record before it was cleared may still land: wait.
                time.sleep(PENDING_GRACE_S)
                target.drop()
            result["seconds"] = round(time.monotonic() - started, 1)
        if self.notify is not None:
            self.notify()
        if self.options.drop_old:
            time.sleep(self.options.drain_s)
            admin.client.drop_collection(live.collection)
            self.say(f"dropped {live.collection}")
            result["dropped"] = live.collection
        else:
            self.say(f"{live.collection} is kept for a rollback; `lookalike upgrade --drop-old` "
                     "drops it once the app runs the new model's settings")
        for store in (source, target, admin):
            store.close()
        return result

    # -- copy and reconcile ---------------------------------------------------------------------

    def _copy(self, source: MilvusStore, target: MilvusStore, new: tuple[Any, Any],
              pids: list[str]) -> int:
        copied = 0
        client = new_client(self.limits)
        try:
            for start in range(0, len(pids), COPY_BATCH):
                chunk = pids[start:start + COPY_BATCH]
                records = list(source.get(chunk).values())
                if records:
                    target.upsert(self._embed(records, new, client))
                # A product deleted while it was being copied must not come back in the copy.
                still = source.newest_versions(chunk)
                gone = [p for p in chunk if p not in still]
                target.delete(gone)
                copied += sum(rec.product.product_id in still for rec in records)
        finally:
            client.close()
        return copied

    def _read(self, ref: str, client: Any) -> bytes:
        """A stored image's bytes: an upload from the media store, anything else (a catalogue
        path, catalog: reference or URL) as the ingest reads it."""
        if self.media.owns(ref):
            found = self.media.locate(ref)
            if found is None:
                raise ImageFetchError(f"{ref}: not in the media store")
            return found if isinstance(found, bytes) else Path(found).read_bytes()
        return fetch(ref, self.limits, client)

    def _embed(self, records: list[Any], new: tuple[Any, Any], client: Any) -> list[StoredProduct]:
        """The stored products with the new model's vectors; the same preprocessing as every
        other caller (the embedders' own `embed`)."""
        texts = new[1].embed([rec.product.text() for rec in records])
        out = []
        for rec, text_vector in zip(records, texts):
            images = [decode_image(self._read(ref, client)) for ref in rec.product.images]
            out.append(StoredProduct(rec.product, new[0].embed(images), text_vector,
                                     rec.content_hash, _version(new), rec.source,
                                     write_version=rec.write_version,
                                     # Variant groups and photo hashes do not depend on the model.
                                     group_id=rec.group_id,
                                     phashes=tuple(phash_hex(img) for img in images)))
        return out

    def _reconcile(self, source: MilvusStore, target: MilvusStore, new: tuple[Any, Any]) -> int:
        """Re-copy products the live collection has newer than the target; remove the
        target's products the live one no longer has (then re-check them: one written back
        meanwhile is copied again). Passes until nothing differs."""
        fixed = 0
        for _ in range(RECONCILE_PASSES):
            have, got = source.newest_versions(), target.newest_versions()
            stale = [p for p, v in have.items() if got.get(p, -1) < v]
            extra = [p for p in got if p not in have]
            if not stale and not extra:
                return fixed
            target.delete(extra)
            back = list(source.newest_versions(extra))
            fixed += self._copy(source, target, new, stale + back) + len(extra)
        log.warning("the catalogue still changed after %d reconcile passes", RECONCILE_PASSES)
        return fixed

    # -- the quality gate -----------------------------------------------------------------------

    def _evaluate(self, embedders: tuple[Any, Any]) -> dict[str, Any]:
        from lookalike.eval.runner import evaluate

        eval_settings = self.settings.model_copy(update={"collection": f"{self.alias[:200]}_eval"})
        out = evaluate(eval_settings, catalogue="demo", n_products=self.options.eval_products,
                       work_dir=self.settings.data_dir / "eval",
                       image_queries=self.options.eval_image_queries, ann_queries=0,
                       embedders=embedders)
        text, image = out.get("text") or {}, out.get("image") or {}
        return {"text": {"p@10": text.get("p@10"), "queries": text.get("queries")},
                "image": {k: image.get(k) for k in ("p@10", "ndcg@10", "recall@10", "queries")}}


def _version(embedders: tuple[Any, Any]) -> str:
    return f"{embedders[0].version}|{embedders[1].version}"

