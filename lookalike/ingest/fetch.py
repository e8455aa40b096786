"""Reading catalogue images: local paths and http(s) URLs, with size limits, timeouts and retries.

Pure functions (no Ray), run inside the ingest job's parallel prepare tasks. Every failure is an
ImageFetchError whose message is the reason reported against the manifest row.

Manifests are written by the operator, so they follow lookalike.fetch.OPERATOR, the trusted
policy (any host and port, redirects followed), not the SSRF-guarded SHOPPER policy the API
applies to shoppers' image URLs: both live in lookalike/fetch.py.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from lookalike.fetch import OPERATOR
from lookalike.image_refs import CATALOG, catalog_path

RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


class ImageFetchError(Exception):
    """An image could not be read; str(exc) is the reason shown to the operator."""


@dataclass(frozen=True)
class FetchLimits:
    """The Settings values that bound one image read (a plain picklable value for Ray tasks)."""

    max_bytes: int = 10 * 1024 * 1024
    timeout_s: float = 10.0
    retries: int = 2
    backoff_s: float = 0.5
    catalog_root: str | None = None  # where `catalog:` references resolve (on this node)

    @classmethod
    def from_settings(cls, settings: object) -> FetchLimits:
        root = getattr(settings, "catalog_root", None)
        return cls(max_bytes=settings.max_upload_bytes, timeout_s=settings.image_fetch_timeout_s,
                   retries=settings.image_fetch_retries,
                   catalog_root=str(root) if root is not None else None)


def image_digest(data: bytes) -> str:
    """Digest of the image *bytes*, so content_hash follows the pixels, not where they live.

    Why bytes and not path+mtime+size: the ingest job reads every image anyway (changed rows
    need the bytes, and for URLs there is no mtime), sha256 runs at ~1 GB/s against ~50 images/s
    for the model, and content addressing means a touched file (new mtime, same bytes)
    re-embeds nothing while an image replaced behind the same URL or path is re-embedded.
    """
    return hashlib.sha256(data).hexdigest()


def read_local(path: str, limits: FetchLimits) -> bytes:
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > limits.max_bytes:
            raise ImageFetchError(f"{path}: {size} bytes is over the {limits.max_bytes}-byte limit")
        with p.open("rb") as f:
            data = f.read(limits.max_bytes + 1)
    except FileNotFoundError:
        raise ImageFetchError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageFetchError(f"{path}: is a directory") from None
    except PermissionError:
        raise ImageFetchError(f"{path}: permission denied") from None
    except OSError as exc:
        raise ImageFetchError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > limits.max_bytes:  # grew between stat and read
        raise ImageFetchError(f"{path}: over the {limits.max_bytes}-byte limit")
    return data


def _download_once(client: httpx.Client, url: str, limits: FetchLimits) -> bytes:
    with client.stream("GET", url) as resp:
        if resp.status_code != 200:
            raise _HttpStatus(resp.status_code)
        declared = resp.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_bytes:
            raise ImageFetchError(f"{url}: {declared} bytes is over the {limits.max_bytes}-byte limit")
        chunks: list[bytes] = []
        total = 0
        # Count while streaming: Content-Length may be absent or lie.
        for chunk in resp.iter_bytes(64 * 1024):
            total += len(chunk)
            if total > limits.max_bytes:
                raise ImageFetchError(f"{url}: over the {limits.max_bytes}-byte limit")
            chunks.append(chunk)
    return b"".join(chunks)


class _HttpStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def download(url: str, limits: FetchLimits, client: httpx.Client | None = None) -> bytes:
    """GET with retries on timeouts, connection errors and 408/429/5xx; other statuses fail fast."""
    own = client is None
    client = client or new_client(limits)
    try:
        last = ""
        for attempt in range(limits.retries + 1):
            if attempt:
                time.sleep(limits.backoff_s * 2 ** (attempt - 1))
            try:
                return _download_once(client, url, limits)
            except _HttpStatus as exc:
                last = f"HTTP {exc.status}"
                if exc.status not in RETRY_STATUS:
                    break
            except httpx.TimeoutException:
                last = f"timed out after {limits.timeout_s:g}s"
            except httpx.HTTPError as exc:  # connection refused, reset, bad URL ...
                last = f"{exc.__class__.__name__}: {exc}"
        tries = attempt + 1
        raise ImageFetchError(f"{url}: {last} ({tries} attempt{'s' if tries > 1 else ''})")
    finally:
        if own:
            client.close()


def new_client(limits: FetchLimits) -> httpx.Client:
    return httpx.Client(timeout=limits.timeout_s, follow_redirects=OPERATOR.follow_redirects,
                        headers={"User-Agent": OPERATOR.user_agent})


def fetch(ref: str, limits: FetchLimits, client: httpx.Client | None = None) -> bytes:
    """The bytes of one manifest image reference (already resolved against the manifest dir)."""
    if ref.startswith(("http://", "https://")):
        return download(ref, limits, client)
    if ref.startswith(CATALOG):
        root = Path(limits.catalog_root) if limits.catalog_root else None
        path = catalog_path(ref, root)
        if path is None:
            why = "LOOKALIKE_CATALOG_ROOT is not set" if root is None else f"not under {root}"
            raise ImageFetchError(f"{ref}: {why}")
        return read_local(str(path), limits)
    return read_local(ref, limits)
