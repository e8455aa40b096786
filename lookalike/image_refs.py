"""Where a stored image reference may lead: containment for GET /v1/products/{id}/images/{n}.

References come from manifests and uploads, and a stored row can hold anything (a manifest with
`../../etc/passwd`, a row written by another tool). Files are served only from under the
configured roots (the media directory, the data directory, catalogue folders), after symlinks
are resolved; http(s) references redirect only to hosts listed in LOOKALIKE_IMAGE_REDIRECT_HOSTS.
Anything else is "not found": the API is neither a file server for the host nor an open redirect.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class ImageTarget:
    path: Path | None = None  # a file under a root
    url: str | None = None  # a redirect to an allowed host


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


def resolve(ref: str, *, roots: Iterable[Path],
            redirect_hosts: Iterable[str]) -> ImageTarget | None:
    if ref.startswith(("http://", "https://")):
        host = (urlsplit(ref).hostname or "").lower()
        allowed = {h.lower() for h in redirect_hosts}
        return ImageTarget(url=ref) if host and host in allowed else None
    if "\x00" in ref or not ref:
        return None
    real = contained(Path(ref), roots)
    return ImageTarget(path=real) if real is not None and real.is_file() else None
