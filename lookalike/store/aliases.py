"""The served name is a Milvus alias over a collection named by model version.

`LOOKALIKE_COLLECTION` ("products") is an alias; the vectors live in `products_<model digest>_g<n>`
(n counts the collections made for one alias). Milvus resolves an alias per request, and
`alter_alias` moves it in one step, so a model upgrade (lookalike/upgrade.py) fills a new
collection while the old one serves and then switches every reader at once.

Two small records travel as collection properties (Milvus keeps them with the collection):

- `lookalike.model` on every collection: the model version that made its vectors and the
  settings that load that model ({"image_model", "image_weights", "text_model", "clip_model"}),
  so a reader embeds its queries with the very model the collection holds.
- `lookalike.pending` on the live collection while an upgrade re-embeds: the target collection's
  name. The router reads it before every write and writes the product to both collections,
  embedding for the target with the target's own model (lookalike/live.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pymilvus import MilvusException

if TYPE_CHECKING:
    from lookalike.config import Settings

log = logging.getLogger(__name__)

MODEL_KEY = "lookalike.model"
PENDING_KEY = "lookalike.pending"
SPEC_FIELDS = ("image_model", "image_weights", "text_model", "clip_model")


def model_spec(settings: Settings) -> dict[str, str]:
    """The settings that decide which model embeds (and so which vectors a collection holds)."""
    return {k: str(getattr(settings, k)) for k in SPEC_FIELDS}


def collection_name(alias: str, model_version: str, generation: int) -> str:
    digest = hashlib.sha256(model_version.encode()).hexdigest()[:10]
    return f"{alias[:200]}_{digest}_g{generation}"


def retired(client: Any, alias: str) -> list[str]:
    """The alias's collections that neither serve nor take part in an upgrade."""
    target = resolve(client, alias)
    keep = {target.collection, target.pending} if target else set()
    pattern = re.compile(re.escape(alias[:200]) + r"_[0-9a-f]{10}_g\d+")
    return sorted(n for n in client.list_collections() if pattern.fullmatch(n) and n not in keep)


def next_collection_name(client: Any, alias: str, model_version: str) -> str:
    """A fresh name for `alias`'s next collection: one generation past every existing one."""
    pattern = re.compile(re.escape(alias[:200]) + r"_[0-9a-f]{10}_g(\d+)")
    generations = [int(m.group(1)) for name in client.list_collections()
                   if (m := pattern.fullmatch(name))]
    return collection_name(alias, model_version, max(generations, default=0) + 1)


@dataclass(frozen=True)
class Target:
    """What a name resolves to now."""

    name: str  # the alias (or plain collection) asked about
    collection: str  # the collection it resolves to
    model: dict[str, Any] | None  # {"version", "spec"}; None for a collection made before
    pending: str | None  # the target collection of an upgrade in progress

    @property
    def aliased(self) -> bool:
        return self.collection != self.name

    @property
    def model_version(self) -> str | None:
        return self.model["version"] if self.model else None


def _json(value: str | None) -> Any:
    try:
        return json.loads(value) if value else None
    except ValueError:
        return None


def resolve(client: Any, name: str) -> Target | None:
    """The collection behind `name` and its records; None if neither exists. Two metadata
    requests (pymilvus's has_collection is a describe too): a describe of a missing name
    raises the same exception as a lost connection, which must not read as "no collection"."""
    if not client.has_collection(name):
        return None
    desc = client.describe_collection(name)
    props = desc.get("properties") or {}
    return Target(name=name, collection=desc.get("collection_name") or name,
                  model=_json(props.get(MODEL_KEY)), pending=props.get(PENDING_KEY) or None)


def current_collection(client: Any, alias: str) -> str | None:
    """The collection `alias` names now, in one metadata request (no collection is read):
    cheap enough for a router's slow safety re-check. None if it is no alias (any more)."""
    try:
        return client.describe_alias(alias).get("collection_name") or None
    except MilvusException:
        return None


def set_model(client: Any, collection: str, version: str, spec: dict[str, str]) -> None:
    client.alter_collection_properties(
        collection, properties={MODEL_KEY: json.dumps({"version": version, "spec": spec})})


def set_pending(client: Any, collection: str, target: str | None) -> None:
    # An empty value rather than dropping the key: every Milvus version can set a property.
    client.alter_collection_properties(collection, properties={PENDING_KEY: target or ""})


def adopt(client: Any, name: str, *, version: str, spec: dict[str, str]) -> Target:
    """Make `name` an alias (the migration of a deployment made before aliases).

    A plain collection called `name` is renamed to a versioned name and the alias created over
    it: Milvus refuses an alias that shares a collection's name. Requests of other processes
    that fall between the rename and the alias fail once; that happens only at the first start
    of this version. Concurrent starts race safely: the loser finds the alias made.
    The model record of a collection made before records is the caller's model: the one that
    has been serving it (as before, only its dimensions were ever checked).
    """
    target = resolve(client, name)
    if target is None:
        raise LookupError(f"no collection or alias {name!r}")
    if not target.aliased:
        concrete = collection_name(name, version, 1)
        try:
            client.rename_collection(name, concrete)
            client.create_alias(concrete, name)
            # milvus-lite releases a renamed collection: load it again before anyone reads.
            client.load_collection(concrete)
            log.info("collection %s renamed %s and served through the alias %s", name, concrete,
                     name)
        except MilvusException as exc:
            again = resolve(client, name)
            if again is None or not again.aliased:
                raise
            log.info("another process migrated %s meanwhile (%s)", name, exc)
        target = resolve(client, name)
        assert target is not None
    if target.model is None:
        rows = client.query(target.collection, filter="image_index == 0",
                            output_fields=["model_version"], limit=1)
        if rows and rows[0].get("model_version") not in (None, "", version):
            log.warning("collection %s: its rows name the model %s, the app runs %s; recorded "
                        "as %s (re-embed with `lookalike upgrade` if they really differ)",
                        target.collection, rows[0]["model_version"], version, version)
        set_model(client, target.collection, version, spec)
        target = resolve(client, name)
        assert target is not None
    return target


def check_writer(client: Any, name: str, spec: dict[str, str]) -> None:
    """Refuse a writer (the ingest job) whose model settings are not those the live collection
    records: its vectors would mix with another model's. Settings, not versions, are compared,
    so a GPU (fp16) app and a CPU-probed job with the same settings agree."""
    from lookalike.store.base import StoreError

    target = resolve(client, name)
    recorded = (target.model or {}).get("spec") if target else None
    if recorded and {k: recorded.get(k) for k in SPEC_FIELDS} != spec:
        raise StoreError(
            f"{name} serves {target.collection}, embedded with {recorded}; this job is set up "
            f"for {spec}. Use the collection's model settings (LOOKALIKE_*), or move the "
            "catalogue with `lookalike upgrade` first")


def switch(client: Any, alias: str, collection: str) -> None:
    """Point the alias at `collection`: one request, every later request reads the new one."""
    client.alter_alias(collection, alias)
