"""The request observer: one record per request (id, endpoint, type, status, timings, error).

Pure ASGI, not Starlette's BaseHTTPMiddleware (`@app.middleware("http")`): that one runs the
app in a task group and copies the response through memory streams, which the router's profile
showed on every search (issue 16). This only wraps `send` to read the status and headers.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookalike.api import errors

log = logging.getLogger("lookalike.api")
RequestObserver = Callable[[dict[str, Any]], None]


UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    """The template of the route that matched (`/v1/products/{product_id}`), the prefix of the
    mount that did (`/static`), else UNMATCHED: never the raw path, which any client can make
    up (a metrics label per made-up path would mint series without bound)."""
    route = scope.get("route")  # FastAPI's routes put themselves here; a 405 matched too
    if isinstance(getattr(route, "path", None), str):
        return str(route.path)
    endpoint = scope.get("endpoint")  # Starlette's Route (/openapi.json) and Mount
    if endpoint is not None:
        for candidate in getattr(scope.get("app"), "routes", ()):
            if endpoint in (getattr(candidate, "endpoint", None), getattr(candidate, "app", None)):
                return str(candidate.path)
    return UNMATCHED


class ObserveMiddleware:
    """`observer` gets the record once the response has started (None: no records).
    `echo_request_id`: answer with X-Request-ID (off where a proxy in front already does)."""

    def __init__(self, app: ASGIApp, *, observer: RequestObserver | None,
                 echo_request_id: bool) -> None:
        self.app = app
        self.observer = observer
        self.echo_request_id = echo_request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = Headers(scope=scope).get("x-request-id") or uuid.uuid4().hex[:16]
        state = scope.setdefault("state", {})
        state["log"] = {}  # request.state.log: what the routes add to the record
        answer: dict[str, Any] = {}

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                answer.update(status=message["status"], error_code=headers.get("x-error-code"))
                if self.echo_request_id:
                    headers["x-request-id"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except Exception:
            if answer:  # the answer had begun: nothing sane can follow it
                raise
            # An unhandled bug: still answer in JSON, and record it.
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            await errors.error_response(500, "internal", "internal error")(
                scope, receive, observed_send)
        if self.observer is None:
            return
        record = {
            "request_id": request_id, "method": scope["method"],
            "endpoint": route_template(scope),
            "status": answer.get("status"),
            "total_ms": round((time.perf_counter() - started) * 1000.0, 3),
            "error_code": answer.get("error_code"), **state.get("log", {}),
        }
        try:
            self.observer(record)
        except Exception:  # observability must never break a request
            log.exception("request observer failed")
