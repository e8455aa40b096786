"""/v1/products/{id}: read, more-like-this, images (contained), and the admin writes."""

from __future__ import annotations

import hmac
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from lookalike import image_refs
from lookalike.api import limits
from lookalike.api.context import ApiContext, context
from lookalike.api.errors import ApiError, responses
from lookalike.api.models import ProductOut, SearchResponse
from lookalike.api.query_images import image_error
from lookalike.api.search_routes import (
    FILTER_PARAMS,
    Category,
    CollapseVariants,
    Color,
    MaxPrice,
    MinPrice,
    Offset,
    Size,
    TopK,
    check_params,
    check_top_k,
    check_window,
    json_error,
    make_filters,
    search_response,
)
from lookalike.catalog.manifest import PRODUCT_ID, RowError, parse_row
from lookalike.catalog.product import Product
from lookalike.images import CONTENT_TYPES, UPLOAD_FORMATS, InvalidImageError, sniff_content_type
from lookalike.rank.relative import Relative
from lookalike.search import NotFoundError
from lookalike.store.base import Hit
from lookalike.workers import store_call

router = APIRouter(tags=["products"])
Ctx = Annotated[ApiContext, Depends(context)]
ProductId = Annotated[str, PathParam(pattern=PRODUCT_ID.pattern, max_length=128,
                                     description="1-128 letters, digits, . _ : -")]
SERVED_TYPES = {CONTENT_TYPES[f] for f in UPLOAD_FORMATS} | {CONTENT_TYPES["TIFF"]}
# Served bytes are data, never a page: no sniffing into HTML, no scripts even if opened directly.
IMAGE_HEADERS = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff",
                 "Content-Security-Policy": "default-src 'none'; sandbox"}


def image_url(product_id: str, n: int) -> str:
    return f"/v1/products/{product_id}/images/{n}"


def hit_json(hit: Hit, variants: list[Product] | None = None) -> dict[str, Any]:
    p = hit.product
    others = [{"product_id": v.product_id, "title": v.title, "color": v.color, "size": v.size,
               "price": v.price, "image_url": image_url(v.product_id, 0)} for v in variants or ()]
    return {"product_id": p.product_id, "score": round(hit.score, 6), "title": p.title,
            "category": p.category, "color": p.color, "size": p.size, "price": p.price,
            "image_url": image_url(p.product_id, hit.image_index), "attributes": p.attributes,
            "explain": hit.explain or None, "variants": len(others), "other_variants": others}


def product_json(p: Product) -> dict[str, Any]:
    d = p.to_dict()
    d.pop("images")
    d["image_urls"] = [image_url(p.product_id, n) for n in range(len(p.images))]
    return d


@router.get("/v1/products/{product_id}", response_model=ProductOut,
            responses=responses(404, 422, 503))
async def get_product(ctx: Ctx, product_id: ProductId) -> dict[str, Any]:
    return product_json(await ctx.service.get(product_id))


@router.get("/v1/products/{product_id}/similar", response_model=SearchResponse,
            responses=responses(404, 422, 503))
async def similar(request: Request, ctx: Ctx, product_id: ProductId, top_k: TopK = 10,
                  category: Category = [], color: Color = [], size: Size = [],
                  min_price: MinPrice = None, max_price: MaxPrice = None,
                  cheaper: Annotated[bool, Query(description="only cheaper than this one")] = False,
                  other_color: Annotated[bool, Query(description="only in another colour")] = False,
                  same_category: Annotated[bool, Query(description="only in its category")] = False,
                  offset: Offset = 0, collapse_variants: CollapseVariants = True,
                  ) -> dict[str, Any]:
    """More like this, from the product's stored vectors, ranked as a search is (one result
    per variant group; the product's own variants are not results). `cheaper`, `other_color`
    and `same_category` narrow by the product itself; `size` (a filter) narrows to a size."""
    started = time.perf_counter()
    check_params(request, FILTER_PARAMS | {"top_k", "cheaper", "other_color", "same_category",
                                           "offset", "collapse_variants"})
    filters = make_filters(categories=category, colors=color, sizes=size, min_price=min_price,
                           max_price=max_price)
    top_k = check_top_k(ctx, top_k)
    offset = check_window(offset, top_k)
    request.state.log.update({"top_k": top_k, "filters": filters.as_dict()})
    relative = Relative(cheaper=cheaper, other_color=other_color, same_category=same_category)
    outcome = await ctx.service.similar(product_id, top_k=top_k, filters=filters,
                                        relative=relative, offset=offset,
                                        collapse_variants=collapse_variants)
    return search_response(outcome, started, request, "similar")


@router.get("/v1/products/{product_id}/images/{n}", responses={
    200: {"content": {t: {"schema": {"type": "string", "format": "binary"}}
                      for t in sorted(SERVED_TYPES)}, "description": "the image bytes"},
    **responses(404, 422, 503)})
async def product_image(ctx: Ctx, product_id: ProductId,
                        n: Annotated[int, PathParam(ge=0, le=limits.TOP_K_CAP)]) -> Response:
    product = await ctx.service.get(product_id)
    if n >= len(product.images):
        raise NotFoundError(f"{product_id} has no image {n}")
    s = ctx.settings
    roots = (s.media_dir, s.data_dir, *s.image_roots, *([s.catalog_root] if s.catalog_root else []))
    target = await store_call(
        image_refs.resolve, product.images[n], roots=roots, redirect_hosts=s.image_redirect_hosts,
        media=ctx.service.media, catalog_root=s.catalog_root)
    if target is None:
        raise NotFoundError(f"image {n} of {product_id}")
    if target.url is not None:
        return RedirectResponse(target.url, status_code=307)
    if target.data is not None:
        ctype = sniff_content_type(target.data[:4096])
        if ctype not in SERVED_TYPES:
            raise NotFoundError(f"image {n} of {product_id}")
        return Response(target.data, media_type=ctype, headers=IMAGE_HEADERS)
    with target.path.open("rb") as f:
        ctype = sniff_content_type(f.read(4096))
    if ctype not in SERVED_TYPES:
        raise NotFoundError(f"image {n} of {product_id}")
    return FileResponse(target.path, media_type=ctype, headers=IMAGE_HEADERS)


def require_admin(request: Request, ctx: ApiContext) -> None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    token_bytes = token.strip().encode()
    if scheme.lower() != "bearer" or not token_bytes or \
            not hmac.compare_digest(token_bytes, ctx.admin_key):
        raise ApiError(401, "unauthorized",
                       "a valid 'Authorization: Bearer <admin key>' is required")


PUT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"$ref": "#/components/schemas/ProductUpload"}}}}}


@router.put("/v1/products/{product_id}", response_model=ProductOut, openapi_extra=PUT_BODY,
            responses=responses(400, 401, 413, 415, 422, 503))
async def put_product(request: Request, ctx: Ctx, product_id: ProductId) -> JSONResponse:
    """Create or replace a product (admin): `metadata` (ProductMetadata as JSON) and one or
    more `image` files; searchable at once."""
    require_admin(request, ctx)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # A url-encoded form can carry metadata but no image: it gets the clearer missing_image.
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data")
    try:
        form = await request.form(max_files=ctx.settings.max_images_per_product, max_fields=4,
                                  max_part_size=limits.MAX_METADATA_BYTES)
    except ApiError:
        raise
    except Exception as exc:  # malformed multipart is a client error
        raise ApiError(400, "invalid_form", f"malformed multipart body: {exc}") from exc
    unknown = sorted(set(form) - {"metadata", "image"})
    if unknown:
        raise ApiError(422, "invalid_parameter", f"unknown field(s): {', '.join(unknown)[:200]}")
    raw = form.get("metadata") or "{}"
    if not isinstance(raw, str):
        raise ApiError(422, "invalid_metadata", "metadata must be a text field")
    try:
        metadata = await limits.parse_json_off_loop(raw)
    except limits.InvalidJson as exc:
        raise json_error(exc, "metadata") from None
    if not isinstance(metadata, dict):
        raise ApiError(422, "invalid_metadata", "metadata must be a JSON object")
    if metadata.get("product_id", product_id) != product_id:
        raise ApiError(422, "invalid_metadata", "metadata.product_id differs from the URL")
    uploads = [u for u in form.getlist("image") if isinstance(u, UploadFile)]
    if not uploads:
        raise ApiError(422, "missing_image", "at least one file in the 'image' field is required")
    images = []
    for upload in uploads:
        data = await upload.read(ctx.settings.max_upload_bytes + 1)
        if len(data) > ctx.settings.max_upload_bytes:
            raise ApiError(413, "too_large",
                           f"image larger than {ctx.settings.max_upload_bytes} bytes")
        images.append(data)
    parsed = parse_row({**metadata, "product_id": product_id, "images": ["upload"]}, 1)
    if isinstance(parsed, RowError):
        raise ApiError(422, "invalid_metadata", f"{parsed.field}: {parsed.reason}")
    try:
        product = await ctx.service.upsert(parsed, images)
    except InvalidImageError as exc:
        raise image_error(exc) from exc
    request.state.log["type"] = "upsert"
    return JSONResponse(product_json(product), status_code=200)


@router.delete("/v1/products/{product_id}", status_code=204, response_class=Response,
               responses=responses(401, 404, 422, 503))
async def delete_product(request: Request, ctx: Ctx, product_id: ProductId) -> Response:
    require_admin(request, ctx)
    await ctx.service.delete(product_id)
    request.state.log["type"] = "delete"
    return Response(status_code=204)
