"""A typed Python client of the lookalike HTTP API (sync and asyncio), built on httpx.

    from lookalike.client import Client

    with Client("http://127.0.0.1:8000", admin_key="...") as lookalike:
        hits = lookalike.search("red dress", filters={"size": ["S", "M"], "max_price": 60})
        same = lookalike.search(image="photo.jpg", top_k=5)          # a path, bytes, PIL or URL
        print([(h.product_id, h.score) for h in hits], same.product_ids[0])

Errors of the API raise LookalikeError (`.status`, `.code`, `.message`); a 503 `overloaded`
is retried with exponential backoff first. AsyncClient has the same methods, awaited.
"""

from lookalike.client._async import AsyncClient
from lookalike.client._core import LookalikeError, Retry
from lookalike.client._models import (
    Facets,
    Filters,
    Hit,
    Info,
    ModelInfo,
    PriceSpan,
    Product,
    SearchResult,
    Variant,
)
from lookalike.client._sync import Client

__all__ = ["AsyncClient", "Client", "Facets", "Filters", "Hit", "Info", "LookalikeError",
           "ModelInfo", "PriceSpan", "Product", "Retry", "SearchResult", "Variant"]
