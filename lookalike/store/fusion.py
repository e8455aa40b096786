"""Per-product fusion of an image and a text search (pure; the store does the I/O).

Why not Milvus' hybrid_search alone: its ranker fuses each sub-search's top `limit` *rows*
(grouping comes after the fusion), so a product that is in one list but not the other gets
nothing for the missing modality and its fused score comes out too low (seen here: 0.52 for a
product whose true fused score was 0.69), and products with many photos crowd others out of a
list altogether (with 19 matching products and lists of 30 rows, two of the true top 10 were
missing from the results).
The store therefore takes each modality's best products (grouped searches), and completes every
candidate's missing score exactly from its stored vectors. A product outside both lists is not
seen: the result is approximate the way an ANN search is. Widening the lists until no product
outside them could beat the k-th result (Fagin's threshold algorithm) was measured and dropped:
one round costs two searches and a completion, doubled hybrid latency on random vectors (bench
P6), and when text and photo disagree completely the lists grow towards the whole catalogue.
Scores keep the WeightedRanker's scale, (1 + cosine) / 2 per modality.
"""

from __future__ import annotations

from collections.abc import Mapping

MIN_CANDIDATES = 30  # per modality
OVERFETCH = 3  # candidates per modality per requested result
MAX_CANDIDATES = 1000  # per modality, whatever top_k asks


def normalised(cosine: float) -> float:
    return (1.0 + cosine) / 2.0


def fused_score(image_cosine: float, text_cosine: float, image_weight: float) -> float:
    return image_weight * normalised(image_cosine) + (1.0 - image_weight) * normalised(text_cosine)


def fuse(image: Mapping[str, float], text: Mapping[str, float], image_weight: float) -> dict[str, float]:
    """Fused scores of the products that have both cosines."""
    return {pid: fused_score(image[pid], text[pid], image_weight) for pid in image if pid in text}


def candidate_limit(top_k: int) -> int:
    return min(MAX_CANDIDATES, max(MIN_CANDIDATES, top_k * OVERFETCH))


RRF_K = 60  # Milvus' RRFRanker default


def rrf(*rankings: list[str], k: int = RRF_K) -> dict[str, float]:
    """Reciprocal rank fusion of ranked id lists, scaled to 0..1 (1: first in every list).

    For text queries with BM25: a cosine and a BM25 score have no common scale, ranks do.
    Scaled so the attribute boosts (lookalike/rank) keep one meaning across query kinds.
    """
    out: dict[str, float] = {}
    for ranking in rankings:
        for rank, pid in enumerate(ranking, start=1):
            out[pid] = out.get(pid, 0.0) + 1.0 / (k + rank)
    if not rankings:
        return {}
    scale = rrf_scale(len(rankings), k)
    return {pid: s * scale for pid, s in out.items()}


def rrf_scale(lists: int, k: int = RRF_K) -> float:
    """What turns a sum of 1 / (k + rank) over `lists` lists (ranks from 1, as Milvus'
    RRFRanker counts them) into 0..1: 1 for the first in every list."""
    return (k + 1) / lists
