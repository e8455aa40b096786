"""LocalMedia: logical references, content-addressed files, safe concurrent writes, removal of
our files only, and rows from before logical references (plain paths) still ours."""

from __future__ import annotations

import io
import multiprocessing
import queue
import threading
from pathlib import Path

import pytest
from PIL import Image

from lookalike.config import Settings
from lookalike.media import MEDIA, open_media
from lookalike.media import LocalMedia as MediaDir


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
    assert ref.startswith(MEDIA) and ref.endswith(".png") and media.locate(ref) is None
    assert media.save(data) == ref == media.save(data)
    path = media.locate(ref)
    assert path == tmp_path / "media" / ref[len(MEDIA):] and path.read_bytes() == data
    assert media.owns(ref)


def test_a_first_upload_makes_the_data_directory_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "data"
    MediaDir(data_dir / "media").save(png(1, 16))
    modes = {p.name: p.stat().st_mode & 0o777 for p in (data_dir.parent, data_dir, data_dir / "media")}
    assert modes == {"fresh": 0o700, "data": 0o700, "media": 0o700}


def file_of(root: Path, ref: str) -> Path:
    return root / ref[len(MEDIA):]


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
        assert file_of(root, ref).read_bytes() == data
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".png")) == [".lock"]


def test_only_our_unreferenced_files_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "media"
    media = MediaDir(root)
    kept, gone = media.save(png(1, 8)), media.save(png(2, 8))
    gone_name = gone[len(MEDIA):]
    catalogue = tmp_path / "catalogue" / "img.jpg"
    catalogue.parent.mkdir()
    catalogue.write_bytes(b"catalogue")
    lookalike = tmp_path / gone_name  # a content-addressed name outside the media dir
    lookalike.write_bytes(b"x")
    traversal = str(root / ".." / gone_name)
    asked: list[list[str]] = []

    def referenced(refs: list[str]) -> set[str]:
        asked.append(list(refs))
        return {kept}

    refs = [kept, gone, gone, str(catalogue), str(lookalike), traversal, "https://cdn/x.jpg",
            "media:../" + gone_name, "catalog:" + gone_name]
    assert media.remove_unreferenced(refs, referenced) == [gone]
    # The store is asked about our files only, in every spelling a row may hold.
    assert len(asked) == 1 and {kept, gone, str(root / gone_name)} <= set(asked[0])
    assert not {str(catalogue), str(lookalike), traversal} & set(asked[0])
    assert file_of(root, kept).exists() and not file_of(root, gone).exists()
    assert catalogue.exists() and lookalike.exists()
    assert media.remove_unreferenced([str(catalogue)], referenced) == [] and len(asked) == 1


@pytest.mark.parametrize("spelling", ["absolute", "relative"])
def test_rows_from_before_logical_refs_are_still_ours(tmp_path: Path, monkeypatch,
                                                      spelling: str) -> None:
    """Old rows list `data/media/<sha>.png` (relative to the working directory) or its absolute
    form: served under its name, and its file kept while either spelling is listed."""
    monkeypatch.chdir(tmp_path)
    root = Path("data/media") if spelling == "relative" else tmp_path / "data" / "media"
    media = MediaDir(root)
    ref = media.save(png(3, 8))
    old = str(root / ref[len(MEDIA):])
    assert media.owns(old) and media.locate(old) == media.locate(ref)
    # An old row still lists the path: removing the new spelling keeps the file.
    assert media.remove_unreferenced([ref], lambda asked: {old} & set(asked)) == []
    assert media.locate(ref) is not None
    # Nobody lists either spelling any more: gone.
    assert media.remove_unreferenced([old], lambda asked: set()) == [old]
    assert media.locate(ref) is None


def test_the_settings_choose_the_backend(tmp_path: Path) -> None:
    media = open_media(Settings(data_dir=tmp_path))
    assert isinstance(media, MediaDir) and media.root == tmp_path / "media"
