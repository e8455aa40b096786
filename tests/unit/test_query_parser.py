"""The query parser on many phrasings, against the demo catalogue's vocabulary."""

from __future__ import annotations

import pytest

from lookalike.catalog.demo import CATEGORIES, COLORS, SIZES
from lookalike.catalog.product import Product
from lookalike.query.parser import ParsedQuery, QueryParser
from lookalike.query.photo import VOTE_NEIGHBOURS
from lookalike.query.understanding import QueryUnderstanding, combine
from lookalike.query.vocabulary import Vocabulary, normalise, plurals
from lookalike.rank.inferred import Inferred
from lookalike.store.base import Hit

VOCAB = Vocabulary.from_values(categories=CATEGORIES, colors=list(COLORS),
                               sizes=[s for group in SIZES.values() for s in group])
PARSER = QueryParser(VOCAB)

# text -> (categories, colors, sizes, min_price, max_price, cheap)
CASES = [
    ("navy trainers", ("sneaker",), ("blue",), (), None, None, False),
    ("grey jumper", ("pullover",), ("grey",), (), None, None, False),
    ("gray sweater", ("pullover",), ("grey",), (), None, None, False),
    ("crimson gown", ("dress",), ("red",), (), None, None, False),
    ("charcoal hoodie", ("pullover",), ("grey",), (), None, None, False),
    ("ebony handbag", ("bag",), ("black",), (), None, None, False),
    ("Jet-Black Sneakers", ("sneaker",), ("black",), (), None, None, False),
    ("a tee", ("t-shirt",), (), (), None, None, False),
    ("T-Shirts", ("t-shirt",), (), (), None, None, False),
    ("tshirt", ("t-shirt",), (), (), None, None, False),
    ("slacks", ("trousers",), (), (), None, None, False),
    ("jeans", ("trousers",), (), (), None, None, False),
    ("ankle boots", ("ankle boot",), (), (), None, None, False),
    ("chelsea boots", ("ankle boot",), (), (), None, None, False),
    ("flip-flops", ("sandal",), (), (), None, None, False),
    ("button-down shirt", ("shirt",), (), (), None, None, False),
    ("blouses", ("shirt",), (), (), None, None, False),
    ("dresses", ("dress",), (), (), None, None, False),
    ("hot pink dress", ("dress",), ("pink",), (), None, None, False),
    ("olive green parka", ("coat",), ("green",), (), None, None, False),
    ("black bag under 50", ("bag",), ("black",), (), None, 50.0, False),
    ("red dress below 40 euros", ("dress",), ("red",), (), None, 40.0, False),
    ("trainers under €80", ("sneaker",), (), (), None, 80.0, False),
    ("sandals under 30 dollars", ("sandal",), (), (), None, 30.0, False),
    ("coat between 100 and 200", ("coat",), (), (), 100.0, 200.0, False),
    ("jumper from 20 to 60", ("pullover",), (), (), 20.0, 60.0, False),
    ("$30-$50 tee", ("t-shirt",), (), (), 30.0, 50.0, False),
    ("coat 100-200", ("coat",), (), (), 100.0, 200.0, False),
    ("between 60 and 20", (), (), (), 20.0, 60.0, False),
    ("handbag over 150", ("bag",), (), (), 150.0, None, False),
    ("boots more than 120 euros", ("ankle boot",), (), (), 120.0, None, False),
    ("at least 25.50 shirt", ("shirt",), (), (), 25.5, None, False),
    ("cheap tees", ("t-shirt",), (), (), None, None, True),
    ("budget sneakers", ("sneaker",), (), (), None, None, True),
    ("pink dress size M", ("dress",), ("pink",), ("M",), None, None, False),
    ("black coat in XL", ("coat",), ("black",), ("XL",), None, None, False),
    ("trainers size 42", ("sneaker",), (), ("42",), None, None, False),
    ("navy jumper size s", ("pullover",), ("blue",), ("S",), None, None, False),
    ("blue tee in extra small", ("t-shirt",), ("blue",), ("XS",), None, None, False),
    ("green blouse size medium", ("shirt",), ("green",), ("M",), None, None, False),
    ("yellow dress, large", ("dress",), ("yellow",), ("L",), None, None, False),
    ("size 42 trainers under 120", ("sneaker",), (), ("42",), None, 120.0, False),
    ("black trainers size 43 under 120", ("sneaker",), ("black",), ("43",), None, 120.0, False),
    ("dress under 40 euros size s", ("dress",), (), ("S",), None, 40.0, False),
    ("size 40 to 42 boots", ("ankle boot",), (), ("40",), None, None, False),
    # Words the catalogue has no value for infer nothing.
    ("white sneakers in 44", ("sneaker",), (), ("44",), None, None, False),
    ("size 99 shirt", ("shirt",), (), (), None, None, False),
    ("in red", (), ("red",), (), None, None, False),
    ("something nice", (), (), (), None, None, False),
    ("premium classic", (), (), (), None, None, False),
]


@pytest.mark.parametrize(("text", "cats", "cols", "sizes", "lo", "hi", "cheap"), CASES)
def test_parse(text: str, cats: tuple[str, ...], cols: tuple[str, ...], sizes: tuple[str, ...],
               lo: float | None, hi: float | None, cheap: bool) -> None:
    got = PARSER.parse(text)
    assert (got.categories, got.colors, got.sizes, got.min_price, got.max_price, got.cheap) == \
        (cats, cols, sizes, lo, hi, cheap)


def test_embedder_text_drops_price_and_size_words_and_adds_the_catalogue_terms() -> None:
    got = PARSER.parse("navy trainers size 42 under 80")
    assert got.text == "navy trainers blue sneaker"
    assert ("color", "navy", "blue") in got.matched and ("size", "size 42", "42") in got.matched


def test_a_catalogue_value_wins_over_the_curated_synonyms() -> None:
    # A catalogue that sells "navy" as its own colour: "navy" is that, not blue.
    vocab = Vocabulary.from_values(categories=["sneaker"], colors=["navy", "blue"], sizes=[])
    assert QueryParser(vocab).parse("navy trainers").colors == ("navy",)
    assert QueryParser(vocab).parse("cobalt trainers").colors == ("blue",)


def test_only_the_catalogue_values_are_inferred() -> None:
    vocab = Vocabulary.from_values(categories=["dress"], colors=["red"], sizes=["M"])
    got = QueryParser(vocab).parse("navy trainers size L")
    assert (got.categories, got.colors, got.sizes) == ((), (), ())


# Exactly these forms: a wrong extra form is a phrase that matches what the shopper never typed.
@pytest.mark.parametrize(("word", "forms"), [("boot", {"boot", "boots"}),
                                             ("ankle boot", {"ankle boot", "ankle boots"}),
                                             ("dress", {"dress", "dresss", "dresses"}),
                                             ("box", {"box", "boxs", "boxes"}),
                                             ("watch", {"watch", "watchs", "watches"}),
                                             ("brush", {"brush", "brushs", "brushes"}),
                                             ("hoody", {"hoody", "hoodys", "hoodies"}),
                                             ("tray", {"tray", "trays"}),
                                             ("jersey", {"jersey", "jerseys"}),
                                             ("y", {"y", "ys"})])
def test_plurals(word: str, forms: set[str]) -> None:
    assert plurals(word) == forms


def test_normalise() -> None:
    assert normalise("Jet-Black T-Shirt, €20-€30!") == "jet black t shirt € 20 to € 30"
    # A curly apostrophe is a straight one, a possessive goes, underscores and slashes split.
    assert normalise("Women’s navy_blue dress/skirt") == "women navy blue dress skirt"


def test_the_vocabulary_of_a_catalogue_is_read_from_its_facets() -> None:
    facets = {"category": {"dress": 3, "ankle boot": 1}, "color": {"red": 2}, "size": {"M": 4},
              "price": {"min": 1.0, "max": 9.0}}
    assert Vocabulary.from_facets(facets) == Vocabulary.from_values(
        categories=["dress", "ankle boot"], colors=["red"], sizes=["M"])
    vocab = Vocabulary.from_facets(facets)
    assert vocab.categories["ankle boots"] == "ankle boot"  # categories inflect
    assert vocab.sizes["m"] == "M" and len(vocab.shades["red"]) == 3  # an RGB to compare photos
    assert Vocabulary.from_facets({}) == Vocabulary.from_values(categories=[], colors=[],
                                                                sizes=[])


@pytest.mark.parametrize(("text", "phrase"), [("red dress under 20 euros", "under 20 euros"),
                                              ("bag from 10 to 30 dollars", "from 10 to 30 dollars"),
                                              ("coat over 100 pounds", "over 100 pounds")])
def test_a_price_phrase_is_taken_whole_with_its_longest_currency_word(text: str,
                                                                       phrase: str) -> None:
    # "eur" is a prefix of "euros": a shorter alternative first would leave "os" to the embedder
    got = PARSER.parse(text)
    assert [m[1] for m in got.matched if m[0] == "price"] == [phrase]
    assert not set(got.text.split()) & {"os", "s", "lars"}


def test_combine_takes_the_words_first_and_what_the_photo_adds() -> None:
    """query.understanding.combine: what the words say wins; a photo adds its dominant colour
    and its neighbours' category only where the words are silent, marked as guesses."""
    words = ParsedQuery(categories=("dress",), sizes=("M",), max_price=50.0, cheap=True,
                        matched=(("category", "frock", "dress"), ("size", "medium", "M"),
                                 ("price", "under 50", "50"), ("price", "cheap", "cheap")))
    neighbours = [Hit(Product(f"n{i}", category="coat"), 0.5, scores={"image": 0.8})
                  for i in range(VOTE_NEIGHBOURS)]
    got = combine(words, photo_color="red", neighbours=neighbours)
    assert got == Inferred(
        categories=("dress",), colors=("red",), sizes=("M",), max_price=50.0, cheap=True,
        from_photo=frozenset({"color"}),
        why={"category": "the words 'frock'", "size": "the words 'medium'",
             "price": "the words 'under 50'", "cheap": "the words ask for a low price",
             "color": "the photo's dominant colour"})
    # A colour in the words outranks the photo's; a price floor alone is a price too.
    said = combine(ParsedQuery(colors=("blue",), min_price=20.0,
                               matched=(("color", "navy", "blue"), ("price", "over 20", "20"))),
                   photo_color="red", neighbours=neighbours)
    assert said == Inferred(
        categories=("coat",), colors=("blue",), min_price=20.0, from_photo=frozenset({"category"}),
        why={"color": "the words 'navy'", "price": "the words 'over 20'",
             "category": f"most of the photo's {VOTE_NEIGHBOURS} nearest products are coat"})
    assert combine(None) == Inferred()
    assert combine(None, neighbours=[]).categories == ()


def test_the_parser_follows_the_catalogues_values() -> None:
    """QueryUnderstanding keeps one parser per set of facet values: new values, a new parser;
    the same values (other counts), the same parser."""
    understanding = QueryUnderstanding()
    first = {"category": {"dress": 2}, "color": {"red": 1}, "size": {"M": 1}}
    assert understanding.parse("red dress", first).categories == ("dress",)
    parser = understanding.parser(first)
    assert understanding.parser({**first, "category": {"dress": 9}}) is parser
    for changed in ({**first, "category": {"dress": 2, "gown": 1}},
                    {**first, "color": {"red": 1, "teal": 1}}, {**first, "size": {"XS": 1}}):
        assert understanding.parser(changed) is not parser, changed
        assert understanding.parser(first) is not parser  # and back: a parser of its own again
        parser = understanding.parser(first)
    assert understanding.parse("teal gown", {**first, "category": {"gown": 1},
                                             "color": {"teal": 1}}).colors == ("teal",)
