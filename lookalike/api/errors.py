"""Every error the API answers: one JSON shape, stable codes, honest statuses.

Client mistakes are 4xx; an unavailable dependency (the store, an embedder, an overloaded
replica) is a 503 with Retry-After, so clients and load balancers back off and retry; a 500
only ever means a bug.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lookalike.api.limits import BodyTooLarge
from lookalike.api.models import ErrorBody
from lookalike.recommend import UnknownProducts
from lookalike.search import EmbedderUnavailable, MediaUnavailable, NotFoundError, Overloaded
from lookalike.store.base import StoreError, StoreRequestError

log = logging.getLogger("lookalike.api")
RETRY_AFTER_S = 1


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    resp = JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)
    resp.headers["x-error-code"] = code  # read by the request observer for logs and metrics
    return resp


def unavailable(code: str, message: str) -> JSONResponse:
    return error_response(503, code, message, {"Retry-After": str(RETRY_AFTER_S)})


_DESCRIPTIONS = {
    400: "malformed body: invalid JSON, base64 or multipart, or JSON nested too deep",
    401: "a valid `Authorization: Bearer <admin key>` is required",
    404: "no such product, image or route",
    413: "body, image or pixel count over its limit",
    415: "not a supported content type or image format",
    422: "a parameter is missing, of the wrong type, out of range, unknown, empty or has "
         "control characters",
    503: "a dependency (store, embedder) is down or the service is overloaded; see Retry-After",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these error statuses (all ErrorBody)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorBody, "description": _DESCRIPTIONS[status]}
        if status == 503:
            entry["headers"] = {"Retry-After": {"schema": {"type": "integer"},
                                                "description": "seconds to wait"}}
        out[status] = entry
    return out


def validation_message(exc: RequestValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body", "path"))
    return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid"))


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message,
                              {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        missing_q = first.get("type") == "missing" and tuple(first.get("loc", ())) == ("query", "q")
        return error_response(422, "missing_query" if missing_q else "invalid_parameter",
                              validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(NotFoundError)
    async def _not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return error_response(404, "not_found", f"not found: {exc}")

    @app.exception_handler(UnknownProducts)
    async def _unknown(_: Request, exc: UnknownProducts) -> JSONResponse:
        return error_response(404, "not_found", f"unknown products: {exc}")

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_: Request, exc: BodyTooLarge) -> JSONResponse:
        return error_response(413, "too_large", str(exc))

    @app.exception_handler(StoreError)
    async def _store(_: Request, exc: StoreError) -> JSONResponse:
        if isinstance(exc, StoreRequestError):
            # Validation should have caught it first; log so the gap gets closed.
            log.warning("store refused a request: %s", exc)
            return error_response(422, "invalid_query", "the store refused this query's values")
        log.warning("store error: %s", exc)
        return unavailable("store_unavailable", "the vector store is unavailable; retry")

    @app.exception_handler(EmbedderUnavailable)
    async def _embedder(_: Request, exc: EmbedderUnavailable) -> JSONResponse:
        log.warning("embedder unavailable: %s", exc)
        return unavailable("embedder_unavailable", "an embedding model is unavailable; retry")

    @app.exception_handler(MediaUnavailable)
    async def _media(_: Request, exc: MediaUnavailable) -> JSONResponse:
        log.error("media write failed, the product write was undone: %s", exc)
        return unavailable("media_unavailable",
                           "the uploaded images could not be saved; nothing was stored; retry")

    @app.exception_handler(Overloaded)
    async def _overloaded(_: Request, exc: Overloaded) -> JSONResponse:
        return unavailable("overloaded", "the service is at capacity; retry")
