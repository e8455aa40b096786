"""Hostile inputs of issue 31, the pure logic: decoder bombs (JPEG scans, other formats, broken
EXIF, pixel caps), crops checked in source pixels, bounded JSON. The hostile bytes are built by
tests/hostile.py; tests/unit/test_api_hostile.py sends them through the API in-process."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike import images
from lookalike.api import limits
from lookalike.search import SearchService
from tests import hostile


def decode(data: bytes, **kwargs: object) -> Image.Image:
    return images.decode_image(data, formats=images.UPLOAD_FORMATS, **kwargs)


# -- progressive-JPEG scans ----------------------------------------------------------------------

def test_scans_are_counted_from_the_markers() -> None:
    assert images.jpeg_scans(hostile.jpeg((64, 48))) == 1  # baseline
    progressive = hostile.jpeg((64, 48), progressive=True)
    assert 2 <= images.jpeg_scans(progressive) <= images.MAX_JPEG_SCANS  # libjpeg's script: ~10
    bomb = hostile.scan_bomb((64, 48), 40)
    assert images.jpeg_scans(bomb, limit=100) == images.jpeg_scans(progressive) + 40
    # counting stops once over the limit: a huge file is not walked to its end
    assert images.jpeg_scans(hostile.scan_bomb((64, 48), 5000), limit=16) == 17
    assert images.jpeg_scans(b"\x89PNG\r\n\x1a\n") == 0 and images.jpeg_scans(b"\xff\xd8") == 0


def test_entropy_data_with_stuffed_bytes_and_restarts_is_skipped() -> None:
    """0xFF00 (a stuffed 0xFF) and RSTn inside a scan are no markers."""
    rng = np.random.default_rng(1)
    noise = Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))
    buf = io.BytesIO()
    noise.save(buf, "JPEG", quality=95, restart_marker_blocks=1)
    data = buf.getvalue()
    assert b"\xff\x00" in data and b"\xff\xd0" in data
    assert images.jpeg_scans(data) == 1


def test_a_scan_bomb_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = hostile.scan_bomb((6000, 6000), 600)
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded"))
    with pytest.raises(images.TooComplex):
        decode(bomb, min_short_side=256)


def test_a_standard_progressive_jpeg_still_decodes() -> None:
    assert decode(hostile.jpeg((300, 200), progressive=True)).size == (300, 200)


# -- formats: only the allowed plugins see the bytes ------------------------------------------

def test_dds_and_spider_are_refused_without_their_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import DdsImagePlugin, SpiderImagePlugin

    reached: list[str] = []
    for plugin, cls in ((DdsImagePlugin, "DdsImageFile"), (SpiderImagePlugin, "SpiderImageFile")):
        real = getattr(plugin, cls)._open
        monkeypatch.setattr(getattr(plugin, cls), "_open",
                            lambda self, real=real, name=cls: (reached.append(name), real(self)))
    with pytest.raises(images.UnsupportedImageFormat):
        decode(hostile.dds())
    with pytest.raises(images.InvalidImageError):
        decode(hostile.spider())
    assert reached == []


def test_a_broken_exif_entry_is_an_invalid_image_not_a_struct_error() -> None:
    data = hostile.webp_broken_exif()
    assert len(data) < 200
    with pytest.raises(images.InvalidImageError):
        decode(data)


def test_any_exception_inside_pillow_is_an_invalid_image(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import PngImagePlugin

    def broken(self: object) -> None:
        raise NotImplementedError("a plugin's own bug")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", broken)
    with pytest.raises(images.InvalidImageError):
        decode(hostile.png((8, 8)))


# -- pixels: a shopper cap, reduction before compositing ---------------------------------------

def test_a_photo_over_the_shopper_pixel_cap_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import ImageFile

    service = SearchService(store=None, embed_image=None, embed_text=None, media_dir=tmp_path)
    big = hostile.png((4100, 4000), mode="1")  # 16.4 MP: under 40 MP, over the decode cap
    with monkeypatch.context() as patch:  # refused from the header: no pixel decoded
        patch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded"))
        with pytest.raises(images.TooManyPixels):
            asyncio.run(service.load_image(big))
    # a JPEG that large decodes reduced (DCT scaling): its decoded pixels are what count
    service = SearchService(store=None, embed_image=None, embed_text=None, media_dir=tmp_path,
                            min_short_side=256)
    assert min(asyncio.run(service.load_image(hostile.jpeg((4100, 4000)))).size) >= 256


def test_an_rgba_photo_is_reduced_before_it_is_composited(monkeypatch: pytest.MonkeyPatch) -> None:
    flattened: list[tuple[int, int]] = []
    real = images._flatten
    monkeypatch.setattr(images, "_flatten", lambda img: (flattened.append(img.size), real(img))[1])
    img = decode(hostile.png((2400, 1200), mode="RGBA"), min_short_side=256)
    assert flattened == [img.size] and img.mode == "RGB"
    assert 256 <= min(img.size) < 512 and img.getpixel((0, 0)) == (255, 255, 255)


# -- crops, in source pixels, before the shrink ------------------------------------------------

@pytest.mark.parametrize("box", [(0, 0, 1, 0.001), (0, 0, 0.01, 1), (0, 0, 0.03, 0.03),
                                 (0, 0, 1, 0.04)])
def test_thin_or_tiny_crops_are_refused(box: tuple[float, float, float, float]) -> None:
    with pytest.raises(images.BadCrop):
        images.crop_pixels((400, 400), box)


def test_a_crop_is_checked_and_cut_in_source_pixels() -> None:
    assert images.crop_pixels((400, 100), (0.5, 0, 0.5, 1)) == (200, 0, 400, 100)
    assert images.crop_pixels((10, 10), (0, 0, 1, 1)) == (0, 0, 10, 10)  # a tiny photo, all of it
    with pytest.raises(images.BadCrop):
        decode(hostile.jpeg((400, 100)), crop=(0, 0, 1, 0.001), min_short_side=256)
    # a large photo: the crop decodes at the resolution it needs, not the whole photo's
    part = decode(hostile.jpeg((4000, 3000)), crop=(0, 0, 0.1, 0.1), min_short_side=256)
    assert part.size == (400, 300)


# -- JSON ---------------------------------------------------------------------------------------

def test_the_json_structure_is_bounded_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    image = base64.b64encode(b"\x00" * 3_000_000)
    assert limits.parse_json(b'{"image_base64": "' + image + b'"}')  # the image is not counted
    monkeypatch.setattr(json, "loads", lambda *a, **k: pytest.fail("parsed"))
    with pytest.raises(limits.JsonTooLarge):
        limits.parse_json(hostile.nested_lists(8_000_000))


@pytest.mark.parametrize("raw", [b'{"top_k": ' + b"1" * 5000 + b"}", b'{"a": 9223372036854775808}',
                                 b'{"a": 1e999}', b'{"a": NaN}', b'{"a": -Infinity}',
                                 b'{"a": 0.' + b"1" * 100 + b"}"])
def test_numbers_no_field_takes_are_refused(raw: bytes) -> None:
    with pytest.raises(limits.InvalidNumber):
        limits.parse_json(raw)


def test_lone_surrogates_are_refused_pairs_are_text() -> None:
    assert limits.parse_json(b'{"t": "\\ud83d\\ude00"}') == {"t": "\U0001f600"}
    for raw in (b'{"t": "\\ud800"}', b'{"\\udfff": 1}', b'{"a": [["x\\udc00"]]}'):
        with pytest.raises(limits.InvalidText):
            limits.parse_json(raw)
