"""Write the vendored Fashion-MNIST subsets that ship inside the lookalike package.

    python scripts/vendor_fashion_mnist.py [--src /usr/share/datasets/fashion-mnist]
                                           [--dest lookalike/catalog/data] [--train 3000] [--test 1000]

Needs Debian's `dataset-fashion-mnist` (or the four original IDX .gz files in --src). A maintainer
runs it once and commits the two .npz files: the demo catalogue is built from the train subset
on machines without Debian's package, and the evaluation harness reads the test subset. Taking
the first N images of each split makes the arrays reproducible from the source (the zip containers carry timestamps).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

# File names and the IDX reader are the demo's own, so the two can never disagree.
from lookalike.catalog.demo import DEBIAN_DIR, SPLITS, VENDORED_DIR, read_idx


def vendor(src: Path, dest: Path, split: str, n: int) -> Path:
    prefix, name = SPLITS[split]
    images = read_idx(src / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(src / f"{prefix}-labels-idx1-ubyte.gz")
    if n > len(images) or len(images) != len(labels):
        raise ValueError(f"{src}: {len(images)} images, {len(labels)} labels; asked for {n}")
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / name
    np.savez_compressed(out, images=images[:n], labels=labels[:n])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--src", type=Path, default=DEBIAN_DIR)
    p.add_argument("--dest", type=Path, default=VENDORED_DIR)
    p.add_argument("--train", type=int, default=3000, help="train images to keep")
    p.add_argument("--test", type=int, default=1000, help="test images to keep")
    args = p.parse_args(argv)
    for split, n in (("train", args.train), ("test", args.test)):
        out = vendor(args.src, args.dest, split, n)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {n} {split} images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
