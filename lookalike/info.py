"""What the catalogue holds, for GET /v1/info (the search page's header line, `lookalike status`).

Cheap on purpose: one count query and one describe of the collection, no scan, so the page can
ask on every load.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from lookalike.config import Settings
from lookalike.ingest.record import load_last_ingest
from lookalike.store import lite_version
from lookalike.workers import store_call

if TYPE_CHECKING:
    from lookalike.store.base import ProductStore


def model_names(model_version: str) -> dict[str, str]:
    """"tf_efficientnet_lite0:packaged@ab12|all-MiniLM-L6-v2:packaged:max128@cd34" ->
    {"image": "tf_efficientnet_lite0", "text": "all-MiniLM-L6-v2"}: the names a person
    recognises; the full version (weights fingerprints) is returned beside them."""
    image, _, text = model_version.partition("|")
    return {"image": image.split(":", 1)[0].split("@", 1)[0],
            "text": text.split(":", 1)[0].split("@", 1)[0]}


def store_warnings(settings: Settings) -> list[str]:
    """What start-up must say loudly about the store (the ready banner, `lookalike status`,
    GET /v1/info): an embedded milvus-lite of a version the search patch does not know."""
    unsupported = lite_version.unsupported_version() if settings.embedded else None
    return [unsupported] if unsupported else []


async def catalogue_info(*, store: ProductStore, settings: Settings,
                         model_version: str) -> dict[str, Any]:
    products, last_ingest = await asyncio.gather(store_call(store.count),
                                                 store_call(load_last_ingest, store))
    return {"products": products, "collection": settings.collection,
            "model": {**model_names(model_version), "version": model_version},
            "last_ingest": last_ingest, "warnings": store_warnings(settings)}
