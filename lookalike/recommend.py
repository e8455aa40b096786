"""Recommend from examples over the store (blocking; SearchService runs it in a thread).

Positive and negative products are read with their stored vectors (nothing re-embedded); a
shopper's photo joins the positives. lookalike/rank/examples.py holds the two strategies.
`recommend` returns the candidate set, best first; SearchService ranks it with
lookalike/rank/ranking.py `order` (variants collapsed) and pages it, as it does a search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from lookalike.rank.examples import IMAGE_WEIGHT, Example, average_query, best_score
from lookalike.store.base import Filters, Hit, ProductStore


class UnknownProducts(LookupError):
    def __init__(self, ids: Sequence[str]) -> None:
        super().__init__(", ".join(ids))
        self.ids = list(ids)


def _examples(store: ProductStore, ids: Sequence[str]) -> list[Example]:
    records = store.get(list(ids), with_vectors=True)
    missing = [i for i in ids if i not in records]
    if missing:
        raise UnknownProducts(missing)
    return [Example(np.stack(records[i].image_vectors), records[i].text_vector) for i in ids]


def recommend(store: ProductStore, *, positive: Sequence[str], negative: Sequence[str],
              photo: np.ndarray | None, strategy: str, pool: int,
              filters: Filters) -> list[Hit]:
    """The `pool` best candidates by `strategy`, best first (the examples never among them)."""
    pos = _examples(store, positive)
    neg = _examples(store, negative)
    if photo is not None:
        pos.append(Example(np.asarray(photo, np.float32)[None, :]))
    exclude = [*positive, *negative]
    image_q, text_q = average_query(pos, neg)
    if strategy == "average_vector":
        hits = store.search(image_vector=image_q, text_vector=text_q, image_weight=IMAGE_WEIGHT,
                            filters=filters, top_k=pool, exclude_ids=exclude)
        return [replace(h, explain={"strategy": strategy, "vector": dict(h.scores)}) for h in hits]
    # best_score: candidates near any positive, re-scored against every example.
    candidates = store.search(image_vectors=[v for e in pos for v in e.images], text_vector=text_q,
                              image_weight=IMAGE_WEIGHT, filters=filters,
                              top_k=pool, exclude_ids=exclude)
    records = store.get([h.product.product_id for h in candidates], with_vectors=True)
    scored = []
    for h in candidates:
        rec = records.get(h.product.product_id)
        if rec is None or not rec.image_vectors:
            continue
        s = best_score(Example(np.stack(rec.image_vectors), rec.text_vector), pos, neg)
        scored.append(replace(h, score=s, explain={"strategy": strategy, "vector": dict(h.scores),
                                                   "best_score": round(s, 6)}))
    return sorted(scored, key=lambda h: -h.score)
