"""Decoding untrusted image bytes into RGB PIL images, with clear errors."""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

# Refuse decompression bombs early (PIL only warns below 2x this).
Image.MAX_IMAGE_PIXELS = 64_000_000

CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif",
                 "BMP": "image/bmp", "TIFF": "image/tiff"}


class InvalidImageError(ValueError):
    """The bytes are not an image we can read."""


def to_rgb(img: Image.Image) -> Image.Image:
    img = ImageOps.exif_transpose(img) or img
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        # Product shots with transparency are composited on white, as a shop would show them.
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def decode_image(data: bytes) -> Image.Image:
    if not data:
        raise InvalidImageError("empty file")
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        return to_rgb(img)
    except Image.DecompressionBombError as exc:
        raise InvalidImageError("the image has too many pixels") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageError(
            "the file could not be read as an image (JPEG, PNG, WebP, GIF, BMP or TIFF)") from exc


def sniff_content_type(data: bytes) -> str | None:
    """The image type of the bytes, from PIL's reading of the header, or None."""
    try:
        fmt = Image.open(io.BytesIO(data)).format
    except Exception:  # noqa: BLE001 - any failure means "not an image"
        return None
    return CONTENT_TYPES.get(fmt or "")


def crop_fraction(img: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """The part of `img` inside (x, y, w, h), given as fractions of its width and height, so a
    page can send the crop it drew on a scaled preview. At least one pixel a side."""
    x, y, w, h = box
    left = min(int(x * img.width), img.width - 1)
    top = min(int(y * img.height), img.height - 1)
    right = max(left + 1, min(img.width, int(round((x + w) * img.width))))
    bottom = max(top + 1, min(img.height, int(round((y + h) * img.height))))
    return img.crop((left, top, right, bottom))
