"""Decoding untrusted image bytes into RGB PIL images, with clear errors and hard bounds.

Everything that sizes the decoded array, or the work of decoding it, is checked *before* any
pixel is decoded: the format (an allow-list; Pillow is asked to identify only those, so no other
plugin ever sees the bytes), a JPEG's scan count (a progressive JPEG of hundreds of empty scans
costs seconds of CPU per megapixel), the pixel count, the aspect ratio and a crop rectangle (in
source pixels). JPEGs far larger than needed decode reduced (`draft`, DCT scaling); other
formats are reduced (`Image.reduce`) right after decoding, before any copy, transposition or
compositing, so no input makes a huge array twice. Any failure inside Pillow is an
InvalidImageError (a 4xx at the API), never another exception. Pillow's decompression-bomb
warning is an error here.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Collection

from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

# Pillow warns above this and refuses above twice it; our own, lower caps below act first.
Image.MAX_IMAGE_PIXELS = 64_000_000

CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif",
                 "BMP": "image/bmp", "TIFF": "image/tiff"}
# Shopper uploads: the formats browsers and phones produce. TIFF (many codecs, a long CVE
# history) stays for operator catalogues only.
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
MAX_PIXELS = 40_000_000  # 40 MP: more than any phone camera, well under Pillow's bomb warning
MAX_ASPECT = 20.0  # a 1 x 20,000 strip is no product photo (and resizes into a huge image)
# Pixels a shopper's photo may decode to at full size (formats without DCT scaling, or a JPEG
# that needs them all): 16 MP is 64 MB as RGBA, and the router decodes two at a time.
SHOPPER_DECODED_PIXELS = 16_000_000
# Scans of one JPEG: a baseline JPEG has 1 (3 non-interleaved), libjpeg's and mozjpeg's
# progressive scripts about 10. Each scan is a pass over every coefficient, so hundreds of
# (empty) ones make a small file cost seconds to minutes of CPU.
MAX_JPEG_SCANS = 16
MIN_CROP_SIDE = 16  # pixels of the source photo a crop must keep at least, each side
# Signatures of formats shoppers might send that Pillow is not asked to identify: a clearer
# "unsupported format" than "not an image", found without running any other plugin.
OTHER_SIGNATURES = ((b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"DDS ", "DDS"),
                    (b"8BPS", "PSD"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
                    (b"\xff\x4f\xff\x51", "JPEG 2000"), (b"\x00\x00\x01\x00", "ICO"))


class InvalidImageError(ValueError):
    """The bytes are not an image we can read."""


class UnsupportedImageFormat(InvalidImageError):
    pass


class TooManyPixels(InvalidImageError):
    pass


class BadAspectRatio(InvalidImageError):
    pass


class TooComplex(InvalidImageError):
    """Cheap to send, costly to decode (a JPEG of too many scans)."""


class BadCrop(InvalidImageError):
    """The crop rectangle leaves too few source pixels, or a strip."""


Box = tuple[float, float, float, float]  # x, y, w, h as fractions of the (oriented) photo
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # a marker after entropy-coded data


def jpeg_scans(data: bytes, limit: int = MAX_JPEG_SCANS) -> int:
    """The scans (SOS segments) of a JPEG, counted by walking its markers, no pixel decoded;
    counting stops at limit + 1. Non-JPEG bytes: 0; a malformed tail ends the walk (the
    decoder then says what is wrong with it)."""
    if not data.startswith(b"\xff\xd8"):
        return 0
    scans, pos, end = 0, 2, len(data)
    while pos + 1 < end:
        if data[pos] != 0xFF:
            return scans
        while pos < end and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= end:
            break
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length
            continue
        if pos + 2 > end:
            break
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2:
            break
        pos += length
        if marker == 0xDA:  # SOS: entropy-coded data follows, up to the next marker
            scans += 1
            if scans > limit:
                return scans
            found = _JPEG_MARKER.search(data, pos)
            if found is None:
                break
            pos = found.start()
    return scans


def check_scans(data: bytes, limit: int = MAX_JPEG_SCANS) -> None:
    if jpeg_scans(data, limit) > limit:
        raise TooComplex(f"the JPEG has more than {limit} scans; save it again as a baseline "
                         "or standard progressive JPEG")


def _orientation(img: Image.Image) -> int:
    value = img.getexif().get(0x0112, 1)  # ExifTags.Base.Orientation
    return value if isinstance(value, int) else 1


def crop_pixels(size: tuple[int, int], box: Box, *, min_side: int = MIN_CROP_SIDE,
                max_aspect: float = MAX_ASPECT) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of `box` (fractions) in a photo of `size` pixels, refused
    (BadCrop) below `min_side` pixels a side (or the photo's own side, if smaller) or beyond
    the aspect ratio uploads may have: a thin strip resizes into a huge image."""
    width, height = size
    x, y, w, h = box
    left = min(int(x * width), width - 1)
    top = min(int(y * height), height - 1)
    right = max(left + 1, min(width, round((x + w) * width)))
    bottom = max(top + 1, min(height, round((y + h) * height)))
    cw, ch = right - left, bottom - top
    if cw < min(min_side, width) or ch < min(min_side, height):
        raise BadCrop(f"the crop keeps {cw}x{ch} pixels of the {width}x{height} photo; at "
                      f"least {min_side} pixels a side")
    if max(cw, ch) / min(cw, ch) > max_aspect:
        raise BadCrop(f"the crop is {cw}x{ch} pixels; its long side may be at most "
                      f"{max_aspect:g} times its short side")
    return left, top, right, bottom


def _reduce(img: Image.Image, min_short_side: int) -> Image.Image:
    """An integer box reduction, the short side kept at least `min_short_side` (and at
    least twice: a smaller factor is left to the final resize)."""
    factor = min(img.size) // min_short_side
    if factor < 2:
        return img
    if img.mode not in ("RGB", "RGBA", "L", "LA"):
        img = img.convert("RGBA" if _has_alpha(img) else "RGB")
    return img.reduce(factor)  # LA and RGBA: premultiplied, as a composite would be


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)


def to_rgb(img: Image.Image) -> Image.Image:
    return _flatten(ImageOps.exif_transpose(img) or img)


def _flatten(img: Image.Image) -> Image.Image:
    if _has_alpha(img):
        # Product shots with transparency are composited on white, as a shop would show them.
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img if img.mode == "RGB" else img.convert("RGB")


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
                 min_short_side: int | None = None, crop: Box | None = None,
                 max_decoded_pixels: int | None = None) -> Image.Image:
    """Bytes -> RGB image. `formats`: the allowed Pillow formats (None: all of CONTENT_TYPES).
    `min_short_side`: the short side the caller needs at least; a larger image is decoded
    (JPEG) or right after decoding reduced (by an integer factor, never below it).
    `crop`: the part of the photo wanted (fractions of the oriented photo), checked in source
    pixels and cut before any reduction. `max_decoded_pixels`: the most pixels the decoder may
    materialise (after a JPEG's DCT scaling); over it is TooManyPixels."""
    if not data:
        raise InvalidImageError("empty file")
    allowed = tuple(formats or CONTENT_TYPES)
    check_scans(data)  # before Pillow reads more than the header
    try:
        # catch_warnings is process-wide, not per thread: a race between decoding threads can
        # at worst drop this filter for a moment, and check_header's lower cap (40 MP, under
        # Pillow's 64 MP warning) refuses every such image first anyway.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                # Only the allowed plugins identify the bytes: nothing else ever parses them.
                img = Image.open(io.BytesIO(data), formats=allowed)
            except UnidentifiedImageError:
                other = next((name for magic, name in OTHER_SIGNATURES if data.startswith(magic)),
                             None)
                if other is not None:
                    raise UnsupportedImageFormat(
                        f"unsupported image format ({other}); use {', '.join(allowed)}") from None
                raise
            check_header(img, max_pixels=max_pixels, max_aspect=max_aspect)
            width, height = img.size
            jpeg = isinstance(img, JpegImagePlugin.JpegImageFile)  # and MPO
            if max_decoded_pixels and not jpeg and width * height > max_decoded_pixels:
                raise TooManyPixels(
                    f"the image has {width}x{height} pixels; a {img.format} photo may have "
                    f"at most {max_decoded_pixels // 1_000_000} megapixels")
            if jpeg:
                # Its EXIF is in the header (other formats may keep it after the pixels: PNG's
                # getexif() decodes the image to find it, so theirs is read after load()).
                swap = _orientation(img) in (5, 6, 7, 8)
                rect = crop_pixels((height, width) if swap else (width, height), crop,
                                   max_aspect=max_aspect) if crop else None
                # The short side of what is wanted, in source pixels: the crop's or the photo's.
                wanted = min(rect[2] - rect[0], rect[3] - rect[1]) if rect else min(width, height)
                if min_short_side and wanted / min_short_side >= 2:
                    scale = wanted / min_short_side
                    img.draft("RGB", (max(1, int(width / scale)), max(1, int(height / scale))))
                if max_decoded_pixels and img.size[0] * img.size[1] > max_decoded_pixels:
                    raise TooManyPixels(
                        f"the image has {width}x{height} pixels; a JPEG photo decoded at "
                        f"{img.size[0]}x{img.size[1]} may have at most "
                        f"{max_decoded_pixels // 1_000_000} megapixels")
            img.load()
            if _orientation(img) != 1:  # (exif_transpose copies even when it has nothing to do)
                img = ImageOps.exif_transpose(img) or img
            if crop:
                if not jpeg:
                    crop_pixels(img.size, crop, max_aspect=max_aspect)  # full size: source pixels
                img = crop_fraction(img, crop)
            if min_short_side:
                img = _reduce(img, min_short_side)
            return _flatten(img)
    except InvalidImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixels("the image has too many pixels") from exc
    except MemoryError as exc:
        raise TooManyPixels("the image is too large to decode") from exc
    except Exception as exc:  # whatever a plugin raises, the bytes are bad
        # (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, and also
        # struct.error, TypeError, NotImplementedError... from a malformed header or EXIF)
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
        fmt = Image.open(io.BytesIO(data), formats=tuple(CONTENT_TYPES)).format
    except Exception:  # noqa: BLE001 - any failure means "not an image"
        return None
    return CONTENT_TYPES.get(fmt or "")


def crop_fraction(img: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """The part of `img` inside (x, y, w, h), given as fractions of its width and height, so a
    page can send the crop it drew on a scaled preview. At least one pixel a side."""
    x, y, w, h = box
    left = min(int(x * img.width), img.width - 1)
    top = min(int(y * img.height), img.height - 1)
    right = max(left + 1, min(img.width, round((x + w) * img.width)))
    bottom = max(top + 1, min(img.height, round((y + h) * img.height)))
    return img.crop((left, top, right, bottom))
