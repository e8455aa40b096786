"""Write the vendored Fashion-MNIST subset used by the demo catalogue.

Run once by a maintainer (needs Debian's `dataset-fashion-mnist`):
    python scripts/vendor_fashion_mnist.py [N]
The subset lets users without Debian build the demo; its licence (MIT, Zalando) sits beside it.
"""

import gzip
import sys
from pathlib import Path

import numpy as np

SRC = Path("/usr/share/datasets/fashion-mnist")
DEST = Path(__file__).resolve().parents[1] / "lookalike/catalog/data/fashion_mnist_subset.npz"


def read_idx(path: Path) -> np.ndarray:
    raw = gzip.open(path).read()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def main(n: int = 3000) -> None:
    images = read_idx(SRC / "train-images-idx3-ubyte.gz")[:n]
    labels = read_idx(SRC / "train-labels-idx1-ubyte.gz")[:n]
    np.savez_compressed(DEST, images=images, labels=labels)
    print(f"wrote {DEST} ({DEST.stat().st_size / 1e6:.2f} MB, {n} images)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
