"""MediaDir: content-addressed files, safe concurrent writes, and removal of our files only."""

from __future__ import annotations

import io
import multiprocessing
import queue
import threading
from pathlib import Path

import pytest
from PIL import Image

from lookalike.media import MediaDir


def png(seed: int, size: int = 1024) -> bytes:
    # Noise does not compress: a few MB keeps every writer inside its write at once.
    buf = io.BytesIO()
    Image.frombytes("RGB", (size, size), bytes((i * 7919 + seed) % 251 for i in range(size * size * 3))
                    ).save(buf, "PNG", compress_level=0)
    return buf.getvalue()


def test_the_reference_is_known_before_the_file_and_names_the_content(tmp_path: Path) -> None:
    media = MediaDir(tmp_path / "media")
    data = png(1, 16)
    ref = media.ref_for(data)
    assert not Path(ref).exists() and ref.endswith(".png")
    assert media.save(data) == ref == media.save(data)
    assert Path(ref).read_bytes() == data and media.owns(ref)


def _save_in(root: Path, data: bytes, barrier, out) -> None:
    barrier.wait()
    try:
        out.put(MediaDir(root).save(data))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        out.put(f"error: {exc!r}")


@pytest.mark.parametrize("workers", ["threads", "processes"])
def test_concurrent_uploads_of_one_photo_do_not_collide(tmp_path: Path, workers: str) -> None:
    root, n = tmp_path / "media", 6
    for seed in range(3):  # a few rounds: each starts with the file absent
        data = png(seed)
        if workers == "threads":
            barrier, out = threading.Barrier(n), queue.Queue()
            threads = [threading.Thread(target=_save_in, args=(root, data, barrier, out))
                       for _ in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            results = [out.get(timeout=60) for _ in threads]
        else:
            ctx = multiprocessing.get_context("fork")
            barrier, out = ctx.Barrier(n), ctx.Queue()
            procs = [ctx.Process(target=_save_in, args=(root, data, barrier, out)) for _ in range(n)]
            for p in procs:
                p.start()
            results = [out.get(timeout=60) for _ in procs]
            for p in procs:
                p.join(60)
        ref = MediaDir(root).ref_for(data)
        assert results == [ref] * n
        assert Path(ref).read_bytes() == data
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".png")) == [".lock"]


def test_only_our_unreferenced_files_are_removed(tmp_path: Path) -> None:
    media = MediaDir(tmp_path / "media")
    kept, gone = media.save(png(1, 8)), media.save(png(2, 8))
    catalogue = tmp_path / "catalogue" / "img.jpg"
    catalogue.parent.mkdir()
    catalogue.write_bytes(b"catalogue")
    lookalike = tmp_path / Path(gone).name  # a content-addressed name outside the media dir
    lookalike.write_bytes(b"x")
    traversal = str(tmp_path / "media" / ".." / Path(gone).name)
    asked: list[list[str]] = []

    def referenced(refs: list[str]) -> set[str]:
        asked.append(list(refs))
        return {kept}

    refs = [kept, gone, gone, str(catalogue), str(lookalike), traversal, "https://cdn/x.jpg"]
    assert media.remove_unreferenced(refs, referenced) == [gone]
    assert asked == [[kept, gone]]  # the store is asked about our files only
    assert Path(kept).exists() and not Path(gone).exists()
    assert catalogue.exists() and lookalike.exists()
    assert media.remove_unreferenced([str(catalogue)], referenced) == [] and len(asked) == 1
