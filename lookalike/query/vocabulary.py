"""The catalogue's own vocabulary, with the curated synonyms in data/*.json mapped onto it.

A word maps to a value only when the catalogue lists that value (read from the store's facets),
so the parser never infers a filter that matches nothing; a word equal to a catalogue value
always maps to that value, even when the curated files would send it elsewhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
MAX_PHRASE = 3  # tokens in the longest phrase the parser looks up


def normalise(text: str) -> str:
    """Lower case, hyphens and slashes as spaces, currency signs kept as their own tokens."""
    text = text.lower().replace("’", "'")
    # "20-60", "$30-$50": a range, before hyphens become spaces.
    text = re.sub(r"(\d)\s*[-–]\s*([€$£]?\s*\d)", r"\1 to \2", text)
    text = re.sub(r"([€$£<>])", r" \1 ", text)
    text = re.sub(r"[-_/]", " ", text)
    text = re.sub(r"[^\w\s€$£<>=.']", " ", text)
    return " ".join(text.replace("'s ", " ").split())


def plurals(word: str) -> set[str]:
    """English plural forms of a term, inflecting its last word ("ankle boot" -> "ankle
    boots"); the curated files list the irregular ones."""
    head, _, last = word.rpartition(" ")
    prefix = head + " " if head else ""
    forms = {last, last + "s"}
    if last.endswith(("s", "x", "ch", "sh")):
        forms.add(last + "es")
    if last.endswith("y") and last[-2:-1] not in "aeiou":
        forms.add(last[:-1] + "ies")
    return {prefix + f for f in forms}


@cache
def curated(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    data.pop("_about", None)
    return data


@dataclass(frozen=True)
class Vocabulary:
    """Phrase -> catalogue value, per attribute; plus reference shades for photo colours."""

    categories: dict[str, str] = field(default_factory=dict)
    colors: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, str] = field(default_factory=dict)
    bare_sizes: frozenset[str] = frozenset()
    shades: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    @classmethod
    def from_facets(cls, facets: Mapping[str, Any]) -> Vocabulary:
        return cls.from_values(categories=facets.get("category") or {},
                               colors=facets.get("color") or {}, sizes=facets.get("size") or {})

    @classmethod
    def from_values(cls, *, categories: Iterable[str], colors: Iterable[str],
                    sizes: Iterable[str]) -> Vocabulary:
        colour_data = curated("colors")
        cats = _phrases(list(categories), curated("categories"), inflect=True)
        cols = _phrases(list(colors), {k: v["words"] for k, v in colour_data.items()}, inflect=False)
        size_values = [str(s) for s in sizes]
        size_words = _phrases(size_values, curated("sizes")["words"], inflect=False)
        bare = frozenset(w for w in curated("sizes")["bare"] if w in size_words)
        shades = {}
        for value in colors:
            key = normalise(value)
            if key in colour_data:
                shades[value] = tuple(colour_data[key]["rgb"])
            elif cols.get(key) and normalise(cols[key]) in colour_data:
                shades[value] = tuple(colour_data[normalise(cols[key])]["rgb"])
        return cls(cats, cols, size_words, bare, shades)


def _phrases(values: list[str], synonyms: Mapping[str, list[str]], *,
             inflect: bool) -> dict[str, str]:
    """{normalised phrase: catalogue value}; the catalogue's own values win over synonyms."""
    out: dict[str, str] = {}
    by_key = {normalise(v): v for v in values}
    for canonical, words in synonyms.items():
        value = by_key.get(normalise(canonical))
        if value is None:
            continue
        for word in [canonical, *words]:
            for form in (plurals(normalise(word)) if inflect else {normalise(word)}):
                out.setdefault(form, value)
    for key, value in by_key.items():
        for form in (plurals(key) if inflect else {key}):
            out[form] = value
    return out
