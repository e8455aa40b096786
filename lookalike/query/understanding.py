"""QueryUnderstanding: the parser and photo readers over the catalogue's current vocabulary.

The vocabulary follows the store's facets (cached by the SearchService); it is rebuilt only
when the set of facet values changes, so a query pays for parsing, not for the vocabulary.
Words win over the photo: "red" typed next to a photo of a blue dress means red.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from lookalike.query.parser import ParsedQuery, QueryParser
from lookalike.query.photo import VOTE_NEIGHBOURS, photo_color, vote_category
from lookalike.query.vocabulary import Vocabulary
from lookalike.rank.inferred import Inferred
from lookalike.store.base import Hit


def _signature(facets: Mapping[str, Any]) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(sorted(facets.get(k) or {})) for k in ("category", "color", "size"))


class QueryUnderstanding:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[tuple[str, ...], ...] | None = None
        self._parser = QueryParser(Vocabulary())

    def parser(self, facets: Mapping[str, Any]) -> QueryParser:
        key = _signature(facets)
        with self._lock:
            if key != self._key:
                self._parser, self._key = QueryParser(Vocabulary.from_facets(facets)), key
            return self._parser

    def parse(self, text: str, facets: Mapping[str, Any]) -> ParsedQuery:
        return self.parser(facets).parse(text)

    def photo_color(self, image: Image.Image, facets: Mapping[str, Any]) -> str | None:
        return photo_color(image, self.parser(facets).vocab.shades)


def combine(parsed: ParsedQuery | None, *, photo_color: str | None = None,
            neighbours: Sequence[Hit] | None = None) -> Inferred:
    """The query's inferences: its words first, then what its photo adds."""
    why: dict[str, str] = {}
    cats: tuple[str, ...] = ()
    cols: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ()
    lo = hi = None
    cheap = False
    if parsed is not None:
        words = {a: [w for kind, w, _ in parsed.matched if kind == a] for a in
                 ("category", "color", "size", "price")}
        for attr, present in (("category", parsed.categories), ("color", parsed.colors),
                              ("size", parsed.sizes),
                              ("price", parsed.min_price is not None or parsed.max_price is not None)):
            if present:
                why[attr] = "the words " + ", ".join(f"'{w}'" for w in words[attr] if w not in ("cheap",))
        cats, cols, sizes = parsed.categories, parsed.colors, parsed.sizes
        lo, hi, cheap = parsed.min_price, parsed.max_price, parsed.cheap
        if cheap:
            why["cheap"] = "the words ask for a low price"
    from_photo: set[str] = set()
    if not cols and photo_color:
        cols, why["color"] = (photo_color,), "the photo's dominant colour"
        from_photo.add("color")
    if not cats and neighbours:
        voted = vote_category([(h.product.category, h.scores.get("image", h.score))
                               for h in neighbours])
        if voted:
            cats = (voted,)
            from_photo.add("category")
            why["category"] = f"most of the photo's {VOTE_NEIGHBOURS} nearest products are {voted}"
    return Inferred(categories=cats, colors=cols, sizes=sizes, min_price=lo, max_price=hi,
                    cheap=cheap, why=why, from_photo=frozenset(from_photo))
