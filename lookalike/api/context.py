"""What the route handlers share: the service, the settings and the per-app limiters."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from fastapi import Request

from lookalike.config import Settings
from lookalike.fetch import SHOPPER, FetchPolicy, Resolver, system_resolver
from lookalike.search import SearchService

Readiness = Callable[[], Awaitable[dict[str, Any]]]


@dataclass
class ApiContext:
    service: SearchService
    settings: Settings
    admin_key: bytes
    readiness: Readiness | None = None
    resolver: Resolver = system_resolver
    # Shopper image_url fetches have a limiter of their own: slow URLs can never take the
    # threads that store calls need (fetches are async and wait here, not in a thread).
    fetches: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(8))

    @property
    def fetch_policy(self) -> FetchPolicy:
        """The strict SHOPPER policy with this app's limits (lookalike/fetch.py)."""
        s = self.settings
        return replace(SHOPPER, allow_private=s.allow_private_image_urls,
                       ports=frozenset(s.image_url_ports), max_bytes=s.max_upload_bytes,
                       timeout_s=s.image_fetch_timeout_s, deadline_s=s.image_fetch_deadline_s,
                       retries=min(s.image_fetch_retries, 1))


def context(request: Request) -> ApiContext:
    return request.app.state.ctx
