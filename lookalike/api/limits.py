"""Input bounds: the numbers the contract declares, the streaming body limit and bounded JSON.

`BodyLimitMiddleware` is pure ASGI: it counts the bytes of every `http.request` message as the
app reads them, so a chunked body (no Content-Length) is bounded exactly like a declared one,
and a body is never buffered beyond its route's limit. A declared Content-Length over the limit
is refused before a byte is read.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

MAX_TEXT_CHARS = 2000
MAX_FILTER_VALUES = 20
MAX_EXAMPLES = 50  # product ids in positive / negative / not_like
MAX_FILTER_VALUE_CHARS = 100  # the manifest's limit for category, color and size
MAX_PRICE = 1e9
TOP_K_CAP = 1000  # the largest LOOKALIKE_MAX_TOP_K can be; the configured one is checked too
MAX_URL_CHARS = 2048
MAX_JSON_DEPTH = 8
MAX_METADATA_BYTES = 64 * 1024
SMALL_BODY_BYTES = 64 * 1024  # any route that takes no upload
DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024  # Settings.max_upload_bytes' default, for the schema

# Filter values: no C0 control character at all. Search text: tabs and newlines are fine.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
TEXT_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def max_base64_chars(max_upload: int = DEFAULT_MAX_UPLOAD) -> int:
    return 4 * math.ceil(max_upload / 3) + 128  # + room for a "data:image/...;base64," prefix


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


class InvalidJson(ValueError):
    pass


def body_limit(*, method: str, path: str, content_type: str, max_upload: int,
               max_images: int) -> int:
    """The most bytes a request to this route may send."""
    if method == "POST" and path == "/v1/search":
        if content_type.startswith("application/json"):
            return max_base64_chars(max_upload) + SMALL_BODY_BYTES
        return max_upload + SMALL_BODY_BYTES  # one image plus a few small fields
    if method == "PUT" and path.startswith("/v1/products/"):
        return max_upload * max_images + MAX_METADATA_BYTES + SMALL_BODY_BYTES
    return SMALL_BODY_BYTES


def _json_error(status: int, code: str, message: str) -> tuple[dict[str, Any], bytes]:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return ({"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()),
                         (b"x-error-code", code.encode()), (b"connection", b"close")]},
            body)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyLimitMiddleware:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *,
                 max_upload: int, max_images: int) -> None:
        self.app = app
        self.max_upload = max_upload
        self.max_images = max_images

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        limit = body_limit(method=scope["method"], path=scope["path"],
                           content_type=headers.get(b"content-type", b"").decode("latin-1").lower(),
                           max_upload=self.max_upload, max_images=self.max_images)
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # whatever the app made of the cut-off body, the answer is our 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            pass
        if exceeded and not started:
            await self._refuse(send, limit)

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        start, body = _json_error(413, "too_large", f"request body larger than {limit} bytes")
        await send(start)
        await send({"type": "http.response.body", "body": body})


def json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON, iteratively (no recursion to exhaust)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item)
    return deepest


def parse_json(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads that refuses deep nesting (400) instead of recursing into a 500."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise InvalidJson(f"JSON nested deeper than {max_depth} levels") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidJson("not valid JSON") from None
    if json_depth(value) > max_depth:
        raise InvalidJson(f"JSON nested deeper than {max_depth} levels")
    return value
