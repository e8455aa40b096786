"""Where a stored image reference may lead: containment for GET /v1/products/{id}/images/{n}.

Stored references are logical, so any replica on any node resolves them the same way:
  - `media:<sha256>.<ext>`: an uploaded photo, in the media backend (lookalike/media.py);
  - `catalog:<relative path>`: a catalogue image under LOOKALIKE_CATALOG_ROOT;
  - `http(s)://...`: redirected to, only for hosts listed in LOOKALIKE_IMAGE_REDIRECT_HOSTS.
Plain paths (rows written before logical references, or ingested without a catalog root) are
still served, from under the configured roots only (the media directory, the data directory,
catalogue folders).

References come from manifests and uploads, and a stored row can hold anything (a manifest with
`../../etc/passwd`, a row written by another tool). Files are served only from under those
roots, after symlinks are resolved. Anything else is "not found": the API is neither a file
server for the host nor an open redirect.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

CATALOG = "catalog:"


@dataclass(frozen=True)
class ImageTarget:
    path: Path | None = None  # a file under a root
    url: str | None = None  # a redirect to an allowed host
    data: bytes | None = None  # the bytes, from an object store


def catalog_ref(path: str, root: Path | None) -> str:
    """`catalog:<path relative to root>` for a file under the catalogue root, else `path`."""
    if root is None or path.startswith(("http://", "https://", CATALOG, "media:")):
        return path
    try:
        rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
    except ValueError:
        return path
    return CATALOG + rel.as_posix()


def catalog_rel(ref: str) -> PurePosixPath | None:
    """The relative path of a well-formed `catalog:` reference (no `..`, not absolute)."""
    if not ref.startswith(CATALOG) or "\x00" in ref:
        return None
    rel = PurePosixPath(ref[len(CATALOG):])
    if not rel.parts or rel.is_absolute() or ".." in rel.parts:
        return None
    return rel


def catalog_path(ref: str, root: Path | None) -> Path | None:
    """The file a `catalog:` reference names, if it stays under the root (no `..`, no escape
    through a symlink); None for anything else."""
    rel = catalog_rel(ref)
    if root is None or rel is None:
        return None
    return contained(Path(root) / rel, [Path(root)])


def contained(path: Path, roots: Iterable[Path]) -> Path | None:
    """The real path, if it lies under one of the roots' real paths; else None."""
    try:
        real = Path(os.path.realpath(path))
    except (OSError, ValueError):
        return None
    for root in roots:
        base = Path(os.path.realpath(root))
        if real == base or base in real.parents:
            return real
    return None


def resolve(ref: str, *, roots: Iterable[Path], redirect_hosts: Iterable[str],
            media: Any = None, catalog_root: Path | None = None) -> ImageTarget | None:
    """`media`: a lookalike.media.MediaStore (uploaded photos); `catalog_root`: where
    `catalog:` references live."""
    roots = list(roots)
    if media is not None and media.owns(ref):
        found = media.locate(ref)
        if isinstance(found, bytes):
            return ImageTarget(data=found)
        if found is not None:
            real = contained(found, roots)
            return ImageTarget(path=real) if real is not None else None
        # A pre-logical path the backend does not hold (not copied to the bucket yet): it may
        # still be a file here, served under the roots below.
    if ref.startswith("media:"):
        return None
    if ref.startswith(CATALOG):
        path = catalog_path(ref, catalog_root)
        return ImageTarget(path=path) if path is not None and path.is_file() else None
    if ref.startswith(("http://", "https://")):
        host = (urlsplit(ref).hostname or "").lower()
        allowed = {h.lower() for h in redirect_hosts}
        return ImageTarget(url=ref) if host and host in allowed else None
    if "\x00" in ref or not ref:
        return None
    real = contained(Path(ref), roots)
    return ImageTarget(path=real) if real is not None and real.is_file() else None
