"""Uploaded product images on local disk, content-addressed: `<sha256 of the bytes>.<ext>`.

The store keeps these paths in a product's `images`. One file may serve several products (the
same photo uploaded twice is stored once), so a file is removed only when no stored product
lists it any more. Catalogue images (paths next to a manifest, URLs) are never touched: only
files directly in the media directory with a content-addressed name are ours.
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

from lookalike.images import CONTENT_TYPES, sniff_content_type

EXTENSIONS = {ctype: fmt.lower() for fmt, ctype in CONTENT_TYPES.items()}
NAME = re.compile(r"[0-9a-f]{64}\.(?:" + "|".join(EXTENSIONS.values()) + ")")
LOCK_NAME = ".lock"


class MediaDir:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def ref_for(self, data: bytes) -> str:
        """The reference the bytes will be stored under; no I/O, so it can go into the
        product before the product is written and the file after."""
        ext = EXTENSIONS[sniff_content_type(data) or "image/jpeg"]
        return str(self.root / f"{hashlib.sha256(data).hexdigest()}.{ext}")

    def save(self, data: bytes) -> str:
        ref = self.ref_for(data)
        path = Path(ref)
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
        """Whether `ref` is a file this directory manages (never a catalogue image or a URL)."""
        if ref.startswith(("http://", "https://")):
            return False
        path = Path(ref)
        return bool(NAME.fullmatch(path.name)) and path.parent.resolve() == self.root.resolve()

    def remove_unreferenced(self, refs: Sequence[str],
                            referenced: Callable[[Sequence[str]], set[str]]) -> list[str]:
        """Delete those of our `refs` that `referenced` (the store) says nobody lists; returns
        the refs deleted. Call it after the store write that dropped them."""
        candidates = [r for r in dict.fromkeys(refs) if self.owns(r)]
        if not candidates:
            return []
        removed = []
        # Under the lock a concurrent upload of the same photo (product written, file not yet)
        # either is seen by `referenced` or writes the file again after we remove it.
        with self._locked():
            still = referenced(candidates)
            for ref in candidates:
                if ref not in still:
                    Path(ref).unlink(missing_ok=True)
                    removed.append(ref)
        return removed

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # flock: one lock for the threads of this process and the other router replicas.
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_NAME, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
