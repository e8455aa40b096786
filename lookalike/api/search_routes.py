"""GET/POST /v1/search and GET /v1/facets: parse into a SearchQuery, run it, shape the result."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from lookalike.api import limits, query_images
from lookalike.api.context import ApiContext, context
from lookalike.api.errors import ApiError, responses
from lookalike.api.models import (
    COLLAPSE_DESCRIPTION,
    FILTER_LIMITS,
    INFER_DESCRIPTION,
    OFFSET_DESCRIPTION,
    Facets,
    Infer,
    RecommendRequest,
    SearchFilters,
    SearchForm,
    SearchRequest,
    SearchResponse,
    as_list,
    parse_crop,
    split_dropped,
    split_ids,
    to_filters,
)
from lookalike.images import Box
from lookalike.rank.pages import MAX_WINDOW
from lookalike.search import SearchOutcome, SearchQuery
from lookalike.store.base import Filters

router = APIRouter(tags=["search"])
Ctx = Annotated[ApiContext, Depends(context)]
FILTER_PARAMS = {"category", "color", "size", "min_price", "max_price"}

# Query-string filters, shared with /v1/products/{id}/similar.
# No per-field limits here: the values are counted and measured after commas split them
# (models.filter_list), so a 422 names the limit a list broke.
FILTER_QUERY = (f"any of these: repeat the parameter, or separate values by commas; "
                f"{FILTER_LIMITS}, counted after splitting")
Category = Annotated[list[str], Query(description=FILTER_QUERY)]
Color = Annotated[list[str], Query(description=FILTER_QUERY)]
Size = Annotated[list[str], Query(description=FILTER_QUERY)]
MinPrice = Annotated[float | None, Query(ge=0, le=limits.MAX_PRICE, allow_inf_nan=False)]
MaxPrice = Annotated[float | None, Query(ge=0, le=limits.MAX_PRICE, allow_inf_nan=False)]
TopK = Annotated[int, Query(ge=1, le=limits.TOP_K_CAP,
                            description="1..LOOKALIKE_MAX_TOP_K (100 by default)")]
InferMode = Annotated[Infer, Query(description=INFER_DESCRIPTION)]
NotLike = Annotated[list[str], Query(max_length=limits.MAX_EXAMPLES,
                                     description="product ids: not like these (repeat, or "
                                                 "separate by commas)")]
DiversityParam = Annotated[float, Query(ge=0, le=1, allow_inf_nan=False,
                                        description="MMR: 0 = pure relevance, up to 1")]
DropInferred = Annotated[list[str], Query(description="inferred attributes to ignore: category, "
                                                      "color, size, price, cheap")]
CollapseVariants = Annotated[bool, Query(description=COLLAPSE_DESCRIPTION)]
Offset = Annotated[int, Query(ge=0, le=MAX_WINDOW - 1, description=OFFSET_DESCRIPTION)]
UNDERSTANDING_PARAMS = {"infer", "not_like", "diversity", "drop_inferred", "collapse_variants"}


def invalid(message: str, code: str = "invalid_parameter") -> ApiError:
    return ApiError(422, code, message)


def check_params(request: Request, allowed: set[str]) -> None:
    """A misspelt parameter (`colour=red`) is a 422, never a filter silently not applied."""
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise invalid(f"unknown parameter(s): {', '.join(unknown)[:200]}")


def check_top_k(ctx: ApiContext, top_k: int) -> int:
    if top_k > ctx.settings.max_top_k:
        raise invalid(f"top_k must be between 1 and {ctx.settings.max_top_k}")
    return top_k


def check_window(offset: int, top_k: int) -> int:
    """A page ends at most MAX_WINDOW results deep: its candidate pool is sized for its end
    (lookalike/rank/pages.py), so a deeper page would cost an unbounded store search."""
    if offset + top_k > MAX_WINDOW:
        raise invalid(f"offset + top_k must be at most {MAX_WINDOW} (offset {offset}, "
                      f"top_k {top_k})")
    return offset


def make_filters(**values: Any) -> Filters:
    try:
        return to_filters(**values)
    except ValueError as exc:
        raise invalid(str(exc)) from None


def query_text(text: str | None) -> str | None:
    if text is not None and limits.TEXT_CONTROL_CHARS.search(text):
        raise invalid("text: control characters are not allowed")
    return text.strip() if text and text.strip() else None


def validation_error(exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    loc = first.get("loc", ())
    where = ".".join(str(p) for p in loc)
    code = "invalid_crop" if loc and loc[0] == "crop" else "invalid_parameter"
    return invalid(f"{where}: {first.get('msg', 'invalid')}" if where else first["msg"], code)


def product_ids(values: Any, name: str) -> tuple[str, ...]:
    try:
        return split_ids(values, name)
    except ValueError as exc:
        raise invalid(str(exc), "invalid_product_id") from None


def dropped(values: list[str] | None) -> tuple[str, ...]:
    try:
        return split_dropped(values)
    except ValueError as exc:
        raise invalid(str(exc)) from None


def body_filters(f: SearchFilters | None) -> Filters:
    price = f.price if f and f.price else None
    return make_filters(categories=as_list(f and f.category), colors=as_list(f and f.color),
                        sizes=as_list(f and f.size), min_price=price and price.gte,
                        max_price=price and price.lte, split=False)


def json_error(exc: limits.InvalidJson, what: str) -> ApiError:
    """The answer to a JSON body (or field) parse_json refused."""
    if isinstance(exc, limits.JsonTooLarge):
        return ApiError(413, "too_large", f"{what}: {exc}")
    if isinstance(exc, limits.InvalidNumber):
        return ApiError(422, "invalid_number", f"{what}: {exc}")
    if isinstance(exc, limits.InvalidText):
        return ApiError(422, "invalid_unicode", f"{what}: {exc}")
    return ApiError(400, "invalid_json", f"{what} is {exc}")


async def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of a body: bounded before parsing, parsed off the event loop."""
    try:
        body = await limits.parse_json_off_loop(raw)
    except limits.InvalidJson as exc:
        raise json_error(exc, "the body") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return body


async def body_image(ctx: ApiContext, image_base64: str | None, image_url: str | None,
                     crop: Box | None = None) -> Any:
    """The query photo, its crop (if any) cut from the decoded source before any shrink."""
    if image_base64:
        return await query_images.decode(ctx, query_images.from_base64(image_base64), crop)
    if image_url:
        return await query_images.decode(ctx, await query_images.fetch(ctx, image_url), crop)
    return None


def search_response(outcome: SearchOutcome, started: float, request: Request,
                    kind: str) -> dict[str, Any]:
    from lookalike.api.product_routes import hit_json

    request.state.log.update({"type": kind, "embed_ms": round(outcome.timings.embed_ms, 3),
                              "search_ms": round(outcome.timings.search_ms, 3)})
    return {"results": [hit_json(h, outcome.variants.get(h.product.product_id))
                        for h in outcome.hits], **understanding_json(outcome),
            "offset": outcome.offset, "next_offset": outcome.next_offset,
            "took_ms": round((time.perf_counter() - started) * 1000.0, 3)}


def understanding_json(outcome: SearchOutcome) -> dict[str, Any]:
    """What the query was understood to ask for, so a client can show (and remove) it."""
    return {"inferred": {"mode": outcome.mode, **outcome.inferred.as_dict()},
            "relaxed": list(outcome.relaxed),
            "relaxed_detail": [dict(d) for d in outcome.relaxed_detail],
            "full_matches": outcome.full_matches}


@router.get("/v1/search", response_model=SearchResponse, responses=responses(422, 503))
async def search_get(request: Request, ctx: Ctx,
                     q: Annotated[str, Query(min_length=1, max_length=limits.MAX_TEXT_CHARS,
                                             description="the search text")],
                     top_k: TopK = 10, category: Category = [], color: Color = [],
                     size: Size = [], min_price: MinPrice = None,
                     max_price: MaxPrice = None, infer: InferMode = "boost",
                     not_like: NotLike = [], diversity: DiversityParam = 0.0,
                     drop_inferred: DropInferred = [],
                     collapse_variants: CollapseVariants = True,
                     offset: Offset = 0) -> dict[str, Any]:
    """Text search."""
    started = time.perf_counter()
    check_params(request, FILTER_PARAMS | UNDERSTANDING_PARAMS | {"q", "top_k", "offset"})
    text = query_text(q)
    if text is None:
        raise invalid("q (the search text) is required", "missing_query")
    query = build_query(ctx, text=text, image=None, top_k=top_k, image_weight=0.5,
                        filters=make_filters(categories=category, colors=color, sizes=size,
                                             min_price=min_price, max_price=max_price),
                        infer=infer, not_like=not_like, diversity=diversity,
                        drop_inferred=drop_inferred, collapse_variants=collapse_variants,
                        offset=offset)
    request.state.log.update({"top_k": query.top_k, "filters": query.filters.as_dict()})
    return search_response(await ctx.service.search(query), started, request, "text")


SEARCH_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/SearchRequest"}},
    "multipart/form-data": {"schema": {"$ref": "#/components/schemas/SearchForm"}}}}}


@router.post("/v1/search", response_model=SearchResponse, openapi_extra=SEARCH_BODY,
             responses=responses(400, 413, 415, 422, 503))
async def search_post(request: Request, ctx: Ctx) -> dict[str, Any]:
    """Image, text or hybrid search: a JSON body (SearchRequest) or a multipart form
    (SearchForm), at least one of an image and a text."""
    started = time.perf_counter()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        query = await json_query(request, ctx)
    elif ctype == "multipart/form-data":
        query = await form_query(request, ctx)
    else:
        raise ApiError(415, "unsupported_media_type",
                       "send multipart/form-data or application/json")
    # The kind is logged before the search runs, so a failing (503) search keeps its type.
    request.state.log.update({"type": query.kind, "top_k": query.top_k,
                              "filters": query.filters.as_dict()})
    return search_response(await ctx.service.search(query), started, request, query.kind)


async def json_query(request: Request, ctx: ApiContext) -> SearchQuery:
    try:
        req = SearchRequest.model_validate(await parse_body(await request.body()))
    except ValidationError as exc:
        raise validation_error(exc) from None
    not_like = product_ids(req.not_like, "not_like")
    filters = body_filters(req.filters)
    image = await body_image(ctx, req.image_base64, req.image_url, req.crop and req.crop.box())
    return build_query(ctx, text=req.text, image=image,
                       top_k=req.top_k, image_weight=float(req.image_weight), filters=filters,
                       infer=req.infer, not_like=not_like, diversity=float(req.diversity),
                       drop_inferred=list(req.drop_inferred or []),
                       collapse_variants=req.collapse_variants, offset=req.offset)


async def form_query(request: Request, ctx: ApiContext) -> SearchQuery:
    try:
        form = await request.form(max_files=1, max_fields=FORM_MAX_FIELDS)
    except ApiError:
        raise
    except Exception as exc:  # malformed multipart is a client error
        raise ApiError(400, "invalid_form", f"malformed multipart body: {exc}") from exc
    values: dict[str, Any] = {}
    upload = None
    for key in form:
        items = form.getlist(key)
        if key == "image":
            if len(items) != 1 or not isinstance(items[0], (UploadFile, str)):
                raise invalid("image: give one file")
            upload = items[0]
            continue
        if any(not isinstance(v, str) for v in items):
            raise invalid(f"{key}: must be a text field, not a file")
        values[key] = items if key in FORM_LISTS else items[-1]
    for key in ("top_k", "image_weight", "min_price", "max_price", "text", "infer", "crop",
                "diversity", "collapse_variants", "offset"):
        if values.get(key) == "":
            values.pop(key)  # an empty field is an absent one (what HTML forms send)
    try:
        req = SearchForm.model_validate(values)
    except ValidationError as exc:
        raise validation_error(exc) from None
    try:
        box = parse_crop(req.crop)
    except ValueError as exc:
        raise invalid(str(exc), "invalid_crop") from None
    not_like = product_ids(req.not_like, "not_like")
    image = None
    if isinstance(upload, UploadFile):
        data = await upload.read(ctx.settings.max_upload_bytes + 1)
        if data:
            image = await query_images.decode(ctx, data, box)
    elif upload not in (None, ""):
        raise invalid("image must be a file")
    filters = make_filters(categories=req.category, colors=req.color, sizes=req.size,
                           min_price=req.min_price, max_price=req.max_price)
    return build_query(ctx, text=req.text, image=image, top_k=req.top_k,
                       image_weight=req.image_weight, filters=filters, infer=req.infer,
                       not_like=not_like, diversity=req.diversity,
                       drop_inferred=req.drop_inferred, collapse_variants=req.collapse_variants,
                       offset=req.offset)


FORM_LISTS = ("category", "color", "size", "not_like", "drop_inferred")
# Room for every list one field over its limit (its 422 names the limit, where starlette's
# field cap would be a 400), and the scalars.
FORM_MAX_FIELDS = 4 * (limits.MAX_FILTER_VALUES + 1) + limits.MAX_EXAMPLES + 1 + 16


def build_query(ctx: ApiContext, *, text: str | None, image: Any, top_k: int,
                image_weight: float, filters: Filters, infer: str = "boost",
                not_like: Any = (), diversity: float = 0.0,
                drop_inferred: list[str] | tuple[str, ...] = (),
                collapse_variants: bool = True, offset: int = 0) -> SearchQuery:
    text = query_text(text)
    if text is None and image is None:
        raise invalid("give at least one of image and text", "missing_query")
    return SearchQuery(text=text, image=image, top_k=check_top_k(ctx, top_k),
                       offset=check_window(offset, top_k),
                       image_weight=image_weight, filters=filters, infer=infer,
                       exclude_ids=product_ids(list(not_like), "not_like"),
                       diversity=float(diversity), drop_inferred=dropped(list(drop_inferred)),
                       collapse_variants=bool(collapse_variants))


RECOMMEND_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/RecommendRequest"}}}}}


@router.post("/v1/recommend", response_model=SearchResponse, openapi_extra=RECOMMEND_BODY,
             responses=responses(400, 404, 413, 415, 422, 503))
async def recommend(request: Request, ctx: Ctx) -> dict[str, Any]:
    """More like these (`positive` product ids and/or a photo), not like those (`negative`):
    strategy average_vector or best_score (lookalike/rank/examples.py)."""
    started = time.perf_counter()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send application/json")
    try:
        req = RecommendRequest.model_validate(await parse_body(await request.body()))
    except ValidationError as exc:
        raise validation_error(exc) from None
    positive, negative = product_ids(req.positive, "positive"), product_ids(req.negative, "negative")
    top_k = check_top_k(ctx, req.top_k)
    offset = check_window(req.offset, top_k)
    filters = body_filters(req.filters)
    image = await body_image(ctx, req.image_base64, req.image_url)
    if not positive and image is None:
        raise invalid("give at least one positive product id or a photo", "missing_query")
    request.state.log.update({"type": "recommend", "top_k": top_k, "filters": filters.as_dict()})
    outcome = await ctx.service.recommend(positive=positive, negative=negative, image=image,
                                          strategy=req.strategy, top_k=top_k, filters=filters,
                                          offset=offset, collapse_variants=req.collapse_variants)
    return search_response(outcome, started, request, "recommend")


@router.get("/v1/facets", response_model=Facets, responses=responses(503))
async def facets(ctx: Ctx) -> dict[str, Any]:
    """Values and counts of category, color and size, and the price range."""
    return await ctx.service.facets()
