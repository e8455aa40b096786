"""The query image of a search, from an upload, base64 or a URL: bounded, decoded off the loop
(on the search service's decode pool), cropped in source pixels before the shrink."""

from __future__ import annotations

import asyncio
import base64
import binascii

from PIL import Image

from lookalike.api.context import ApiContext
from lookalike.api.errors import ApiError
from lookalike.fetch import FetchError, FetchTimeout, TooLargeError, fetch_url
from lookalike.images import (
    BadAspectRatio,
    BadCrop,
    Box,
    InvalidImageError,
    TooComplex,
    TooManyPixels,
    UnsupportedImageFormat,
)
from lookalike.search import Overloaded

FETCH_QUEUE_WAIT_S = 0.5  # a fetch slot not free within this: the replica is overloaded


def image_error(exc: InvalidImageError) -> ApiError:
    if isinstance(exc, TooManyPixels):
        return ApiError(413, "too_many_pixels", str(exc))
    if isinstance(exc, BadAspectRatio):
        return ApiError(422, "bad_aspect_ratio", str(exc))
    if isinstance(exc, BadCrop):
        return ApiError(422, "invalid_crop", str(exc))
    if isinstance(exc, TooComplex):
        return ApiError(422, "image_too_complex", str(exc))
    if isinstance(exc, UnsupportedImageFormat):
        return ApiError(415, "unsupported_image_format", str(exc))
    return ApiError(415, "invalid_image", f"not an image: {exc}")


async def decode(ctx: ApiContext, data: bytes, crop: Box | None = None) -> Image.Image:
    """The decoded (and shrunk) query photo; `crop` is cut from the source first. Every way
    the bytes can be bad is a 4xx (images.py raises only InvalidImageError kinds)."""
    if len(data) > ctx.settings.max_upload_bytes:
        raise ApiError(413, "too_large", f"image larger than {ctx.settings.max_upload_bytes} bytes")
    try:
        return await ctx.service.load_image(data, crop)
    except InvalidImageError as exc:
        raise image_error(exc) from exc


def from_base64(text: str) -> bytes:
    raw = text.split(",", 1)[-1] if text.startswith("data:") else text
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid_base64", "image_base64 is not valid base64") from None


async def fetch(ctx: ApiContext, url: str) -> bytes:
    try:
        await asyncio.wait_for(ctx.fetches.acquire(), FETCH_QUEUE_WAIT_S)
    except asyncio.TimeoutError:
        raise Overloaded("too many image_url fetches at once") from None
    try:
        return await fetch_url(url, ctx.fetch_policy, resolver=ctx.resolver)
    except TooLargeError as exc:
        raise ApiError(413, "too_large", str(exc)) from exc
    except FetchTimeout as exc:
        raise ApiError(422, "image_url_timeout", str(exc)) from exc
    except FetchError as exc:
        raise ApiError(422, "image_url_unusable", str(exc)) from exc
    finally:
        ctx.fetches.release()
