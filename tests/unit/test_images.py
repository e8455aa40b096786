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


def test_crop_fraction_takes_that_part_of_the_photo() -> None:
    from PIL import Image

    from lookalike.images import crop_fraction

    img = Image.new("RGB", (200, 100), (255, 255, 255))
    img.paste((255, 0, 0), (100, 0, 200, 100))  # the right half is red
    part = crop_fraction(img, (0.5, 0.0, 0.5, 1.0))
    assert part.size == (100, 100) and part.getpixel((10, 10)) == (255, 0, 0)
    assert crop_fraction(img, (0.999, 0.999, 0.001, 0.001)).size == (1, 1)
