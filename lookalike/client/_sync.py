"""The blocking client: the requests of lookalike/client/_core.py, sent with httpx.Client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from lookalike.client import _core
from lookalike.client._core import DEFAULT_RETRY, FiltersInput, ImageInput, Retry
from lookalike.client._models import Facets, Info, Product, SearchResult

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11 only

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 30.0


def headers(admin_key: str | None, call: _core.Call) -> dict[str, str]:
    # The key goes with writes only: reads never need it, so it stays out of their logs.
    return {"Authorization": f"Bearer {admin_key}"} if call.admin and admin_key else {}


class Client:
    """A blocking client of the lookalike HTTP API; use it as a context manager (or call
    close()). Errors of the API raise LookalikeError; a 503 `overloaded` is retried first as
    `retry` says (Retry(retries=0) turns that off). Network failures are httpx's own errors.

    `sleep` and `transport` are for tests: the retry's wait, and httpx's transport."""

    def __init__(self, base_url: str = DEFAULT_URL, *, admin_key: str | None = None,
                 timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT_S,
                 retry: Retry = DEFAULT_RETRY, sleep: Callable[[float], None] = time.sleep,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)
        self._admin_key, self._retry, self._sleep = admin_key, retry, sleep

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: _core.Call) -> Any:
        n = 0
        while True:
            resp = self._http.request(call.method, call.path, headers=headers(self._admin_key, call),
                                      **call.kwargs())
            if not resp.is_error:
                return call.parse(resp)
            error = _core.error_of(resp)
            delay = self._retry.delay(n, error)
            if delay is None:
                raise error
            self._sleep(delay)
            n += 1

    def search(self, text: str | None = None, *, image: ImageInput | None = None,
               filters: FiltersInput = None, top_k: int = 10, image_weight: float | None = None,
               infer: str | None = None, crop: tuple[float, float, float, float] | None = None,
               not_like: str | Sequence[str] | None = None, diversity: float | None = None,
               drop_inferred: Sequence[str] | None = None,
               collapse_variants: bool | None = None, offset: int | None = None) -> SearchResult:
        """Search by text, photo or both (POST /v1/search).

        image: a file path, bytes, a PIL image, or an http(s) URL the server fetches.
        filters: Filters, or a dict of category / color / size (a string or a list: any of
        them; a value may hold commas) and min_price / max_price. The options left as None
        take the API's defaults:
        image_weight (0..1, how much the photo counts), infer ("boost" | "filter" | "off"),
        crop ((x, y, w, h) fractions of the photo), not_like (product ids), diversity (0..1),
        drop_inferred (inferred attributes to ignore), collapse_variants (one hit per group),
        offset (where the page starts; `pages` follows next_offset for you).
        """
        return self._send(_core.search(
            text=text, image=image, filters=filters, top_k=top_k, image_weight=image_weight,
            infer=infer, crop=crop, not_like=not_like, diversity=diversity,
            drop_inferred=drop_inferred, collapse_variants=collapse_variants, offset=offset))

    def similar(self, product_id: str, *, top_k: int = 10, filters: FiltersInput = None,
                cheaper: bool = False, other_color: bool = False,
                same_category: bool = False, offset: int | None = None,
                collapse_variants: bool | None = None) -> SearchResult:
        """More like this product, never the product itself nor its variants
        (GET /v1/products/{id}/similar); cheaper / other_color / same_category narrow
        relative to it."""
        return self._send(_core.similar(product_id, top_k=top_k, filters=filters,
                                        cheaper=cheaper, other_color=other_color,
                                        same_category=same_category, offset=offset,
                                        collapse_variants=collapse_variants))

    def recommend(self, positive: str | Sequence[str] | None = None, *,
                  negative: str | Sequence[str] | None = None, image: ImageInput | None = None,
                  strategy: str | None = None, top_k: int = 10,
                  filters: FiltersInput = None, offset: int | None = None,
                  collapse_variants: bool | None = None) -> SearchResult:
        """More like these (`positive` ids and/or a photo), not like those (`negative` ids)
        (POST /v1/recommend); strategy "average_vector" (the API's default) or "best_score"."""
        return self._send(_core.recommend(positive=positive, negative=negative, image=image,
                                          strategy=strategy, top_k=top_k, filters=filters,
                                          offset=offset, collapse_variants=collapse_variants))

    def pages(self, method: str, *args: Any, **kwargs: Any) -> Iterator[SearchResult]:
        """Page after page of "search", "similar" or "recommend" (the method's arguments
        follow), each starting at the previous one's next_offset, until there are no more:
        `for page in client.pages("search", "red dress", top_k=20): ...`."""
        offset = _core.paged(method, kwargs)
        while True:
            page: SearchResult = getattr(self, method)(*args, offset=offset, **kwargs)
            yield page
            if page.next_offset is None:
                return
            offset = page.next_offset

    def facets(self) -> Facets:
        """Values and counts of category, color and size, and the price range."""
        return self._send(_core.facets())

    def get(self, product_id: str) -> Product:
        """One product; LookalikeError with code `not_found` (404) if there is none."""
        return self._send(_core.get(product_id))

    def put(self, product: Product | Mapping[str, Any],
            images: ImageInput | Sequence[ImageInput]) -> Product:
        """Create or replace a product (admin key): metadata from a dict or a Product (its
        product_id names it), one or more photos as paths, bytes or PIL images. Searchable
        as soon as this returns."""
        return self._send(_core.put(product, images))

    def delete(self, product_id: str) -> None:
        """Delete a product (admin key); LookalikeError `not_found` (404) if there is none."""
        self._send(_core.delete(product_id))

    def info(self) -> Info:
        """Products searchable, the model in use and the last ingest."""
        return self._send(_core.info())
