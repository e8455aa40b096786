"""The API's declared contract: request and response bodies as Pydantic models.

Every request model forbids unknown fields (a misspelt filter is a 422, not silently ignored)
and uses strict types where JSON has them (`top_k: 3.7` or `true` is a 422). New optional
request fields slot in as plain attributes of these models; /openapi.json documents them all.
The limits live in lookalike/api/limits.py so the schema and the checks share one number.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from lookalike.api import limits
from lookalike.rank.pages import MAX_WINDOW
from lookalike.store.base import Filters


def _no_control_chars(value: str) -> str:
    if limits.CONTROL_CHARS.search(value):
        raise ValueError("control characters are not allowed")
    return value


def _no_text_control_chars(value: str) -> str:
    if limits.TEXT_CONTROL_CHARS.search(value):
        raise ValueError("control characters (other than tab and newline) are not allowed")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


FilterValue = Annotated[str, Field(min_length=1, max_length=limits.MAX_FILTER_VALUE_CHARS),
                        AfterValidator(_no_control_chars), AfterValidator(_not_blank)]
FilterValues = Annotated[list[FilterValue], Field(max_length=limits.MAX_FILTER_VALUES)]
FILTER_LIMITS = (f"at most {limits.MAX_FILTER_VALUES} values of at most "
                 f"{limits.MAX_FILTER_VALUE_CHARS} characters each")


def _json_filter_list(value: Any, info: ValidationInfo) -> Any:
    """A JSON filter: a list taken as given (a comma is part of a value, never a separator)
    or one string. The limits are checked here, before the type checks, so that the 422 names
    the limit broken rather than a branch of the list-or-string union."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        return value  # the type checks answer
    try:
        return list(filter_list(items, str(info.field_name), split=False))
    except FilterLimitError as exc:
        raise PydanticCustomError("filter_limit", exc.reason) from None


JsonFilterValues = Annotated[FilterValues, BeforeValidator(
    _json_filter_list, json_schema_input_type=FilterValues | FilterValue)]
SearchText = Annotated[str, Field(max_length=limits.MAX_TEXT_CHARS,
                                  description=f"at most {limits.MAX_TEXT_CHARS} characters; "
                                              "longer is a 422, never cut"),
                       AfterValidator(_no_text_control_chars)]
Price = Annotated[StrictFloat | StrictInt, Field(ge=0, le=limits.MAX_PRICE, allow_inf_nan=False)]
TopK = Annotated[StrictInt, Field(ge=1, le=limits.TOP_K_CAP,
                                  description="1..LOOKALIKE_MAX_TOP_K (100 by default)")]
OFFSET_DESCRIPTION = (f"the page starts at this result (0-based); offset + top_k <= {MAX_WINDOW}. "
                      "Pass the response's next_offset for the next page")
Offset = Annotated[StrictInt, Field(ge=0, le=MAX_WINDOW - 1, description=OFFSET_DESCRIPTION)]
Weight = Annotated[StrictFloat | StrictInt, Field(ge=0, le=1, allow_inf_nan=False,
                                                  description="how much the photo counts (0..1)")]


Infer = Literal["boost", "filter", "off"]
INFER_MODES: tuple[str, ...] = ("boost", "filter", "off")
Strategy = Literal["average_vector", "best_score"]
# Inferred attributes a client may remove (lookalike/rank/inferred.py DROPPABLE).
Droppable = Literal["category", "color", "size", "price", "cheap"]
ProductIdValue = Annotated[str, Field(min_length=1, max_length=128,
                                      description="1-128 letters, digits, . _ : -")]
ProductIds = Annotated[list[ProductIdValue], Field(max_length=limits.MAX_EXAMPLES)]
Diversity = Annotated[StrictFloat | StrictInt, Field(
    ge=0, le=1, allow_inf_nan=False, description="MMR: 0 = pure relevance, up to 1")]
COLLAPSE_DESCRIPTION = ("one result per variant group (the same article in other colours, sizes "
                        "or re-shoots), the others listed in `other_variants` (default); false "
                        "lists every product")
INFER_DESCRIPTION = ("what attributes inferred from the words and photo do: boost (default), "
                     "filter, or off")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Crop(BaseModel):
    """A crop rectangle in fractions of the photo: what gets embedded (and read for colour)."""

    model_config = ConfigDict(extra="forbid")
    x: Annotated[StrictFloat | StrictInt, Field(ge=0, lt=1, allow_inf_nan=False)]
    y: Annotated[StrictFloat | StrictInt, Field(ge=0, lt=1, allow_inf_nan=False)]
    w: Annotated[StrictFloat | StrictInt, Field(gt=0, le=1, allow_inf_nan=False)]
    h: Annotated[StrictFloat | StrictInt, Field(gt=0, le=1, allow_inf_nan=False)]

    @model_validator(mode="after")
    def _inside(self) -> Crop:
        if self.x + self.w > 1 + 1e-9 or self.y + self.h > 1 + 1e-9:
            raise ValueError("crop must lie inside the photo: x + w <= 1; y + h <= 1")
        return self

    def box(self) -> tuple[float, float, float, float]:
        return float(self.x), float(self.y), float(self.w), float(self.h)


def parse_crop(value: str | None) -> tuple[float, float, float, float] | None:
    """A form's or query's crop, "x,y,w,h" (fractions of the photo); ValueError if bad."""
    if value is None or value == "":
        return None
    parts = value.split(",")
    if len(parts) != 4:
        raise ValueError('crop must be "x,y,w,h" (fractions of the photo)')
    try:
        x, y, w, h = (float(v) for v in parts)
    except ValueError:
        raise ValueError("crop values must be numbers") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ValueError("crop values must be finite numbers")
    try:
        return Crop(x=x, y=y, w=w, h=h).box()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ValueError(f"crop must lie inside the photo: 0 <= x, y < 1; 0 < w, h <= 1; "
                         f"x + w <= 1; y + h <= 1 ({str(exc).splitlines()[0]})") from None


class PriceRange(_Strict):
    gte: Price | None = None
    lte: Price | None = None


class SearchFilters(_Strict):
    """Each list means "any of these"; the fields combine with AND. A list is taken as given
    (a value may hold commas); each list holds at most 64 values of at most 100 characters."""

    category: JsonFilterValues | None = Field(None, description=FILTER_LIMITS)
    color: JsonFilterValues | None = Field(None, description=FILTER_LIMITS)
    size: JsonFilterValues | None = Field(None, description=FILTER_LIMITS)
    price: PriceRange | None = None


ImageBase64 = Annotated[str, Field(max_length=limits.max_base64_chars(),
                                   description="the image bytes in base64 (or a data: URL)")]
ImageUrl = Annotated[str, Field(max_length=limits.MAX_URL_CHARS,
                                description="http(s) URL of a public image, port 80/443")]


class SearchRequest(_Strict):
    """POST /v1/search as JSON: at least one of text, image_base64 and image_url."""

    text: SearchText | None = None
    image_base64: ImageBase64 | None = None
    image_url: ImageUrl | None = None
    top_k: TopK = 10
    image_weight: Weight = 0.5
    filters: SearchFilters | None = None
    infer: Infer = Field("boost", description=INFER_DESCRIPTION)
    crop: Crop | None = None
    not_like: ProductIds | ProductIdValue | None = Field(
        None, description="products the shopper said 'not like this' to (a list, or "
                          "comma-separated)")
    diversity: Diversity = 0.0
    drop_inferred: list[Droppable] | None = Field(
        None, max_length=5, description="inferred attributes to ignore (removed chips)")
    collapse_variants: StrictBool = Field(True, description=COLLAPSE_DESCRIPTION)
    offset: Offset = 0


class RecommendRequest(_Strict):
    """POST /v1/recommend: more like these (`positive`, and/or a photo), not like those."""

    positive: ProductIds | ProductIdValue | None = None
    negative: ProductIds | ProductIdValue | None = None
    image_base64: ImageBase64 | None = None
    image_url: ImageUrl | None = None
    strategy: Strategy = "average_vector"
    top_k: TopK = 10
    filters: SearchFilters | None = None
    offset: Offset = 0
    collapse_variants: StrictBool = Field(True, description=COLLAPSE_DESCRIPTION)


FormFilterValues = Annotated[list[str], Field(
    description=f"any of these: repeat the field, or separate values by commas; {FILTER_LIMITS}, "
                "counted after splitting")]


class SearchForm(_Strict):
    """POST /v1/search as multipart/form-data (what the web page sends). Repeat a filter field,
    or separate values by commas, for "any of these"."""

    image: bytes | None = Field(None, json_schema_extra={"format": "binary"},
                                description="the photo; at most LOOKALIKE_MAX_UPLOAD_BYTES")
    text: SearchText | None = None
    top_k: Annotated[int, Field(ge=1, le=limits.TOP_K_CAP)] = 10
    image_weight: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.5
    # Split on commas, then limited (to_filters): a raw field's length is no value's length.
    category: FormFilterValues = []
    color: FormFilterValues = []
    size: FormFilterValues = []
    min_price: Annotated[float, Field(ge=0, le=limits.MAX_PRICE, allow_inf_nan=False)] | None = None
    max_price: Annotated[float, Field(ge=0, le=limits.MAX_PRICE, allow_inf_nan=False)] | None = None
    infer: Infer = Field("boost", description=INFER_DESCRIPTION)
    crop: str | None = Field(None, max_length=200, description='"x,y,w,h", fractions of the photo')
    not_like: Annotated[list[Annotated[str, Field(max_length=limits.MAX_EXAMPLES * 130)]],
                        Field(max_length=limits.MAX_EXAMPLES)] = []
    diversity: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    drop_inferred: Annotated[list[str], Field(
        description="inferred attributes to ignore (category, color, size, price, cheap): repeat "
                    "the field, or separate them by commas")] = []
    collapse_variants: bool = Field(True, description=COLLAPSE_DESCRIPTION)
    offset: Annotated[int, Field(ge=0, le=MAX_WINDOW - 1, description=OFFSET_DESCRIPTION)] = 0


class ProductMetadata(BaseModel):
    """PUT /v1/products/{id}: the `metadata` form field, a JSON object. Fields beyond these are
    kept as free attributes (scalars or small JSON, nested at most MAX_JSON_DEPTH deep)."""

    model_config = ConfigDict(extra="allow")
    product_id: str | None = Field(None, description="if given, must equal the URL's id")
    title: str | None = Field(None, max_length=4000)
    description: str | None = Field(None, max_length=4000)
    category: str | None = Field(None, max_length=100)
    color: str | None = Field(None, max_length=100)
    size: str | None = Field(None, max_length=100)
    price: float | None = Field(None, ge=0)


class ProductUpload(BaseModel):
    """PUT /v1/products/{id} as multipart/form-data."""

    metadata: str = Field(description="ProductMetadata as a JSON object",
                          max_length=limits.MAX_METADATA_BYTES)
    image: list[bytes] = Field(json_schema_extra={"items": {"type": "string", "format": "binary"}},
                               description="one to LOOKALIKE_MAX_IMAGES_PER_PRODUCT photos")


# -- responses -------------------------------------------------------------------------------------

class Variant(BaseModel):
    """Another product of a hit's variant group (lookalike/variants.py)."""

    product_id: str
    title: str
    color: str
    size: str
    price: float | None
    image_url: str


class SearchHit(BaseModel):
    product_id: str
    score: float = Field(description="see the API description: its scale depends on the query kind")
    title: str
    category: str
    color: str
    size: str
    price: float | None
    image_url: str = Field(description="the best-matching photo of the product")
    attributes: dict[str, Any]
    explain: dict[str, Any] | None = Field(
        None, description="why it ranked here: vector score per modality, BM25 score, boosts")
    variants: int = Field(0, description="how many other products are variants of this one")
    other_variants: list[Variant] = Field([], description="those variants, by product id")


class RelaxedAttribute(BaseModel):
    attribute: str
    kept: int = Field(description="candidate products that keep it")


class SearchResponse(BaseModel):
    results: list[SearchHit]
    inferred: dict[str, Any] | None = Field(
        None, description="what the words and photo were understood to ask for, with `mode`")
    relaxed: list[str] = Field([], description="inferred attributes the results do not all keep: "
                                               "an understood limit (a price or size in the words) "
                                               "that fewer than top_k products keep, or in "
                                               "infer=filter mode an inferred attribute dropped "
                                               "because too few products had it")
    relaxed_detail: list[RelaxedAttribute] = Field(
        [], description="per relaxed attribute, how many candidate products keep it "
                        "(0: none does; the results are the closest)")
    full_matches: int | None = Field(
        None, description="candidate products with every inferred attribute at once (category, "
                          "colour, size and price together): fewer than the results means the "
                          "others lack one (\"no black bags under €50, the closest\"); exact "
                          "when below offset + top_k, otherwise a lower bound of at least that; "
                          "null when nothing was inferred")
    offset: int = Field(0, description="where this page starts in the ranked results")
    next_offset: int | None = Field(
        None, description="the offset of the next page; null when there are no more results")
    took_ms: float


class ProductOut(BaseModel):
    product_id: str
    title: str
    description: str
    category: str
    color: str
    size: str
    price: float | None
    attributes: dict[str, Any]
    image_urls: list[str]


class PriceSpan(BaseModel):
    min: float | None = None
    max: float | None = None


class Facets(BaseModel):
    category: dict[str, int]
    color: dict[str, int]
    size: dict[str, int]
    price: PriceSpan


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str = Field(description="ready | unavailable")
    products: int | None = None
    reason: str | None = Field(None, description="a reason code when unavailable: "
                                                 "store_unavailable, embedders_unavailable")


class ModelInfo(BaseModel):
    image: str
    text: str
    version: str = Field(description="image|text model versions with weight fingerprints")


class Info(BaseModel):
    """What the catalogue holds: the search page's header line and `lookalike status`."""

    products: int
    collection: str
    model: ModelInfo
    last_ingest: dict[str, Any] | None = Field(
        None, description="the last ingest job's summary and finish time, if one ran")
    warnings: list[str] = Field(
        default_factory=list, description="what an operator must know about this deployment, "
        "e.g. an embedded milvus-lite of a version lookalike is not tested with")


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable")
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


# -- conversions ---------------------------------------------------------------------------------

class FilterLimitError(ValueError):
    """A filter list over a limit, or holding an empty or unprintable value: a 422 naming it."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name, self.reason = name, reason


def filter_list(values: list[str], name: str, *, split: bool) -> tuple[str, ...]:
    """One filter's values, stripped (as the manifest stores them) and without repeats.

    `split`: a query string's or form's values are comma lists (`?color=red,blue` and
    `?color=red&color=blue` both mean "red or blue"), split before the limits apply; a JSON
    list is taken as given, so a JSON value may hold commas. At most MAX_FILTER_VALUES values
    (counted after splitting, across repeated fields) of at most MAX_FILTER_VALUE_CHARS each; an
    empty part ("red,,blue", a trailing comma) is refused like any empty value, never dropped.
    """
    parts = [p for v in values for p in (v.split(",") if split else (v,))]
    if len(parts) > limits.MAX_FILTER_VALUES:
        raise FilterLimitError(name, f"at most {limits.MAX_FILTER_VALUES} values "
                                     f"(got {len(parts)})")
    out: list[str] = []
    for n, part in enumerate(parts):
        value = part.strip()
        if not value:
            raise FilterLimitError(name, "an empty or whitespace-only value")
        if limits.CONTROL_CHARS.search(part):  # before stripping: "red\n" is refused too
            raise FilterLimitError(name, "control characters are not allowed")
        if len(value) > limits.MAX_FILTER_VALUE_CHARS:
            raise FilterLimitError(name, f"a value longer than {limits.MAX_FILTER_VALUE_CHARS} "
                                         f"characters (value {n + 1}: {len(value)})")
        out.append(value)
    return tuple(dict.fromkeys(out))


def split_ids(values: list[str] | str | None, name: str) -> tuple[str, ...]:
    """Product ids from a list and/or comma-separated strings; ValueError if one is malformed."""
    from lookalike.catalog.manifest import PRODUCT_ID

    out: list[str] = []
    for v in as_list(values):
        for part in v.split(","):
            part = part.strip()
            if not part or len(part) > 128 or not PRODUCT_ID.fullmatch(part):
                raise ValueError(f"{name}: {part[:40]!r} is not a product id")
            out.append(part)
    if len(out) > limits.MAX_EXAMPLES:
        raise ValueError(f"{name}: at most {limits.MAX_EXAMPLES} ids")
    return tuple(dict.fromkeys(out))


def split_dropped(values: list[str] | None) -> tuple[str, ...]:
    names = filter_list(list(values or []), "drop_inferred", split=True)
    bad = [n for n in names if n not in DROPPABLE]
    if bad:
        raise ValueError(f"drop_inferred: {bad[0][:40]!r} is not one of {', '.join(DROPPABLE)}")
    return names


DROPPABLE: tuple[str, ...] = ("category", "color", "size", "price", "cheap")


def as_list(value: list[str] | str | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def to_filters(*, categories: list[str], colors: list[str], sizes: list[str],
               min_price: float | None, max_price: float | None, split: bool = True) -> Filters:
    """`split`: comma lists (a query string or form); False for JSON lists, taken as given."""
    if min_price is not None and max_price is not None and min_price > max_price:
        raise ValueError("min_price must not exceed max_price")
    return Filters(categories=filter_list(categories, "category", split=split),
                   colors=filter_list(colors, "color", split=split),
                   sizes=filter_list(sizes, "size", split=split),
                   min_price=None if min_price is None else float(min_price),
                   max_price=None if max_price is None else float(max_price))
