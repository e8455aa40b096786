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


def encoded(size: tuple[int, int], fmt: str, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 90 if mode != "RGB" else (90, 30, 200)).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("size,error", [((9000, 9000), "TooManyPixels"),
                                        ((1, 20_000), "BadAspectRatio"),
                                        ((30_000, 1_000), "BadAspectRatio")])
def test_header_checks_refuse_before_decoding(size: tuple[int, int], error: str) -> None:
    from lookalike import images

    with pytest.raises(getattr(images, error)):
        decode_image(encoded(size, "PNG", "1"))


def test_the_upload_allow_list_refuses_other_formats() -> None:
    from lookalike.images import UPLOAD_FORMATS, UnsupportedImageFormat

    tiff = encoded((8, 8), "TIFF")
    assert decode_image(tiff).size == (8, 8)  # operator catalogues may hold TIFFs
    with pytest.raises(UnsupportedImageFormat):
        decode_image(tiff, formats=UPLOAD_FORMATS)


def test_a_large_jpeg_decodes_reduced_but_never_below_what_is_needed() -> None:
    img = decode_image(encoded((4000, 3000), "JPEG"), min_short_side=256)
    assert 256 <= min(img.size) < 3000 and img.size[0] > img.size[1]


def test_the_routers_shrink_leaves_the_embedders_input_unchanged() -> None:
    import numpy as np

    from lookalike.embedding.image import ImagePreprocessor
    from lookalike.images import resize_short_side

    pre = ImagePreprocessor()
    assert pre.resize == {"short_side": 256, "interpolation": "bicubic"}
    rng = np.random.default_rng(0)
    for size in ((900, 700), (700, 900), (301, 3000), (100, 120)):
        photo = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
        small = resize_short_side(photo, pre.resize["short_side"], pre.resize["interpolation"])
        assert min(small.size) == 256
        # What torchvision's Resize makes of the original, exactly (and so the same vectors).
        assert np.array_equal(np.asarray(small), np.asarray(pre.transform.transforms[0](photo)))
        assert np.array_equal(pre([photo]), pre([small]))


def test_crop_fraction_takes_that_part_of_the_photo() -> None:
    from PIL import Image

    from lookalike.images import crop_fraction

    img = Image.new("RGB", (200, 100), (255, 255, 255))
    img.paste((255, 0, 0), (100, 0, 200, 100))  # the right half is red
    part = crop_fraction(img, (0.5, 0.0, 0.5, 1.0))
    assert part.size == (100, 100) and part.getpixel((10, 10)) == (255, 0, 0)
    assert crop_fraction(img, (0.999, 0.999, 0.001, 0.001)).size == (1, 1)
