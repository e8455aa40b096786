"""QueryParser: the attributes a shopper's words ask for, in the catalogue's vocabulary.

"navy trainers under 80 in size 42" -> colour blue, category sneaker, price <= 80, size 42,
and the text left for the embedder ("navy trainers", plus the canonical words "blue sneaker"
so the sentence embedding sees the catalogue's terms too). Pure and Ray-free; the vocabulary
comes from the store's facets (vocabulary.py) and the curated data files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from lookalike.query.vocabulary import MAX_PHRASE, Vocabulary, curated, normalise

NUMBER = r"(\d+(?:[.,]\d{1,2})?)"


@dataclass(frozen=True)
class ParsedQuery:
    categories: tuple[str, ...] = ()
    colors: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ()
    min_price: float | None = None
    max_price: float | None = None
    cheap: bool = False
    text: str = ""  # what the embedder sees
    matched: tuple[tuple[str, str, str], ...] = field(default=())  # (attribute, words, value)


def _alternation(words: list[str]) -> str:
    return "|".join(re.escape(normalise(w)) for w in sorted(words, key=len, reverse=True))


@lru_cache(maxsize=1)
def _price_patterns() -> tuple[re.Pattern[str], ...]:
    p = curated("prices")
    cur = rf"(?:\s*(?:{_alternation(p['currencies'])}))?"
    num = rf"(?:(?:{_alternation(p['currencies'])})\s*)?{NUMBER}{cur}"
    joiner = _alternation(p["range_joiners"])
    return (
        re.compile(rf"(?:\b(?:{_alternation(p['range_openers'])})\s+)?(?<![\w.]){num}\s+(?:{joiner})\s+{num}"),
        re.compile(rf"(?<!\w)(?:{_alternation(p['below'])})\s+{num}"),
        re.compile(rf"(?<!\w)(?:{_alternation(p['above'])})\s+{num}"),
        re.compile(rf"\b(?:{_alternation(p['cheap'])})\b"),
    )


def _num(s: str) -> float:
    return float(s.replace(",", "."))


class QueryParser:
    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocab = vocabulary

    def parse(self, text: str) -> ParsedQuery:
        norm = normalise(text)
        matched: list[tuple[str, str, str]] = []
        # Sizes first: "size 40 to 42" names sizes, not a price range.
        norm, sizes = self._sizes(norm, matched)
        norm, prices = self._prices(norm, matched)
        tokens = norm.split()
        cats: list[str] = []
        cols: list[str] = []
        i = 0
        while i < len(tokens):
            for n in range(min(MAX_PHRASE, len(tokens) - i), 0, -1):
                phrase = " ".join(tokens[i:i + n])
                if phrase in self.vocab.categories:
                    cats.append(self.vocab.categories[phrase])
                    matched.append(("category", phrase, cats[-1]))
                elif phrase in self.vocab.colors:
                    cols.append(self.vocab.colors[phrase])
                    matched.append(("color", phrase, cols[-1]))
                else:
                    continue
                i += n
                break
            else:
                i += 1
        canonical = [v for v in dict.fromkeys([*cols, *cats]) if v not in tokens]
        embed_text = " ".join([*tokens, *canonical]).strip()
        return ParsedQuery(categories=tuple(dict.fromkeys(cats)), colors=tuple(dict.fromkeys(cols)),
                           sizes=tuple(dict.fromkeys(sizes)), min_price=prices[0],
                           max_price=prices[1], cheap=prices[2], text=embed_text or text.strip(),
                           matched=tuple(matched))

    def _prices(self, norm: str, matched: list[tuple[str, str, str]]
                ) -> tuple[str, tuple[float | None, float | None, bool]]:
        between, below, above, cheap = _price_patterns()
        lo = hi = None
        m = between.search(norm)
        if m:
            a, b = sorted((_num(m.group(1)), _num(m.group(2))))
            lo, hi = a, b
            matched.append(("price", m.group(0), f"{a:g}-{b:g}"))
            norm = norm.replace(m.group(0), " ")
        for pattern, which in ((below, "max"), (above, "min")):
            m = pattern.search(norm)
            if m:
                value = _num(m.group(1))
                if which == "max":
                    hi = value if hi is None else min(hi, value)
                else:
                    lo = value if lo is None else max(lo, value)
                matched.append(("price", m.group(0), f"{'<=' if which == 'max' else '>='}{value:g}"))
                norm = norm.replace(m.group(0), " ")
        is_cheap = False
        m = cheap.search(norm)
        if m:
            is_cheap = True
            matched.append(("price", m.group(0), "cheap"))
            norm = norm.replace(m.group(0), " ")
        if lo is not None and hi is not None and lo > hi:
            lo, hi = hi, lo
        return " ".join(norm.split()), (lo, hi, is_cheap)

    def _sizes(self, norm: str, matched: list[tuple[str, str, str]]) -> tuple[str, list[str]]:
        words = self.vocab.sizes
        if not words:
            return norm, []
        alt = _alternation(list(words))
        found: list[str] = []

        def take(m: re.Match[str]) -> str:
            phrase = m.group("w")
            found.append(words[phrase])
            matched.append(("size", m.group(0).strip(), words[phrase]))
            return " "

        norm = re.sub(rf"\b(?:size|sized|sz|in|eu|uk|us)\s+(?:size\s+)?(?P<w>{alt})\b", take, norm)
        bare = [w for w in self.vocab.bare_sizes if w in words]
        if bare:
            norm = re.sub(rf"\b(?P<w>{_alternation(bare)})\b", take, norm)
        return " ".join(norm.split()), found
