"""Build the demo catalogue from real product photos (Fashion-MNIST, MIT, Zalando).

    python -m lookalike.catalog.demo --out data/demo --products 2000

Each 28x28 greyscale article is rendered as a dark-on-light 224x224 product shot tinted in the
product's colour, so the photo, the colour filter and the text agree. About a quarter of the
products get a second photo (the same article mirrored), exercising multi-image products.
With `variant_share` (the demo's default: DEMO_VARIANT_SHARE) that share of articles is also
sold in one to three more colours: separate products with the same photo re-tinted, style,
price and brand, so search shows them once as "also in N variants" (lookalike/variants.py).
Every product's `article` attribute names its source article: the variants' ground truth.
Source images (`--source`, env LOOKALIKE_DEMO_SOURCE): "auto" (default) uses Debian's
dataset-fashion-mnist when installed, else the 3,000-image subset vendored in this package;
"vendored" and "debian" force one (a forced source that is missing is an error, not a fallback).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
VENDORED_DIR = Path(__file__).parent / "data"  # package data: ships in the wheel
Split = Literal["train", "test"]
Source = Literal["auto", "vendored", "debian"]
SOURCES = ("auto", "vendored", "debian")
SOURCE_ENV = "LOOKALIKE_DEMO_SOURCE"
# split -> (prefix of the original IDX files, vendored subset); scripts/vendor_fashion_mnist.py
# writes the subsets from the IDX files.
SPLITS = {"train": ("train", "fashion_mnist_subset.npz"),
          "test": ("t10k", "fashion_mnist_test_subset.npz")}

CATEGORIES = ["t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
              "bag", "ankle boot"]
COLORS = {  # name -> RGB of the article's ink; all clearly visible on a light background
    "black": (25, 25, 25), "red": (200, 30, 40), "blue": (30, 70, 200), "green": (30, 140, 60),
    "yellow": (225, 185, 20), "pink": (230, 100, 170), "purple": (120, 50, 160),
    "orange": (235, 120, 20), "brown": (120, 70, 30), "grey": (128, 128, 128),
}
SIZES = {"clothing": ["XS", "S", "M", "L", "XL"], "shoes": ["38", "39", "40", "41", "42", "43", "44"],
         "bag": ["one size"]}
PRICE_RANGE = {"t-shirt": (9, 39), "trousers": (29, 99), "pullover": (25, 89), "dress": (29, 149),
               "coat": (59, 299), "sandal": (19, 79), "shirt": (19, 69), "sneaker": (39, 159),
               "bag": (19, 249), "ankle boot": (49, 199)}
STYLES = ["classic", "relaxed-fit", "slim", "vintage", "everyday", "premium", "lightweight",
          "organic cotton", "oversized", "essential"]
BACKGROUND = np.array([246, 244, 240], dtype=np.float32)
DEMO_VARIANT_SHARE = 0.25  # articles also sold in other colours, in the demo catalogue


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (big-endian dims after a 4-byte magic whose last byte is the rank)."""
    with gzip.open(path) as f:
        raw = f.read()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def resolve_source(source: str | None = None) -> str:
    """The argument, else $LOOKALIKE_DEMO_SOURCE, else "auto"; checked, never guessed."""
    value = source or os.environ.get(SOURCE_ENV) or "auto"
    if value not in SOURCES:
        raise ValueError(f"demo source must be one of {', '.join(SOURCES)}, not {value!r}")
    return value


def _debian_files(split: str, debian_dir: Path) -> tuple[Path, Path]:
    prefix = SPLITS[split][0]
    return (debian_dir / f"{prefix}-images-idx3-ubyte.gz",
            debian_dir / f"{prefix}-labels-idx1-ubyte.gz")


def load_source(n: int, *, split: Split = "train", source: Source | None = None,
                debian_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first n (images uint8 (n,28,28), labels uint8 (n,)) of a Fashion-MNIST split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    source = resolve_source(source)
    images_gz, labels_gz = _debian_files(split, debian_dir or DEBIAN_DIR)
    if source == "debian" or (source == "auto" and images_gz.exists()):
        if not images_gz.exists():
            raise FileNotFoundError(f"{images_gz} is missing: install Debian's dataset-fashion-mnist "
                                    "or use --source vendored")
        images, labels = read_idx(images_gz), read_idx(labels_gz)
    else:
        with np.load(VENDORED_DIR / SPLITS[split][1]) as data:
            images, labels = data["images"], data["labels"]
    if n > len(images):
        raise ValueError(f"only {len(images)} {split} images available from the {source} source, "
                         f"asked for {n}")
    return images[:n], labels[:n]


def render(article: np.ndarray, rgb: tuple[int, int, int], size: int = 224) -> Image.Image:
    """28x28 light-on-dark article -> a size x size product shot, the article in its colour."""
    alpha = np.asarray(Image.fromarray(article).resize((size - 32, size - 32), Image.BICUBIC),
                       dtype=np.float32)[..., None] / 255.0
    ink = np.array(rgb, dtype=np.float32)
    inner = BACKGROUND * (1 - alpha) + ink * alpha
    canvas = np.tile(BACKGROUND, (size, size, 1))
    canvas[16:-16, 16:-16] = inner
    return Image.fromarray(canvas.clip(0, 255).astype(np.uint8))


def _size_group(category: str) -> str:
    if category in ("sandal", "sneaker", "ankle boot"):
        return "shoes"
    return "bag" if category == "bag" else "clothing"


def _variant_colors(rng: np.random.Generator, color: str, variant_share: float) -> list[str]:
    """The article's colour, plus one to three others if it is one sold in several."""
    if variant_share <= 0 or rng.random() >= variant_share:
        return [color]
    others = [c for c in COLORS if c != color]
    extra = rng.choice(len(others), size=int(rng.integers(1, 4)), replace=False)
    return [color, *(others[int(k)] for k in extra)]


def build(out_dir: Path, n_products: int = 2000, *, seed: int = 7, second_image_share: float = 0.25,
          image_format: str = "jpg", source: Source | None = None, split: Split = "train",
          variant_share: float = 0.0) -> Path:
    """Write images and manifest.jsonl under out_dir; return the manifest path. The demo uses
    the train split; the evaluation harness also builds one from the held-out test split.
    `n_products` counts variants: with variants, fewer source articles are used."""
    out_dir = Path(out_dir)
    images, labels = load_source(n_products, split=split, source=source)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    color_names = list(COLORS)
    manifest = out_dir / "manifest.jsonl"
    i = 0
    with manifest.open("w") as f:
        for n, (article, label) in enumerate(zip(images, labels)):
            if i >= n_products:
                break
            category = CATEGORIES[int(label)]
            base_color = color_names[int(rng.integers(len(color_names)))]
            style = STYLES[int(rng.integers(len(STYLES)))]
            lo, hi = PRICE_RANGE[category]
            sizes = SIZES[_size_group(category)]
            # Drawn in the order the catalogue always used: without variants it is unchanged.
            mirrored = rng.random() < second_image_share
            size = sizes[int(rng.integers(len(sizes)))]
            price = round(float(rng.uniform(lo, hi)) - 0.01, 2)
            brand = ["Zalando Demo", "Lookalike Basics", "Northwind"][int(rng.integers(3))]
            colors = _variant_colors(rng, base_color, variant_share)[:n_products - i]
            for k, color in enumerate(colors):
                size = size if k == 0 else sizes[int(rng.integers(len(sizes)))]
                pid = f"fm-{i:05d}"
                i += 1
                refs = [f"images/{pid}-0.{image_format}"]
                render(article, COLORS[color]).save(out_dir / refs[0], quality=92)
                if mirrored:
                    refs.append(f"images/{pid}-1.{image_format}")
                    render(article[:, ::-1].copy(), COLORS[color]).save(out_dir / refs[1],
                                                                        quality=92)
                row = _row(pid, category, color, style, size, price, refs, brand, int(label),
                           f"fm-a{n:05d}")
                f.write(json.dumps(row) + "\n")
    return manifest


def _row(pid: str, category: str, color: str, style: str, size: str, price: float,
         refs: list[str], brand: str, label: int, article: str) -> dict[str, object]:
    return {
        "product_id": pid,
        "title": f"{color.capitalize()} {style} {category}",
        "description": (f"A {style} {category} in {color}. "
                        f"{'Comfortable and easy to wear' if category not in ('bag',) else 'Roomy and practical'}"
                        f", from the lookalike demo collection."),
        "category": category,
        "color": color,
        "size": size,
        "price": price,
        "images": refs,
        "brand": brand,
        "source_label": label,
        "article": article,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/demo"))
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--variant-share", type=float, default=DEMO_VARIANT_SHARE,
                        help="share of articles also sold in other colours (0: none)")
    parser.add_argument("--source", choices=SOURCES, default=None,
                        help=f"source images (default: ${SOURCE_ENV}, else auto)")
    args = parser.parse_args(argv)
    manifest = build(args.out, args.products, seed=args.seed, source=args.source,
                     variant_share=args.variant_share)
    print(f"demo catalogue: {args.products} products -> {manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
