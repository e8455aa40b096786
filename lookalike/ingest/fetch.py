"""Reading catalogue images: local paths and http(s) URLs, with size limits, timeouts and retries.

Pure functions (no Ray), run inside the ingest job's parallel prepare tasks. Every failure is an
ImageFetchError whose message is the reason reported against the manifest row.

URLs are fetched by lookalike/fetch.py, the one fetch module the API uses too, under its
OPERATOR policy: manifests are written by the operator, so they are trusted (any address and
port, redirects followed), unlike the shopper's `image_url`, which the API fetches under the
strict SHOPPER policy. The policy is the only difference; see that module and docs/api.md
"Image URLs: two trust policies".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.fetch import OPERATOR, FetchError, FetchPolicy, SyncFetcher
from lookalike.image_refs import CATALOG, catalog_path

if TYPE_CHECKING:
    from lookalike.config import Settings


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
    def from_settings(cls, settings: Settings) -> FetchLimits:
        root = getattr(settings, "catalog_root", None)
        return cls(max_bytes=settings.max_upload_bytes, timeout_s=settings.image_fetch_timeout_s,
                   retries=settings.image_fetch_retries,
                   catalog_root=str(root) if root is not None else None)

    def policy(self) -> FetchPolicy:
        """The trusted OPERATOR policy with these limits; the deadline leaves room for every
        attempt to use its whole timeout."""
        worst = (self.retries + 1) * self.timeout_s * 2 + self.backoff_s * 2 ** self.retries
        return replace(OPERATOR, max_bytes=self.max_bytes, timeout_s=self.timeout_s,
                       retries=self.retries, backoff_s=self.backoff_s,
                       deadline_s=max(OPERATOR.deadline_s, worst))


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


def new_client(limits: FetchLimits) -> SyncFetcher:
    """One fetcher for many reads (thread-safe, connections kept alive); `close()` it. Four
    loops: the prepare stage calls it from 8 I/O threads (see SyncFetcher)."""
    return SyncFetcher(limits.policy(), loops=4)


def download(url: str, limits: FetchLimits, client: SyncFetcher | None = None) -> bytes:
    """GET with retries on timeouts, connection errors and 408/429/5xx; other statuses fail fast."""
    own = client is None
    client = client or new_client(limits)
    try:
        return client.fetch(url)
    except FetchError as exc:
        n = exc.attempts
        raise ImageFetchError(f"{url}: {exc} ({n} attempt{'s' if n > 1 else ''})") from None
    finally:
        if own:
            client.close()


def fetch(ref: str, limits: FetchLimits, client: SyncFetcher | None = None) -> bytes:
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
