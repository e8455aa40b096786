"""HTTP API v1 as a FastAPI app over a SearchService (see README "HTTP API").

`create_api` takes the service and settings, so the app runs inside the Serve router and, for
unit tests and the baseline, in plain uvicorn. Every client error is a 4xx JSON error
`{"error": {"code", "message"}}`; a failing store is a 503, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from lookalike.api_params import (
    ApiError,
    check_product_id,
    error_response,
    filters_from_query,
    hit_json,
    make_filters,
    parse_crop,
    parse_diversity,
    parse_dropped,
    parse_flag,
    parse_ids,
    parse_infer,
    parse_strategy,
    parse_top_k,
    parse_weight,
    product_json,
    understanding_json,
)
from lookalike.catalog.manifest import RowError, parse_row
from lookalike.config import Settings
from lookalike.fetch import FetchError, TooLargeError, fetch_bytes
from lookalike.images import InvalidImageError, crop_fraction, decode_image
from lookalike.rank.relative import Relative
from lookalike.recommend import UnknownProducts
from lookalike.search import NotFoundError, SearchQuery, SearchService
from lookalike.store.base import Filters, StoreError

log = logging.getLogger("lookalike.api")
WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def _mount_offline_docs(app: FastAPI) -> None:
    """Swagger UI from the swagger-ui-bundle wheel: FastAPI's default loads it from a CDN,
    which leaves /docs blank on an offline laptop or a locked-down cluster."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="lookalike API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")


# -- the app -------------------------------------------------------------------------------------

RequestObserver = Callable[[dict[str, Any]], None]


def create_api(service: SearchService, settings: Settings, *,
               readiness: Callable[[], Awaitable[dict[str, Any]]] | None = None,
               observer: RequestObserver | None = None, echo_request_id: bool = True) -> FastAPI:
    """`observer` receives one record per request (request id, endpoint, type, status, timings).

    `echo_request_id=False` where a proxy in front already answers with X-Request-ID (Ray
    Serve does, with the same id it puts into the request), so clients never get it twice.
    """
    app = FastAPI(title="lookalike", version="1", description="Similar-product search API",
                  docs_url=None, redoc_url=None)
    _mount_offline_docs(app)
    # Resolved once, at start-up: a missing, empty or short key fails here, not at a write.
    admin_key = settings.resolved_admin_key().get_secret_value().encode()

    @app.middleware("http")
    async def _observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        request.state.log = {}
        try:
            response = await call_next(request)
        except Exception:  # an unhandled bug: still answer in JSON, and record it
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            response = error_response(500, "internal", "internal error")
        if echo_request_id:
            response.headers["x-request-id"] = request_id
        if observer is not None:
            route = request.scope.get("route")
            record = {
                "request_id": request_id, "method": request.method,
                "endpoint": getattr(route, "path", request.url.path), "status": response.status_code,
                "total_ms": round((time.perf_counter() - started) * 1000.0, 3),
                "error_code": response.headers.get("x-error-code"), **request.state.log,
            }
            try:
                observer(record)
            except Exception:  # noqa: BLE001 - observability must never break a request
                log.exception("request observer failed")
        return response

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message,
                              {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body", "path"))
        return error_response(422, "invalid_parameter", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(NotFoundError)
    async def _not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return error_response(404, "not_found", f"not found: {exc}")

    @app.exception_handler(UnknownProducts)
    async def _unknown(_: Request, exc: UnknownProducts) -> JSONResponse:
        return error_response(404, "not_found", f"unknown products: {exc}")

    @app.exception_handler(StoreError)
    async def _store(_: Request, exc: StoreError) -> JSONResponse:
        log.warning("store error: %s", exc)
        return error_response(503, "store_unavailable", "the vector store is unavailable; retry")

    def require_admin(request: Request) -> None:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or not hmac.compare_digest(token.encode(), admin_key):
            raise ApiError(401, "unauthorized", "a valid 'Authorization: Bearer <admin key>' is required")

    async def read_upload(upload: UploadFile) -> bytes:
        data = await upload.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise ApiError(413, "too_large", f"image larger than {settings.max_upload_bytes} bytes")
        return data

    def check_length(request: Request) -> None:
        # Refuse oversize bodies before reading them (multipart adds some overhead).
        declared = request.headers.get("content-length")
        limit = settings.max_upload_bytes * settings.max_images_per_product + 1024 * 1024
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, "too_large", "request body too large")

    def to_image(data: bytes):
        try:
            return decode_image(data)
        except InvalidImageError as exc:
            raise ApiError(415, "invalid_image", f"not an image: {exc}") from exc

    def search_response(outcome, started: float, request: Request, kind: str) -> dict[str, Any]:
        request.state.log.update({"type": kind, "embed_ms": round(outcome.timings.embed_ms, 3),
                                  "search_ms": round(outcome.timings.search_ms, 3)})
        return {"results": [hit_json(h) for h in outcome.hits], **understanding_json(outcome),
                "took_ms": round((time.perf_counter() - started) * 1000.0, 3)}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        try:
            if readiness is not None:
                await readiness()
            n = await service.count()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            return JSONResponse({"status": "unavailable", "reason": str(exc)[:200]}, status_code=503)
        return JSONResponse({"status": "ready", "products": n})

    @app.get("/v1/search")
    async def search_get(request: Request, q: str | None = None) -> dict[str, Any]:
        started = time.perf_counter()
        if not q or not q.strip():
            raise ApiError(422, "missing_query", "q (the search text) is required")
        query = SearchQuery(text=q.strip()[:2000], top_k=parse_top_k(request.query_params.get("top_k"),
                                                                 settings.max_top_k),
                            filters=filters_from_query(request),
                            infer=parse_infer(request.query_params.get("infer")),
                            exclude_ids=parse_ids(request.query_params.getlist("not_like"), "not_like"),
                            diversity=parse_diversity(request.query_params.get("diversity")),
                            drop_inferred=parse_dropped(request.query_params.getlist("drop_inferred")))
        request.state.log.update({"top_k": query.top_k, "filters": query.filters.as_dict()})
        return search_response(await service.search(query), started, request, "text")

    @app.post("/v1/search")
    async def search_post(request: Request) -> dict[str, Any]:
        started = time.perf_counter()
        check_length(request)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json":
            query = await _json_query(request)
        elif ctype == "multipart/form-data":
            query = await _form_query(request)
        else:
            raise ApiError(415, "unsupported_media_type",
                           "send multipart/form-data or application/json")
        # The kind is logged before the search runs, so a failing (503) search keeps its type.
        request.state.log.update({"type": query.kind, "top_k": query.top_k,
                                  "filters": query.filters.as_dict()})
        return search_response(await service.search(query), started, request, query.kind)

    async def _json_body(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_json", "the body must be a JSON object")
        return body

    async def _body_image(body: dict[str, Any]) -> Any:
        image = None
        if body.get("image_base64"):
            if not isinstance(body["image_base64"], str):
                raise ApiError(422, "invalid_parameter", "image_base64 must be a string")
            raw = body["image_base64"].split(",", 1)[-1] if body["image_base64"].startswith("data:") \
                else body["image_base64"]
            try:
                data = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(400, "invalid_base64", "image_base64 is not valid base64") from None
            if len(data) > settings.max_upload_bytes:
                raise ApiError(413, "too_large", f"image larger than {settings.max_upload_bytes} bytes")
            image = to_image(data)
        elif body.get("image_url"):
            if not isinstance(body["image_url"], str):
                raise ApiError(422, "invalid_parameter", "image_url must be a string")
            image = to_image(await _fetch(body["image_url"]))
        return image

    def _body_filters(body: dict[str, Any]) -> Filters:
        filters = body.get("filters") or {}
        if not isinstance(filters, dict):
            raise ApiError(422, "invalid_parameter", "filters must be an object")
        price = filters.get("price") or {}
        if not isinstance(price, dict):
            raise ApiError(422, "invalid_parameter", "filters.price must be an object {gte, lte}")
        return make_filters(categories=filters.get("category"), colors=filters.get("color"),
                            sizes=filters.get("size"), min_price=price.get("gte"),
                            max_price=price.get("lte"))

    async def _json_query(request: Request) -> SearchQuery:
        body = await _json_body(request)
        image = await _body_image(body)
        filters = _body_filters(body)
        text = body.get("text")
        if text is not None and not isinstance(text, str):
            raise ApiError(422, "invalid_parameter", "text must be a string")
        image = _cropped(image, body.get("crop"))
        return _query(text=text, image=image, top_k=body.get("top_k"),
                      image_weight=body.get("image_weight"), infer=body.get("infer"),
                      not_like=body.get("not_like"), diversity=body.get("diversity"),
                      drop_inferred=body.get("drop_inferred"),
                      filters=filters)

    async def _fetch(url: str) -> bytes:
        import asyncio

        try:
            return await asyncio.to_thread(
                fetch_bytes, url, timeout_s=settings.image_fetch_timeout_s,
                max_bytes=settings.max_upload_bytes, retries=settings.image_fetch_retries,
                allow_private=settings.allow_private_image_urls)
        except TooLargeError as exc:
            raise ApiError(413, "too_large", str(exc)) from exc
        except FetchError as exc:
            raise ApiError(422, "image_url_unusable", str(exc)) from exc

    async def _form_query(request: Request) -> SearchQuery:
        try:
            form = await request.form(max_files=2, max_fields=50)
        except Exception as exc:  # noqa: BLE001 - malformed multipart is a client error
            raise ApiError(400, "invalid_form", f"malformed multipart body: {exc}") from exc
        upload = form.get("image")
        image = None
        if isinstance(upload, UploadFile):
            data = await read_upload(upload)
            if data:
                image = to_image(data)
        elif upload not in (None, ""):
            raise ApiError(422, "invalid_parameter", "image must be a file")
        text = form.get("text")
        image = _cropped(image, form.get("crop"))
        return _query(text=text if isinstance(text, str) else None, image=image,
                      top_k=form.get("top_k"), image_weight=form.get("image_weight"),
                      infer=form.get("infer"), not_like=form.getlist("not_like"),
                      diversity=form.get("diversity"), drop_inferred=form.getlist("drop_inferred"),
                      filters=make_filters(categories=form.getlist("category"),
                                           colors=form.getlist("color"), sizes=form.getlist("size"),
                                           min_price=form.get("min_price"),
                                           max_price=form.get("max_price")))

    def _cropped(image: Any, crop: Any) -> Any:
        """The shopper's crop of the photo is what gets embedded (and read for its colour)."""
        box = parse_crop(crop)
        return crop_fraction(image, box) if box is not None and image is not None else image

    def _query(*, text: Any, image: Any, top_k: Any, image_weight: Any, filters: Filters,
               infer: Any = None, not_like: Any = None, diversity: Any = None,
               drop_inferred: Any = None) -> SearchQuery:
        text = text.strip()[:2000] if isinstance(text, str) and text.strip() else None
        if text is None and image is None:
            raise ApiError(422, "missing_query", "give at least one of image and text")
        return SearchQuery(text=text, image=image, top_k=parse_top_k(top_k, settings.max_top_k),
                           image_weight=parse_weight(image_weight), filters=filters,
                           infer=parse_infer(infer), exclude_ids=parse_ids(not_like, "not_like"),
                           diversity=parse_diversity(diversity),
                           drop_inferred=parse_dropped(drop_inferred))

    @app.get("/v1/facets")
    async def facets() -> dict[str, Any]:
        return await service.facets()

    @app.get("/v1/products/{product_id}")
    async def get_product(product_id: str) -> dict[str, Any]:
        return product_json(await service.get(check_product_id(product_id)))

    @app.get("/v1/products/{product_id}/similar")
    async def similar(request: Request, product_id: str) -> dict[str, Any]:
        started = time.perf_counter()
        top_k = parse_top_k(request.query_params.get("top_k"), settings.max_top_k)
        filters = filters_from_query(request)
        request.state.log.update({"top_k": top_k, "filters": filters.as_dict()})
        q = request.query_params
        relative = Relative(cheaper=parse_flag(q.get("cheaper"), "cheaper"),
                            other_color=parse_flag(q.get("other_color"), "other_color"),
                            same_category=parse_flag(q.get("same_category"), "same_category"))
        # A size: the `size` filter (filters_from_query) already narrows "similar" to it.
        outcome = await service.similar(check_product_id(product_id), top_k=top_k, filters=filters,
                                        relative=relative)
        return search_response(outcome, started, request, "similar")

    @app.post("/v1/recommend")
    async def recommend(request: Request) -> dict[str, Any]:
        """{"positive": [ids], "negative": [ids], "image_base64"|"image_url", "strategy":
        "average_vector"|"best_score", "top_k", "filters"}: more like these, not like those."""
        started = time.perf_counter()
        check_length(request)
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise ApiError(415, "unsupported_media_type", "send application/json")
        body = await _json_body(request)
        positive, negative = parse_ids(body.get("positive"), "positive"), parse_ids(body.get("negative"), "negative")
        image = await _body_image(body)
        if not positive and image is None:
            raise ApiError(422, "missing_query", "give at least one positive product id or a photo")
        top_k = parse_top_k(body.get("top_k"), settings.max_top_k)
        filters = _body_filters(body)
        request.state.log.update({"top_k": top_k, "filters": filters.as_dict()})
        outcome = await service.recommend(positive=positive, negative=negative, image=image,
                                          strategy=parse_strategy(body.get("strategy")),
                                          top_k=top_k, filters=filters)
        return search_response(outcome, started, request, "recommend")

    @app.get("/v1/products/{product_id}/images/{n}")
    async def product_image(product_id: str, n: int) -> Response:
        ref, ctype = await service.image(check_product_id(product_id), n)
        if ref.startswith(("http://", "https://")):
            return RedirectResponse(ref, status_code=307)
        return FileResponse(ref, media_type=ctype or "application/octet-stream",
                            headers={"Cache-Control": "public, max-age=3600"})

    @app.put("/v1/products/{product_id}")
    async def put_product(request: Request, product_id: str) -> JSONResponse:
        require_admin(request)
        check_product_id(product_id)
        check_length(request)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            raise ApiError(415, "unsupported_media_type", "send multipart/form-data")
        try:
            form = await request.form(max_files=settings.max_images_per_product, max_fields=20)
        except Exception as exc:  # noqa: BLE001
            raise ApiError(400, "invalid_form", f"malformed multipart body: {exc}") from exc
        try:
            metadata = json.loads(str(form.get("metadata") or "{}"))
        except json.JSONDecodeError:
            raise ApiError(400, "invalid_json", "metadata is not valid JSON") from None
        if not isinstance(metadata, dict):
            raise ApiError(422, "invalid_metadata", "metadata must be a JSON object")
        if metadata.get("product_id", product_id) != product_id:
            raise ApiError(422, "invalid_metadata", "metadata.product_id differs from the URL")
        uploads = [u for u in form.getlist("image") if isinstance(u, UploadFile)]
        if not uploads:
            raise ApiError(422, "missing_image", "at least one file in the 'image' field is required")
        images = [await read_upload(u) for u in uploads]
        parsed = parse_row({**metadata, "product_id": product_id, "images": ["upload"]}, 1)
        if isinstance(parsed, RowError):
            raise ApiError(422, "invalid_metadata", f"{parsed.field}: {parsed.reason}")
        try:
            product = await service.upsert(parsed, images)
        except InvalidImageError as exc:
            raise ApiError(415, "invalid_image", f"not an image: {exc}") from exc
        request.state.log["type"] = "upsert"
        return JSONResponse(product_json(product), status_code=200)

    @app.delete("/v1/products/{product_id}")
    async def delete_product(request: Request, product_id: str) -> Response:
        require_admin(request)
        await service.delete(check_product_id(product_id))
        request.state.log["type"] = "delete"
        return Response(status_code=204)

    if (WEB_DIR / "index.html").exists():
        from fastapi.staticfiles import StaticFiles

        class _WebFiles(StaticFiles):
            # The page's assets are not fingerprinted: browsers revalidate them (a cheap 304 via
            # ETag) so a deploy never leaves a stale app.js next to a new index.html.
            async def get_response(self, path: str, scope: Any) -> Response:
                response = await super().get_response(path, scope)
                response.headers.setdefault("Cache-Control", "no-cache")
                return response

        app.mount("/static", _WebFiles(directory=WEB_DIR), name="static")

        @app.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(WEB_DIR / "index.html", media_type="text/html",
                                headers={"Cache-Control": "no-cache"})

    return app
