"""POST /v1/admin/refresh: re-read what the router keeps from the store (admin).

`lookalike upgrade` calls it after switching the alias, so routers search the new collection at
once instead of polling the alias (lookalike/live.py); `lookalike ingest` after an ingest, so
the facets show the new catalogue at once instead of at the next background rescan. Each call reaches the one replica the
proxy routes it to; the answer names that replica, so a caller can repeat it until it has seen
them all (lookalike/notify.py).
"""

from __future__ import annotations

import os
import socket
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from lookalike.api.context import ApiContext, context
from lookalike.api.errors import responses
from lookalike.api.product_routes import require_admin

router = APIRouter(tags=["admin"])
Ctx = Annotated[ApiContext, Depends(context)]
# One Serve replica is one process: host and pid tell replicas apart.
REPLICA = f"{socket.gethostname()}:{os.getpid()}"


class Refreshed(BaseModel):
    replica: str = Field(description="the router replica that answered")
    collection: str = Field(description="the collection it searches now")
    model_version: str
    pending: str | None = Field(None, description="an upgrade's target collection, if one runs")


@router.post("/v1/admin/refresh", response_model=Refreshed,
             responses=responses(401, 422, 503))
async def refresh(request: Request, ctx: Ctx, notice: Annotated[str, Query(
        max_length=64, description="one id per notice: a replica acts on it once")] = "",
                  ) -> dict[str, Any]:
    """Resolve the collection alias again and rescan the facets (after `lookalike upgrade` or
    an ingest). A notice repeated to reach every replica costs one that already had it
    nothing."""
    require_admin(request, ctx)
    state = request.app.state
    if not notice or getattr(state, "refresh_notice", None) != notice:
        state.refreshed = await ctx.service.refresh()
        state.refresh_notice = notice
    return {"replica": REPLICA, **state.refreshed}
