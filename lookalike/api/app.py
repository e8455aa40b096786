"""The FastAPI app over a SearchService: middleware, error handlers, routers, docs, the page.

`create_api` takes the service and settings, so the app runs inside the Serve router and, for
unit tests and the baseline, in plain uvicorn. Every client error is a 4xx JSON error
`{"error": {"code", "message"}}`; an unavailable dependency is a 503 with Retry-After; a 500
only ever means a bug, and even then it is JSON.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, Response

from lookalike.api import admin_routes, errors, health_routes, product_routes, search_routes
from lookalike.api.context import ApiContext, Readiness
from lookalike.api.limits import BodyLimitMiddleware
from lookalike.api.models import ProductMetadata, ProductUpload, SearchForm, SearchRequest
from lookalike.api.observe import ObserveMiddleware, RequestObserver
from lookalike.config import Settings
from lookalike.fetch import Resolver, system_resolver
from lookalike.search import SearchService

WEB_DIR = Path(__file__).resolve().parent.parent / "web"  # package data: ships in the wheel
# The page loads only its own script, styles and images (uploaded previews are blob: URLs).
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")
PAGE_HEADERS = {"Cache-Control": "no-cache", "Content-Security-Policy": PAGE_CSP,
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
# Models documented for the bodies the routes parse themselves (two content types, or auth
# before the body is read).
BODY_MODELS = (SearchRequest, SearchForm, ProductUpload, ProductMetadata)

API_DESCRIPTION = """Similar-product search API.

**What `score` means** depends on the query kind; never compare scores across kinds:

* text only, image only: the raw cosine similarity (-1..1) between the query and the product's
  text vector, or its best-matching photo;
* text + image, and `similar` (every stored photo of the product plus its text): the fused score
  `w * (1 + image cosine) / 2 + (1 - w) * (1 + text cosine) / 2` (0..1), with `w` the
  `image_weight` (0.7 for `similar`), computed exactly for each product among each
  modality's best 3 x top_k (at least 30) products.

**Errors** are always `{"error": {"code", "message"}}`. 503 (with `Retry-After`) means a
dependency is down or the service is shedding load: retry later.
"""


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


def _install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version,
                               description=app.description, routes=app.routes)
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in BODY_MODELS:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _mount_page(app: FastAPI) -> None:
    from fastapi.staticfiles import StaticFiles

    class _WebFiles(StaticFiles):
        # The page's assets are not fingerprinted: browsers revalidate them (a cheap 304 via
        # ETag) so a deploy never leaves a stale app.js next to a new index.html.
        async def get_response(self, path: str, scope: Any) -> Response:
            response = await super().get_response(path, scope)
            for key, value in PAGE_HEADERS.items():
                response.headers.setdefault(key, value)
            return response

    app.mount("/static", _WebFiles(directory=WEB_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)


def create_api(service: SearchService, settings: Settings, *, readiness: Readiness | None = None,
               observer: RequestObserver | None = None, echo_request_id: bool = True,
               resolver: Resolver = system_resolver) -> FastAPI:
    """`observer` receives one record per request (request id, endpoint, type, status, timings).

    `echo_request_id=False` where a proxy in front already answers with X-Request-ID (Ray
    Serve does, with the same id it puts into the request), so clients never get it twice.
    `resolver`: how image_url hosts are resolved (tests pass a local stub).
    """
    app = FastAPI(title="lookalike", version="1", description=API_DESCRIPTION,
                  docs_url=None, redoc_url=None)
    # Resolved once, at start-up: a missing, empty or short key fails here, not at a write.
    admin_key = settings.resolved_admin_key().get_secret_value().encode()
    app.state.ctx = ApiContext(service=service, settings=settings, admin_key=admin_key,
                               readiness=readiness, resolver=resolver,
                               fetches=asyncio.Semaphore(settings.max_concurrent_fetches))
    _mount_offline_docs(app)
    errors.install(app)
    for module in (health_routes, search_routes, product_routes, admin_routes):
        app.include_router(module.router)
    _install_openapi(app)
    app.add_middleware(BodyLimitMiddleware, max_upload=settings.max_upload_bytes,
                       max_images=settings.max_images_per_product)
    # Outermost, so refused bodies are logged and counted like any other answer.
    app.add_middleware(ObserveMiddleware, observer=observer, echo_request_id=echo_request_id)
    _mount_page(app)
    return app
