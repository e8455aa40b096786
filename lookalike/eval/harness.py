"""The evaluation runs: image->image, text->product, and ANN recall against exact search.

Image and text queries go through the real search path: the HTTP API (create_api over a
SearchService with the packaged embedders) on a real milvus-lite server. ANN recall asks the
store directly, against an exact numpy search over the very same stored vectors, per filter
selectivity bucket, because a filter is where an approximate index loses most.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.catalog.product import Product
from lookalike.eval.catalogue import Labelled
from lookalike.eval.metrics import mean, ndcg_at_k, precision_at_k, recall_at_k, tie_aware_recall
from lookalike.store.base import Filters, StoredProduct

Post = Callable[[dict[str, Any]], dict[str, Any]]
BUCKETS = ((0.5, "≥50%"), (0.1, "10–50%"), (0.01, "1–10%"), (0.0, "<1%"))
PRICE_KEYS = ("min_price", "max_price")


@dataclass(frozen=True)
class TextQuery:
    text: str
    expect: dict[str, Any]

    @property
    def constrained(self) -> bool:
        return any(k in self.expect for k in (*PRICE_KEYS, "size"))


def load_queries(path: Path) -> list[TextQuery]:
    out = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            out.append(TextQuery(row["text"], dict(row["expect"])))
    return out


def matches(p: Product | dict[str, Any], expect: dict[str, Any]) -> bool:
    get = (lambda k: p.get(k)) if isinstance(p, dict) else (lambda k: getattr(p, k))
    for key in ("category", "color", "size"):
        if key in expect and get(key) != expect[key]:
            return False
    price = get("price")
    if "max_price" in expect and (price is None or price > expect["max_price"]):
        return False
    if "min_price" in expect and (price is None or price < expect["min_price"]):  # noqa: SIM103
        return False  # one guard per attribute, as above
    return True


@dataclass
class Summary:
    per_query: list[dict[str, Any]] = field(default_factory=list)

    def mean_of(self, key: str, where: Callable[[dict[str, Any]], bool] = lambda _: True) -> float:
        return round(mean([q[key] for q in self.per_query if where(q)]), 4)


def text_eval(post: Post, products: Sequence[Product], queries: Sequence[TextQuery], *,
              k: int = 10, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    s = Summary()
    took: list[float] = []
    for q in queries:
        n_rel = sum(matches(p, q.expect) for p in products)
        if n_rel == 0:
            continue  # nothing to find: the query says nothing about ranking
        body = post({"text": q.text, "top_k": k, **(extra or {})})
        took.append(float(body.get("took_ms", 0.0)))
        rel = [matches(r, q.expect) for r in body["results"]]
        s.per_query.append({"text": q.text, "relevant": n_rel, "p": precision_at_k(rel, k, n_rel),
                            "constrained": q.constrained})
    return {"queries": len(s.per_query), f"p@{k}": s.mean_of("p"),
            f"p@{k}_constrained": s.mean_of("p", lambda q: q["constrained"]),
            "constrained_queries": sum(q["constrained"] for q in s.per_query),
            "took_ms_p50": round(float(np.median(took)), 3) if took else None,
            "worst": sorted(s.per_query, key=lambda q: q["p"])[:8]}


def _product_scores(items: Sequence[StoredProduct], query: np.ndarray) -> np.ndarray:
    """Exact per-product score: the best cosine over each product's photos."""
    return np.array([float(np.max(it.image_vectors @ query)) for it in items])


def image_eval(post: Post, catalogue: Labelled, sample: Sequence[int], *, k: int = 10,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Leave-one-out: each sampled product's first photo queries; the product itself is dropped;
    relevant = same category. The exact figure ranks the same stored vectors in numpy."""
    items = catalogue.items
    cats = [it.product.category for it in items]
    counts = defaultdict(int)
    for c in cats:
        counts[c] += 1
    api: dict[str, list[float]] = defaultdict(list)
    exact: list[float] = []
    for i in sample:
        it = items[i]
        n_rel = counts[it.product.category] - 1
        photo = Path(it.product.images[0]).read_bytes()
        # not_like leaves the product out of the whole search (candidates, the photo's
        # category vote); an API without it ignores the field, and its hit is dropped below.
        body = post({"image_base64": base64.b64encode(photo).decode(), "top_k": k + 1,
                     "not_like": [it.product.product_id], **(extra or {})})
        got = [r for r in body["results"] if r["product_id"] != it.product.product_id][:k]
        rel = [r["category"] == it.product.category for r in got]
        api["p"].append(precision_at_k(rel, k, n_rel))
        api["recall"].append(recall_at_k(rel, k, n_rel))
        api["ndcg"].append(ndcg_at_k(rel, k, n_rel))
        scores = _product_scores(items, it.image_vectors[0])
        scores[i] = -np.inf
        top = np.argsort(-scores)[:k]
        exact.append(precision_at_k([cats[j] == it.product.category for j in top], k, n_rel))
    out = {f"{m}@{k}": round(mean(v), 4) for m, v in api.items()}
    out[f"exact_p@{k}"] = round(mean(exact), 4)
    out["ratio_to_exact"] = round(out[f"p@{k}"] / out[f"exact_p@{k}"], 4) if exact else None
    out["queries"] = len(sample)
    return out


def _bucket(selectivity: float) -> str:
    return next(name for lo, name in BUCKETS if selectivity >= lo)


def _filter_mask(products: Sequence[Product], f: Filters) -> np.ndarray:
    return np.array([(not f.categories or p.category in f.categories)
                     and (not f.colors or p.color in f.colors)
                     and (not f.sizes or p.size in f.sizes)
                     and (f.max_price is None or (p.price is not None and p.price <= f.max_price))
                     and (f.min_price is None or (p.price is not None and p.price >= f.min_price))
                     for p in products])


def query_filters(p: Product, rng: np.random.Generator, colors: Sequence[str]) -> list[Filters]:
    """Filters of every selectivity around one query product."""
    other = str(colors[int(rng.integers(len(colors)))])
    return [Filters(), Filters(categories=(p.category,)), Filters(colors=(other,)),
            Filters(max_price=30.0), Filters(categories=(p.category,), colors=(other,)),
            Filters(categories=(p.category,), colors=(p.color,), sizes=(p.size,))]


def ann_eval(search: Callable[..., list[Any]], catalogue: Labelled, sample: Sequence[int], *,
             k: int = 10, seed: int = 0) -> dict[str, Any]:
    """Recall@k of the store's index against exact search, overall and per selectivity."""
    rng = np.random.default_rng(seed)
    items, products = catalogue.items, catalogue.products
    colors = sorted({p.color for p in products if p.color})
    texts = np.stack([it.text_vector for it in items])
    index = {p.product_id: j for j, p in enumerate(products)}
    by_bucket: dict[str, list[float]] = defaultdict(list)
    by_modality: dict[str, list[float]] = defaultdict(list)
    for i in sample:
        for f in query_filters(products[i], rng, colors):
            mask = _filter_mask(products, f)
            if not mask.any():
                continue
            bucket = _bucket(float(mask.mean()))
            for modality in ("image", "text"):
                q = items[i].image_vectors[0] if modality == "image" else items[i].text_vector
                scores = (_product_scores(items, q) if modality == "image" else texts @ q)
                scores = np.where(mask, scores, -np.inf)
                exact = np.sort(scores)[::-1][:min(k, int(mask.sum()))]
                hits = search(**{f"{modality}_vector": q}, filters=f, top_k=k)
                r = tie_aware_recall([float(scores[index[h.product.product_id]]) for h in hits],
                                     [float(s) for s in exact])
                by_bucket[bucket].append(r)
                by_modality[modality].append(r)
    out = {name: {"recall@10": round(mean(v), 4), "searches": len(v)}
           for _, name in BUCKETS if (v := by_bucket.get(name))}
    overall = [r for v in by_bucket.values() for r in v]
    return {"overall": round(mean(overall), 4), "buckets": out,
            "by_modality": {m: round(mean(v), 4) for m, v in by_modality.items()}}
