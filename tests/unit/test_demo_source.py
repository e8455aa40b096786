"""Where the demo's source images come from: Debian's full set, or the subsets vendored in the
package. The vendored path is exercised here on every run, Debian installed or not."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from lookalike.catalog import demo
from tests.checks import all_of

REPO = Path(__file__).resolve().parents[2]


def write_idx(path: Path, array: np.ndarray) -> None:
    """The original release's format: magic (0, 0, uint8 type, rank), big-endian dims, data."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture
def fake_debian(tmp_path: Path) -> Path:
    """A Debian-style directory whose images differ from every vendored one (all 255s)."""
    root = tmp_path / "fashion-mnist"
    root.mkdir()
    for prefix, n in (("train", 50), ("t10k", 20)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", np.full((n, 28, 28), 255, np.uint8))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10)
    return root


@pytest.fixture(autouse=True)
def no_env_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(demo.SOURCE_ENV, raising=False)


@pytest.mark.parametrize(("split", "n"), [("train", 3000), ("test", 1000)])
def test_vendored_subsets_hold_images_and_labels_of_every_class(split: str, n: int) -> None:
    with np.load(demo.VENDORED_DIR / demo.SPLITS[split][1]) as data:
        images, labels = data["images"], data["labels"]
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(10))
    assert images.reshape(n, -1).max(axis=1).min() > 0  # no blank article


def test_auto_prefers_debian_and_vendored_forces_the_subset(fake_debian: Path) -> None:
    images, _ = demo.load_source(10, source="auto", debian_dir=fake_debian)
    assert (images == 255).all()
    images, labels = demo.load_source(10, source="vendored", debian_dir=fake_debian)
    with np.load(demo.VENDORED_DIR / "fashion_mnist_subset.npz") as data:
        np.testing.assert_array_equal(images, data["images"][:10])
        np.testing.assert_array_equal(labels, data["labels"][:10])


def test_environment_variable_chooses_the_source(fake_debian: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(demo.SOURCE_ENV, "vendored")
    images, _ = demo.load_source(10, debian_dir=fake_debian)
    assert not (images == 255).all()
    monkeypatch.setenv(demo.SOURCE_ENV, "zalando")
    with pytest.raises(ValueError, match="auto, vendored, debian"):
        demo.load_source(10)


def test_test_split_is_separate_from_train(fake_debian: Path, tmp_path: Path) -> None:
    test_images, test_labels = demo.load_source(1000, split="test", source="vendored")
    train_images, _ = demo.load_source(1000, split="train", source="vendored")
    assert test_images.shape == (1000, 28, 28) and test_labels.shape == (1000,)
    assert not np.array_equal(test_images, train_images)
    assert demo.load_source(20, split="test", source="debian", debian_dir=fake_debian)[0].shape == (20, 28, 28)
    with pytest.raises(ValueError, match="only 1000 test images"):
        demo.load_source(1001, split="test", source="vendored", debian_dir=tmp_path / "absent")


def test_forced_debian_source_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        demo.load_source(5, source="debian", debian_dir=tmp_path / "absent")


def test_demo_catalogue_builds_from_the_vendored_source_with_debian_absent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "DEBIAN_DIR", tmp_path / "absent")  # as on a fresh machine
    manifest = demo.build(tmp_path / "cat", 12, source="auto")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    _, labels = demo.load_source(12, source="vendored")
    assert [r["category"] for r in rows] == [demo.CATEGORIES[int(x)] for x in labels]
    all_of([manifest.parent / ref for r in rows for ref in r["images"]], lambda p: p.is_file(),
           "image references")


def test_vendor_script_writes_the_first_n_of_each_split(fake_debian: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("vendor", REPO / "scripts" / "vendor_fashion_mnist.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    dest = tmp_path / "out"
    assert script.main(["--src", str(fake_debian), "--dest", str(dest), "--train", "30", "--test", "7"]) == 0
    with np.load(dest / "fashion_mnist_subset.npz") as train, \
            np.load(dest / "fashion_mnist_test_subset.npz") as test:
        assert train["images"].shape == (30, 28, 28) and (train["images"] == 255).all()
        np.testing.assert_array_equal(train["labels"], np.arange(30) % 10)
        assert test["images"].shape == (7, 28, 28) and test["labels"].dtype == np.uint8
