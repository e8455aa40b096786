"""Decoding untrusted image bytes into RGB PIL images, with clear errors and hard bounds.

Everything that sizes the decoded array is checked from the header *before* any pixel is
decoded: the format (an allow-list, so no exotic decoder ever sees shopper bytes), the pixel
count and the aspect ratio. JPEGs far larger than needed decode reduced (`draft`, DCT scaling),
so no input makes a huge array. Pillow's decompression-bomb warning is an error here.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Collection

from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow warns above this and refuses above twice it; our own, lower caps below act first.
Image.MAX_IMAGE_PIXELS = 64_000_000

CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif",
                 "BMP": "image/bmp", "TIFF": "image/tiff"}
# Shopper uploads: the formats browsers and phones produce. TIFF (many codecs, a long CVE
# history) stays for operator catalogues only.
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
MAX_PIXELS = 40_000_000  # 40 MP: more than any phone camera, well under Pillow's bomb warning
MAX_ASPECT = 20.0  # a 1 x 20,000 strip is no product photo (and resizes into a huge image)


class InvalidImageError(ValueError):
    """The bytes are not an image we can read."""


class UnsupportedImageFormat(InvalidImageError):
    pass


class TooManyPixels(InvalidImageError):
    pass


class BadAspectRatio(InvalidImageError):
    pass


def to_rgb(img: Image.Image) -> Image.Image:
    img = ImageOps.exif_transpose(img) or img
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        # Product shots with transparency are composited on white, as a shop would show them.
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def check_header(img: Image.Image, *, max_pixels: int = MAX_PIXELS,
                 max_aspect: float = MAX_ASPECT) -> None:
    """Refuse from the header alone: nothing is decoded yet."""
    width, height = img.size
    if width < 1 or height < 1:
        raise InvalidImageError("the image has no pixels")
    if width * height > max_pixels:
        raise TooManyPixels(f"the image has {width}x{height} pixels; at most "
                            f"{max_pixels // 1_000_000} megapixels")
    if max(width, height) / min(width, height) > max_aspect:
        raise BadAspectRatio(f"the image is {width}x{height}; the long side may be at most "
                             f"{max_aspect:g} times the short side")


def decode_image(data: bytes, *, formats: Collection[str] | None = None,
                 max_pixels: int = MAX_PIXELS, max_aspect: float = MAX_ASPECT,
                 min_short_side: int | None = None) -> Image.Image:
    """Bytes -> RGB image. `formats`: the allowed Pillow formats (None: all of CONTENT_TYPES).
    `min_short_side`: the short side the caller needs at least; a larger JPEG is decoded
    reduced (by a power of two, never below it)."""
    if not data:
        raise InvalidImageError("empty file")
    allowed = tuple(formats or CONTENT_TYPES)
    try:
        # catch_warnings is process-wide, not per thread: a race between decoding threads can
        # at worst drop this filter for a moment, and check_header's lower cap (40 MP, under
        # Pillow's 64 MP warning) refuses every such image first anyway.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                img = Image.open(io.BytesIO(data), formats=allowed)
            except UnidentifiedImageError:
                if Image.open(io.BytesIO(data)).format not in allowed:
                    raise UnsupportedImageFormat(
                        f"unsupported image format; use {', '.join(allowed)}") from None
                raise
            check_header(img, max_pixels=max_pixels, max_aspect=max_aspect)
            if min_short_side and img.format == "JPEG":
                w, h = img.size
                scale = min(w, h) / min_short_side
                if scale >= 2:
                    img.draft("RGB", (max(1, int(w / scale)), max(1, int(h / scale))))
            img.load()
            return to_rgb(img)
    except InvalidImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixels("the image has too many pixels") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImageError(
            f"the file could not be read as an image ({', '.join(allowed)})") from exc


RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC, "box": Image.Resampling.BOX,
            "hamming": Image.Resampling.HAMMING, "lanczos": Image.Resampling.LANCZOS}


def resize_short_side(img: Image.Image, size: int, interpolation: str = "bicubic") -> Image.Image:
    """torchvision's Resize(int) on a PIL image, in PIL alone (the router has no torch): the
    short side becomes `size`, the long side int(size * long / short)."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    if short == size:
        return img
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if w <= h else (new_long, size)
    return img.resize((new_w, new_h), RESAMPLE[interpolation])


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
