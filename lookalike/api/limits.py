"""Input bounds: the numbers the contract declares, the streaming body limit and bounded JSON.

`BodyLimitMiddleware` is pure ASGI: it counts the bytes of every `http.request` message as the
app reads them, so a chunked body (no Content-Length) is bounded exactly like a declared one,
and a body is never buffered beyond its route's limit. A declared Content-Length over the limit
is refused before a byte is read.

JSON (`parse_json`): before parsing, everything but an image's base64 is bounded
(MAX_JSON_STRUCTURE_BYTES: the bytes outside the base64 alphabet, which every JSON value, key
and nesting level needs at least one of), so a body's parse and depth check cost at most a few
milliseconds whatever its size; routes run it off the event loop anyway. Numbers outside what
a double or an int64 holds, NaN and Infinity, and strings holding lone UTF-16 surrogates are
refused (422) instead of failing later in Python's int conversion, the store or the answer.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

MAX_TEXT_CHARS = 2000
MAX_FILTER_VALUES = 64  # per filter, counted after a query string's or form's commas split
MAX_EXAMPLES = 50  # product ids in positive / negative / not_like
MAX_FILTER_VALUE_CHARS = 100  # the manifest's limit for category, color and size
MAX_PRICE = 1e9
TOP_K_CAP = 1000  # the largest LOOKALIKE_MAX_TOP_K can be; the configured one is checked too
MAX_URL_CHARS = 2048
MAX_JSON_DEPTH = 8
MAX_METADATA_BYTES = 64 * 1024
SMALL_BODY_BYTES = 64 * 1024  # any route that takes no upload
MAX_JSON_STRUCTURE_BYTES = 64 * 1024  # a JSON body's bytes outside the base64 alphabet
MAX_INT = 2 ** 63 - 1  # JSON integers: what the store's int64 holds
MAX_NUMBER_CHARS = 64  # a longer number literal is no price, count or weight
DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024  # Settings.max_upload_bytes' default, for the schema

# Filter values: no C0 control character at all. Search text: tabs and newlines are fine.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
TEXT_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")  # from "\ud800" escapes: not encodable text
BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def max_base64_chars(max_upload: int = DEFAULT_MAX_UPLOAD) -> int:
    return 4 * math.ceil(max_upload / 3) + 128  # + room for a "data:image/...;base64," prefix


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


class InvalidJson(ValueError):
    """Not valid JSON, or nested too deep: a 400."""


class JsonTooLarge(InvalidJson):
    """Too much JSON outside an image's base64 (a 413)."""


class InvalidNumber(InvalidJson):
    """A number no field can take: too long, out of int64, NaN or infinite (a 422)."""


class InvalidText(InvalidJson):
    """A string holding a lone UTF-16 surrogate (a 422)."""


def body_limit(*, method: str, path: str, content_type: str, max_upload: int,
               max_images: int) -> int:
    """The most bytes a request to this route may send."""
    if method == "POST" and path in ("/v1/search", "/v1/recommend"):
        # JSON: one image in base64 (image_base64) plus a few small fields, the structure
        # bounded again before parsing (parse_json); /v1/recommend takes JSON only.
        if content_type.startswith("application/json"):
            return max_base64_chars(max_upload) + SMALL_BODY_BYTES
        if path == "/v1/recommend":
            return SMALL_BODY_BYTES
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
    return _walk(value)[0]


def _walk(value: Any) -> tuple[int, bool]:
    """(nesting depth, whether a key or string holds a lone surrogate), iteratively."""
    deepest, lone = 0, False
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth)
            lone = lone or any(LONE_SURROGATE.search(k) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str) and not lone:
            lone = LONE_SURROGATE.search(item) is not None
    return deepest, lone


def structure_bytes(raw: bytes | str) -> int:
    """The bytes of a JSON body outside the base64 alphabet: every value, key, separator and
    nesting level has at least one, an image's base64 none. One C pass, no parsing."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    return len(data.translate(None, BASE64_ALPHABET))


def _int(text: str) -> int:
    if len(text) > 20:  # 19 digits and a sign: int64; never Python's slow, limited int()
        raise InvalidNumber(f"the number {text[:20]}... has {len(text)} digits; at most "
                            f"{MAX_INT} in size")
    value = int(text)
    if abs(value) > MAX_INT:
        raise InvalidNumber(f"the number {text} is larger than {MAX_INT}")
    return value


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise InvalidNumber(f"the number {text[:20]}... is {len(text)} characters long; at "
                            f"most {MAX_NUMBER_CHARS}")
    value = float(text)
    if not math.isfinite(value):
        raise InvalidNumber(f"the number {text[:40]} is out of range")
    return value


def _constant(text: str) -> Any:
    raise InvalidNumber(f"{text} is not a number JSON allows")


def parse_json(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH,
               max_structure: int = MAX_JSON_STRUCTURE_BYTES) -> Any:
    """json.loads, bounded: more than `max_structure` bytes outside the base64 alphabet is
    JsonTooLarge (checked before parsing); nesting deeper than `max_depth` (never a
    RecursionError) and malformed JSON are InvalidJson; InvalidNumber and InvalidText as
    above. Blocking (a 10 MiB body of base64 takes ~10 ms): call it off the event loop."""
    if structure_bytes(raw) > max_structure:
        raise JsonTooLarge(f"more than {max_structure} bytes of JSON besides an image's "
                           "base64")
    try:
        value = json.loads(raw, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except InvalidJson:
        raise
    except RecursionError:
        raise InvalidJson(f"JSON nested deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError):  # JSONDecodeError is a ValueError
        raise InvalidJson("not valid JSON") from None
    depth, lone = _walk(value)
    if depth > max_depth:
        raise InvalidJson(f"JSON nested deeper than {max_depth} levels")
    if lone:
        raise InvalidText("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff): not text")
    return value


async def parse_json_off_loop(raw: bytes | str, **kwargs: Any) -> Any:
    """parse_json in a worker thread: the event loop keeps answering (/healthz too)."""
    return await asyncio.to_thread(parse_json, raw, **kwargs)
