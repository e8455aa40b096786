"""HTTP API v1 (docs/api.md): FastAPI's "bigger applications" layout.

app.py (the app and its middleware), search_routes.py, product_routes.py, health_routes.py,
models.py (the declared contract), errors.py, limits.py, query_images.py, context.py.
"""

from lookalike.api.app import create_api

__all__ = ["create_api"]
