"""Uploaded product images, content-addressed, behind one small interface (`MediaStore`).

A stored product lists its uploaded photos as logical references, `media:<sha256>.<ext>`, never
as a path: whichever replica, on whichever node, serves the product resolves the name in the
configured backend. Two backends:
  - `LocalMedia` (the default): files in `data_dir/media` on this host; flock guards writes.
  - `S3Media` (lookalike/media_s3.py, LOOKALIKE_MEDIA_BACKEND=s3): an S3-compatible bucket
    (MinIO in docker-compose.yml), shared by every node of a cluster.

One file may serve several products (the same photo uploaded twice is stored once), so a file
is removed only when no stored product lists it any more. Catalogue images (`catalog:` refs,
paths, URLs) are never touched.

Rows written before logical references (`data/media/<sha>.png`, absolute or relative to the
working directory) keep working: a backend also owns a path whose name is content-addressed
and whose folder is the configured media directory, serves it under its name, and keeps the
file while either spelling is still listed (docs/laptop-to-cluster.md, "Stored references").
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from lookalike.images import CONTENT_TYPES, sniff_content_type

if TYPE_CHECKING:
    from lookalike.config import Settings

MEDIA = "media:"
EXTENSIONS = {ctype: fmt.lower() for fmt, ctype in CONTENT_TYPES.items()}
NAME = re.compile(r"[0-9a-f]{64}\.(?:" + "|".join(EXTENSIONS.values()) + ")")
LOCK_NAME = ".lock"
Referenced = Callable[[Sequence[str]], set[str]]


def media_name(data: bytes) -> str:
    """`<sha256 of the bytes>.<ext>`: the name a photo is stored under in every backend."""
    ext = EXTENSIONS[sniff_content_type(data) or "image/jpeg"]
    return f"{hashlib.sha256(data).hexdigest()}.{ext}"


class MediaStore(Protocol):
    def ref_for(self, data: bytes) -> str:
        """The reference the bytes will be stored under; no I/O, so it can go into the
        product before the product is written and the file after."""

    def save(self, data: bytes) -> str: ...

    def owns(self, ref: str) -> bool:
        """Whether `ref` names a photo this store manages (never a catalogue image or a URL)."""

    def locate(self, ref: str) -> Path | bytes | None:
        """A local file to serve, the bytes themselves, or None when absent."""

    def remove_unreferenced(self, refs: Sequence[str], referenced: Referenced) -> list[str]:
        """Delete those of our `refs` that `referenced` (the store) says nobody lists; returns
        the refs deleted. Call it after the store write that dropped them."""


class NameResolver:
    """Reference -> object name, shared by the backends: `media:<name>`, or a pre-logical path
    to a content-addressed file directly in `legacy_dir` (the local media directory)."""

    def __init__(self, legacy_dir: Path | None) -> None:
        self.legacy_dir = Path(legacy_dir) if legacy_dir is not None else None

    def name_of(self, ref: str) -> str | None:
        if ref.startswith(MEDIA):
            name = ref[len(MEDIA):]
            return name if NAME.fullmatch(name) else None
        if self.legacy_dir is None or ref.startswith(("http://", "https://", "catalog:")):
            return None
        path = Path(ref)
        if not NAME.fullmatch(path.name):
            return None
        with contextlib.suppress(OSError, ValueError):
            if path.parent.resolve() == self.legacy_dir.resolve():
                return path.name
        return None

    def spellings(self, name: str) -> list[str]:
        """Every way a stored row may list the photo `name` (logical, then the old paths)."""
        out = [MEDIA + name]
        if self.legacy_dir is not None:
            out += [str(self.legacy_dir / name), str(self.legacy_dir.resolve() / name)]
        return list(dict.fromkeys(out))

    def unreferenced(self, refs: Sequence[str], referenced: Referenced) -> dict[str, list[str]]:
        """name -> the given refs naming it, for our photos that no stored row lists."""
        by_name: dict[str, list[str]] = {}
        for ref in dict.fromkeys(refs):
            name = self.name_of(ref)
            if name is not None:
                by_name.setdefault(name, []).append(ref)
        if not by_name:
            return {}
        asked = [s for name in by_name for s in self.spellings(name)]
        still = referenced(asked)
        return {name: given for name, given in by_name.items()
                if not any(s in still for s in self.spellings(name))}


class LocalMedia:
    """Photos as files in one directory of this host (the laptop default)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.names = NameResolver(self.root)

    def ref_for(self, data: bytes) -> str:
        return MEDIA + media_name(data)

    def path_for(self, ref: str) -> Path | None:
        name = self.names.name_of(ref)
        return self.root / name if name is not None else None

    def save(self, data: bytes) -> str:
        ref = self.ref_for(data)
        path = self.root / ref[len(MEDIA):]
        with self._locked():
            if path.exists():
                return ref
            # A temp file of our own (concurrent uploads of one photo must not share a temp
            # name), in the same directory so os.replace is an atomic rename.
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{path.stem[:16]}-", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return ref

    def owns(self, ref: str) -> bool:
        return self.names.name_of(ref) is not None

    def locate(self, ref: str) -> Path | None:
        path = self.path_for(ref)
        return path if path is not None and path.is_file() else None

    def remove_unreferenced(self, refs: Sequence[str], referenced: Referenced) -> list[str]:
        if not any(self.owns(r) for r in refs):
            return []
        removed = []
        # Under the lock a concurrent upload of the same photo (product written, file not yet)
        # either is seen by `referenced` or writes the file again after we remove it.
        with self._locked():
            for name, given in self.names.unreferenced(refs, referenced).items():
                (self.root / name).unlink(missing_ok=True)
                removed += given
        return removed

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # flock: one lock for the threads of this process and the other router replicas.
        _private_dirs(self.root)
        with open(self.root / LOCK_NAME, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _private_dirs(path: Path) -> None:
    """Make `path` and its missing parents 0700. The default root is data_dir/media, and the
    data directory also holds the admin key and the store's token: a first upload on a process
    that no CLI prepared (`serve run`, an external Milvus) must not create it open to all."""
    for missing in reversed([p for p in (path, *path.parents) if not p.exists()]):
        missing.mkdir(mode=0o700, exist_ok=True)


def open_media(settings: Settings) -> MediaStore:
    """The backend the settings choose (one place for the decision)."""
    if settings.media_backend == "s3":
        from lookalike.media_s3 import S3Media

        return S3Media.from_settings(settings)
    return LocalMedia(settings.media_dir)
