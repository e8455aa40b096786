"""Hostile request bodies of issue 31, built here (no fixture files): decoder bombs, formats no
shopper route may decode, crops that amplify, JSON that stalls a parser, numbers and text no
field can take. Shared by tests/unit/test_hostile_inputs.py (in-process) and
tests/e2e/test_hostile_inputs.py (the real app over HTTP).

`CASES` name -> (method, path, request keyword arguments), `EXPECTED` name -> (status, code);
`send` sends one with an httpx.Client or a Starlette TestClient (same interface).
"""

from __future__ import annotations

import base64
import functools
import io
import json
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image


def jpeg(size: tuple[int, int], *, progressive: bool = False) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 90, 60)).save(buf, "JPEG", progressive=progressive, quality=50)
    return buf.getvalue()


def noise_jpeg(size: tuple[int, int]) -> bytes:
    """A photo-like JPEG (incompressible content: a real photo's size)."""
    rng = np.random.default_rng(7)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
        buf, "JPEG", quality=85)
    return buf.getvalue()


def png(size: tuple[int, int], *, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    colour: Any = {"RGB": (10, 200, 30), "RGBA": (10, 200, 30, 0), "1": 1}.get(mode, 128)
    Image.new(mode, size, colour).save(buf, "PNG")
    return buf.getvalue()


def scan_bomb(size: tuple[int, int], extra_scans: int) -> bytes:
    """A progressive JPEG plus `extra_scans` empty AC-refinement scans of its first component
    (SOS segments with no entropy-coded data): libjpeg passes over every coefficient for each."""
    data = jpeg(size, progressive=True)
    assert data.endswith(b"\xff\xd9")
    # SOS, length 8: one component (id 1, tables 0/0), Ss=1, Se=63, Ah=1, Al=0
    sos = b"\xff\xda" + struct.pack(">H", 8) + bytes([1, 1, 0x00, 1, 63, 0x10])
    return data[:-2] + sos * extra_scans + b"\xff\xd9"


def dds() -> bytes:
    """A DirectDraw Surface header with a pixel format Pillow's DDS plugin does not implement
    (it raises NotImplementedError)."""
    header = struct.pack("<3I", 0x1007, 64, 64) + struct.pack("<3I", 0, 0, 0) + bytes(44)
    pixel_format = struct.pack("<4I", 32, 0x80000000, 0, 0) + bytes(16)
    caps = bytes(120 - len(header) - len(pixel_format))
    return b"DDS " + struct.pack("<I", 124) + header + pixel_format + caps + bytes(64)


def spider() -> bytes:
    """A SPIDER header (27 big-endian floats, no magic) that makes Pillow's plugin compute
    int(inf) for its frame count."""
    h = [0.0] * 28  # 1-based, as the plugin reads it
    h[1], h[2], h[5], h[12] = 1.0, 8.0, 1.0, 8.0  # slices, rows, iform (2D image), columns
    h[13], h[22], h[23] = 1.0, 1024.0, 1024.0  # labrec, labbyt, lenbyt: labbyt = labrec * lenbyt
    h[24], h[26], h[27] = 1.0, float("inf"), 0.0  # a stack of infinitely many images
    return struct.pack(">27f", *h[1:]) + bytes(1024)


def webp_broken_exif() -> bytes:
    """A tiny WebP whose EXIF says "rotate" and holds an entry Pillow cannot write back (a
    signed byte of -1 ... as SLONG): exif_transpose raises struct.error."""
    entries = [(0x0112, 3, 1, struct.pack("<HH", 6, 0)),  # Orientation 6
               (0x011A, 9, 1, b"\xff\xff\xff\xff")]  # XResolution as SLONG -1
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, kind, count) + value for tag, kind, count, value in entries)
    exif = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(4)
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buf, "WEBP", exif=exif)
    return buf.getvalue()


@functools.lru_cache(maxsize=1)
def rgba_png_38mp() -> bytes:
    """7000 x 5430 RGBA, one colour: ~38 MP, ~150 KB compressed, ~150 MB decoded."""
    return png((7000, 5430), mode="RGBA")


def nested_lists(n_bytes: int) -> bytes:
    """~n_bytes of JSON: a list of empty lists (two levels deep: under any depth limit)."""
    return b"[" + b"[]," * (n_bytes // 3) + b"[]]"


def huge_number(digits: int = 5000) -> str:
    return "1" * digits


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _multipart(image: bytes, name: str, ctype: str, **fields: str) -> dict[str, Any]:
    return {"files": {"image": (name, image, ctype)}, **({"data": fields} if fields else {})}


def _put(metadata: str) -> dict[str, Any]:
    return {"data": {"metadata": metadata},
            "files": {"image": ("a.png", png((32, 32)), "image/png")}}


JSON = {"content-type": "application/json"}
Case = Callable[[], tuple[str, str, dict[str, Any]]]
CASES: dict[str, Case] = {
    "scan_bomb_upload": lambda: ("POST", "/v1/search", _multipart(
        scan_bomb((6000, 6000), 600), "a.jpg", "image/jpeg")),
    "scan_bomb_recommend": lambda: ("POST", "/v1/recommend", {"json": {
        "image_base64": _b64(scan_bomb((6000, 6000), 600))}}),
    "dds": lambda: ("POST", "/v1/search", _multipart(dds(), "a.dds", "image/vnd-ms.dds")),
    "spider": lambda: ("POST", "/v1/search", _multipart(spider(), "a.spi", "image/x-spider")),
    "webp_broken_exif": lambda: ("POST", "/v1/search", {"json": {
        "image_base64": _b64(webp_broken_exif())}}),
    "rgba_png_38mp": lambda: ("POST", "/v1/search", _multipart(
        rgba_png_38mp(), "a.png", "image/png")),
    "thin_crop_form": lambda: ("POST", "/v1/search", _multipart(
        jpeg((400, 100)), "a.jpg", "image/jpeg", crop="0,0,1,0.001")),
    "thin_crop_json": lambda: ("POST", "/v1/search", {"json": {
        "image_base64": _b64(jpeg((400, 100))), "crop": {"x": 0, "y": 0, "w": 1e-9, "h": 1}}}),
    "deep_json": lambda: ("POST", "/v1/search", {"content": nested_lists(8_000_000),
                                                 "headers": JSON}),
    "huge_number_search": lambda: ("POST", "/v1/search", {
        "content": '{"text": "dress", "top_k": ' + huge_number() + "}", "headers": JSON}),
    "huge_number_recommend": lambda: ("POST", "/v1/recommend", {
        "content": '{"positive": ["p1"], "top_k": ' + huge_number() + "}", "headers": JSON}),
    "huge_number_put": lambda: ("PUT", "/v1/products/hostile-1", _put(
        '{"title": "x", "weight": ' + huge_number() + "}")),
    "boolean_price": lambda: ("PUT", "/v1/products/hostile-1", _put(
        json.dumps({"title": "x", "price": True}))),
    "lone_surrogate": lambda: ("PUT", "/v1/products/hostile-1", _put(
        '{"title": "x", "material": "\\ud800"}')),
}
EXPECTED: dict[str, tuple[int, str]] = {
    "scan_bomb_upload": (422, "image_too_complex"),
    "scan_bomb_recommend": (422, "image_too_complex"),
    "dds": (415, "unsupported_image_format"),
    "spider": (415, "invalid_image"),
    "webp_broken_exif": (415, "invalid_image"),
    "rgba_png_38mp": (413, "too_many_pixels"),
    "thin_crop_form": (422, "invalid_crop"),
    "thin_crop_json": (422, "invalid_crop"),
    "deep_json": (413, "too_large"),
    "huge_number_search": (422, "invalid_number"),
    "huge_number_recommend": (422, "invalid_number"),
    "huge_number_put": (422, "invalid_number"),
    "boolean_price": (422, "invalid_metadata"),
    "lone_surrogate": (422, "invalid_unicode"),
}
assert set(CASES) == set(EXPECTED)


def request_of(case: str) -> tuple[str, str, dict[str, Any]]:
    return CASES[case]()


def send(client: Any, case: str, *, admin_key: str, url: str = "") -> Any:
    """Send one hostile case with `client` (httpx.Client or TestClient); PUTs with the key."""
    method, path, kwargs = request_of(case)
    if method == "PUT":
        kwargs = {**kwargs, "headers": {"Authorization": f"Bearer {admin_key}"}}
    return client.request(method, url + path, **kwargs)
