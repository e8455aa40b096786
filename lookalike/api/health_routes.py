"""/healthz (the process answers) and /readyz (it can serve: store and embedders)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from lookalike.api.context import ApiContext, context
from lookalike.api.models import Health, Info, Ready
from lookalike.info import catalogue_info

log = logging.getLogger("lookalike.api")
router = APIRouter(tags=["health"])
Ctx = Annotated[ApiContext, Depends(context)]
READY_TIMEOUT_S = 2.0  # a probe answers within this, whatever the store or embedders do


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
async def readyz(ctx: Ctx) -> JSONResponse:
    """Ready when the store counts and the embedders answered recently. The reason code says
    what is missing; exception text stays in the logs."""
    reason = "embedders_unavailable"
    try:
        if ctx.readiness is not None:
            await asyncio.wait_for(ctx.readiness(), READY_TIMEOUT_S)
        reason = "store_unavailable"
        n = await asyncio.wait_for(ctx.service.count(), READY_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        log.warning("not ready (%s): %s", reason, exc)
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503,
                            headers={"Retry-After": "1"})
    return JSONResponse({"status": "ready", "products": n})


@router.get("/v1/info", response_model=Info)
async def info(ctx: Ctx) -> dict[str, Any]:
    """Products searchable, the model in use and the last ingest (lookalike/info.py)."""
    return await catalogue_info(store=ctx.service.store, settings=ctx.settings,
                                model_version=ctx.service.model_version)
