"""Variant groups: the same article in several colours, sizes or re-shoots, shown once.

Detection (`detect`) runs in the ingest driver after every batch is written, as an ANN
self-query against the store: for each product embedded in this run, Milvus finds the stored
products whose photo is nearest by perceptual hash (`phash_vector`, schema.py) and by image
embedding, and a pair is a variant when the two agree (`is_variant`). Why against the store
and not inside the Ray batches: a batch sees only its own products, the store sees the whole
catalogue (earlier runs included), and the writer is the one place that already talks to it.

Why two signals: a perceptual hash of the luminance keeps an article's shape and ignores its
tint, so colour variants hash (nearly) alike while ImageNet features move (cosine 0.64-1.0 on
the demo); a re-shoot (resized, re-encoded, slightly cropped) keeps its embedding (cosine
0.86-0.95) while cropping moves the hash (up to ~20 bits). So: nearly the same hash and a loosely similar embedding,
or a very similar embedding and a loosely similar hash, within one category. Thresholds are
settings (lookalike/config.py); `python -m lookalike.eval.variants` measures them.

Labels: a product without variants is its own group (`group_id` = its id). A detected group
gets a label that no product id can take ("~" is not allowed in ids), so a product that leaves
its group never carries the group along. An explicit `group_id` (a manifest column or a PUT's
metadata field, stored among the attributes) wins: such products are never detected.
Search collapses each group to its best-ranked member (`collapse`) and lists the others.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lookalike.store.base import ProductStore

GROUP_ATTRIBUTE = "group_id"
PHASH_BITS = 64
DETECT_CHUNK = 64  # products per self-query request


def phash_hex(image: Any) -> str:
    """A photo's 64-bit perceptual hash (imagehash's DCT pHash) as 16 hex digits."""
    import imagehash

    return str(imagehash.phash(image.convert("RGB") if image.mode not in ("L", "RGB") else image))


def phash_vector(hexhash: str) -> list[float]:
    """The hash as a +-1/8 vector: the cosine of two is 1 - hamming / 32 (a unit vector)."""
    bits = int(hexhash, 16) if hexhash else 0
    return [0.125 if bits >> (PHASH_BITS - 1 - i) & 1 else -0.125 for i in range(PHASH_BITS)]


def vector_phash(vector: Sequence[float]) -> str:
    bits = 0
    for v in vector:
        bits = bits << 1 | (1 if v > 0 else 0)
    return f"{bits:016x}"


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def explicit_group(attributes: dict[str, Any] | None) -> str:
    """The group a manifest or a PUT named ("" if none)."""
    value = (attributes or {}).get(GROUP_ATTRIBUTE)
    return str(value).strip() if value not in (None, "") else ""


def group_key(product_id: str, group_id: str) -> str:
    return group_id or product_id


@dataclass(frozen=True)
class Thresholds:
    # The defaults are Settings' (lookalike/config.py, LOOKALIKE_VARIANT_*), chosen there.
    same_photo_hash: int = 0  # bits: the same picture (another colour) ...
    same_photo_cosine: float = 0.75  # ... when the embeddings agree at least this much
    reshoot_cosine: float = 0.93  # a re-shoot: the embeddings agree this much ...
    reshoot_hash: int = 12  # ... and the hashes differ by at most this many bits
    neighbours: int = 16  # candidates per product and signal

    @classmethod
    def from_settings(cls, s: Any) -> Thresholds:
        return cls(s.variant_hash_distance, s.variant_min_cosine, s.variant_reshoot_cosine,
                   s.variant_reshoot_hash_distance, s.variant_neighbours)


@dataclass(frozen=True)
class Photo:
    """What detection compares of a product: its main photo (image 0) and its category."""

    product_id: str
    category: str
    phash: str
    vector: np.ndarray
    group_id: str = ""
    explicit: bool = False


def is_variant(a: Photo, b: Photo, t: Thresholds) -> bool:
    if a.product_id == b.product_id or a.category != b.category:
        return False
    bits = hamming(a.phash, b.phash)
    cosine = float(np.dot(a.vector, b.vector))
    return ((bits <= t.same_photo_hash and cosine >= t.same_photo_cosine)
            or (bits <= t.reshoot_hash and cosine >= t.reshoot_cosine))


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def new_label(members: Iterable[str]) -> str:
    """A detected group's label: never a product id, never an earlier group's label."""
    return f"~{min(members)}~{secrets.token_hex(4)}"


def assign(fresh: Iterable[str], existing: dict[str, str], edges: Iterable[tuple[str, str]],
           ) -> tuple[dict[str, str], dict[str, str]]:
    """Labels after a detection pass, as (label per fresh product, merged old label -> label).

    `fresh`: products whose photos were (re)detected now; they keep no old label of their
    own. `existing`: the current labels of other products the edges reach (their groups stand:
    members not reached keep them). A fresh product joins the group it matches; groups it
    bridges merge into the smallest old detected label; a new group gets a new label.
    """
    fresh = set(fresh)
    uf = _UnionFind()
    for p in fresh:
        uf.find(p)
    for a, b in edges:
        uf.union(a, b)
    for q, label in existing.items():
        if q not in fresh and label.startswith("~"):  # its group's other members stand with it
            uf.union(q, "\0" + label)
    components: dict[str, set[str]] = {}
    for node in list(uf.parent):
        components.setdefault(uf.find(node), set()).add(node)
    labels: dict[str, str] = {}
    merged: dict[str, str] = {}
    for nodes in components.values():
        mine = nodes & fresh
        if not mine:
            continue
        products = {n for n in nodes if not n.startswith("\0")}
        if len(products) == 1:
            labels.update({p: p for p in mine})
            continue
        old = sorted({existing[q] for q in products - fresh if existing[q].startswith("~")})
        label = old[0] if old else new_label(products)
        for other in old[1:]:
            merged[other] = label
        for q in products:
            if q in fresh or existing.get(q) != label:
                labels[q] = label
    return labels, merged


def detect(store: ProductStore, product_ids: Sequence[str],
           thresholds: Thresholds) -> dict[str, int]:
    """Group `product_ids` (just written) with their near-duplicates anywhere in the store;
    writes the changed labels. Returns {"products": changed labels, "groups": groups touched}."""
    if not store.variants or not product_ids:
        return {"products": 0, "groups": 0}
    todo = list(dict.fromkeys(product_ids))
    existing: dict[str, str] = {}
    edges: list[tuple[str, str]] = []
    fresh: set[str] = set()
    for start in range(0, len(todo), DETECT_CHUNK):
        mine = {p: ph for p, ph in store.variant_photos(todo[start:start + DETECT_CHUNK]).items()
                if not ph.explicit}
        if not mine:
            continue
        fresh.update(mine)
        ids = list(mine)
        by_hash = store.photo_neighbours("phash_vector",
                                         [phash_vector(mine[p].phash) for p in ids],
                                         thresholds.neighbours)
        by_image = store.photo_neighbours("image_vector", [mine[p].vector for p in ids],
                                          thresholds.neighbours)
        wanted = {q for found in (*by_hash, *by_image) for q in found} - set(mine)
        photos = {**{q: ph for q, ph in store.variant_photos(sorted(wanted)).items()
                     if not ph.explicit}, **mine}
        for p, near_hash, near_image in zip(ids, by_hash, by_image):
            for q in set(near_hash) | set(near_image):
                if q in photos and is_variant(photos[p], photos[q], thresholds):
                    edges.append((p, q))
                    existing.setdefault(q, group_key(q, photos[q].group_id))
        for p in ids:
            existing[p] = group_key(p, mine[p].group_id)
    current = dict(existing)
    labels, merged = assign(fresh, {q: g for q, g in existing.items() if q not in fresh}, edges)
    if merged:
        for old, members in store.group_members(list(merged)).items():
            for product in members:
                labels[product.product_id] = merged[old]
    changed = {p: g for p, g in labels.items() if current.get(p) != g}
    if changed:
        store.set_groups(changed)
    return {"products": len(changed),
            "groups": len({g for g in labels.values() if g.startswith("~")})}


def collapse(hits: Sequence[Any], limit: int) -> list[Any]:
    """The best-ranked hit of each group, in rank order, at most `limit`."""
    seen: set[str] = set()
    out = []
    for hit in hits:
        key = group_key(hit.product.product_id, hit.group_id)
        if key not in seen:
            seen.add(key)
            out.append(hit)
            if len(out) == limit:
                break
    return out
