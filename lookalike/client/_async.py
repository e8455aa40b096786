"""The asyncio client: the same requests as Client (lookalike/client/_core.py builds them
once), sent with httpx.AsyncClient. Each method's documentation is its twin's in Client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from lookalike.client import _core
from lookalike.client._core import DEFAULT_RETRY, FiltersInput, ImageInput, Retry
from lookalike.client._models import Facets, Info, Product, SearchResult
from lookalike.client._sync import DEFAULT_TIMEOUT_S, DEFAULT_URL, headers

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11 only


class AsyncClient:
    """Client, for asyncio: `async with AsyncClient() as c: await c.search("red dress")`.
    `sleep` is the retry's wait (an async function), for tests."""

    def __init__(self, base_url: str = DEFAULT_URL, *, admin_key: str | None = None,
                 timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT_S,
                 retry: Retry = DEFAULT_RETRY, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)
        self._admin_key, self._retry, self._sleep = admin_key, retry, sleep

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _core.Call) -> Any:
        n = 0
        while True:
            resp = await self._http.request(call.method, call.path,
                                            headers=headers(self._admin_key, call),
                                            **call.kwargs())
            if not resp.is_error:
                return call.parse(resp)
            error = _core.error_of(resp)
            delay = self._retry.delay(n, error)
            if delay is None:
                raise error
            await self._sleep(delay)
            n += 1

    async def search(self, text: str | None = None, *, image: ImageInput | None = None,
                     filters: FiltersInput = None, top_k: int = 10,
                     image_weight: float | None = None, infer: str | None = None,
                     crop: tuple[float, float, float, float] | None = None,
                     not_like: str | Sequence[str] | None = None, diversity: float | None = None,
                     drop_inferred: Sequence[str] | None = None,
                     collapse_variants: bool | None = None,
                     offset: int | None = None) -> SearchResult:
        return await self._send(_core.search(
            text=text, image=image, filters=filters, top_k=top_k, image_weight=image_weight,
            infer=infer, crop=crop, not_like=not_like, diversity=diversity,
            drop_inferred=drop_inferred, collapse_variants=collapse_variants, offset=offset))

    async def similar(self, product_id: str, *, top_k: int = 10, filters: FiltersInput = None,
                      cheaper: bool = False, other_color: bool = False,
                      same_category: bool = False, offset: int | None = None,
                      collapse_variants: bool | None = None) -> SearchResult:
        return await self._send(_core.similar(product_id, top_k=top_k, filters=filters,
                                              cheaper=cheaper, other_color=other_color,
                                              same_category=same_category, offset=offset,
                                              collapse_variants=collapse_variants))

    async def recommend(self, positive: str | Sequence[str] | None = None, *,
                        negative: str | Sequence[str] | None = None,
                        image: ImageInput | None = None, strategy: str | None = None,
                        top_k: int = 10, filters: FiltersInput = None,
                        offset: int | None = None,
                        collapse_variants: bool | None = None) -> SearchResult:
        return await self._send(_core.recommend(positive=positive, negative=negative,
                                                image=image, strategy=strategy, top_k=top_k,
                                                filters=filters, offset=offset,
                                                collapse_variants=collapse_variants))

    async def pages(self, method: str, *args: Any, **kwargs: Any) -> AsyncIterator[SearchResult]:
        """Client.pages, awaited: `async for page in client.pages("similar", "p1"): ...`."""
        offset = _core.paged(method, kwargs)
        while True:
            page: SearchResult = await getattr(self, method)(*args, offset=offset, **kwargs)
            yield page
            if page.next_offset is None:
                return
            offset = page.next_offset

    async def facets(self) -> Facets:
        return await self._send(_core.facets())

    async def get(self, product_id: str) -> Product:
        return await self._send(_core.get(product_id))

    async def put(self, product: Product | Mapping[str, Any],
                  images: ImageInput | Sequence[ImageInput]) -> Product:
        return await self._send(_core.put(product, images))

    async def delete(self, product_id: str) -> None:
        await self._send(_core.delete(product_id))

    async def info(self) -> Info:
        return await self._send(_core.info())
