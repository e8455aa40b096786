import io

import pytest
from PIL import Image

from lookalike.images import InvalidImageError, decode_image, sniff_content_type


def png(mode: str = "RGBA") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (8, 8), (255, 0, 0, 0) if mode == "RGBA" else 128).save(buf, "PNG")
    return buf.getvalue()


def test_transparent_png_is_composited_on_white() -> None:
    img = decode_image(png())
    assert img.mode == "RGB" and img.getpixel((0, 0)) == (255, 255, 255)


def test_greyscale_becomes_rgb() -> None:
    assert decode_image(png("L")).mode == "RGB"


@pytest.mark.parametrize("data", [b"", b"not an image", png()[:40]])
def test_bad_bytes_raise_clear_error(data: bytes) -> None:
    with pytest.raises(InvalidImageError):
        decode_image(data)


def test_sniff() -> None:
    assert sniff_content_type(png()) == "image/png"
    assert sniff_content_type(b"hello") is None
