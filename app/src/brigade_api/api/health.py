"""Liveness, readiness, metrics and version."""

from __future__ import annotations

import logging

from fastapi.responses import JSONResponse, Response

from brigade_api import __version__, metrics
from brigade_api.db import schema_revision
from brigade_api.deps import Ctx, Router
from brigade_api.schemas import HealthOut, ReadyOut, VersionOut

router = Router(tags=["operations"])
log = logging.getLogger("brigade.health")


@router.get("/healthz", response_model=HealthOut, summary="Liveness: 200 while the process runs")
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyOut,
    summary="Readiness: the database serves this release and the process is not draining",
    description=(
        "200 with `status` `ok`, or `degraded` when an optional dependency (Redis, the cache) does"
        " not answer: the app serves without it, so a load balancer or a deploy's health gate"
        " keeps the host in service. 503 when the host cannot serve: the database is unavailable"
        " or at another schema, or the process is shutting down."
    ),
    responses={503: {"model": ReadyOut, "description": "Not ready; `reason` says why"}},
)
def readyz(ctx: Ctx) -> JSONResponse:
    checks: dict[str, str] = {}
    reasons: list[str] = []
    degraded: list[str] = []
    if ctx.is_draining():
        checks["process"] = "draining"
        reasons.append("process is shutting down")
    else:
        checks["process"] = "ok"
    try:
        problem = ctx.schema_problem(schema_revision(ctx.engine))
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        checks["database"] = "unavailable"
        reasons.append(f"database: {type(exc).__name__}")
    else:
        checks["database"] = "ok" if problem is None else "schema_outdated"
        if problem is not None:
            reasons.append(f"database: {problem}")
    try:
        ctx.cache.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        # The cache is optional: the app serves from PostgreSQL without it.
        checks["redis"] = "unavailable"
        degraded.append(f"redis: {type(exc).__name__} (serving without the cache)")
    if reasons:
        body = ReadyOut(status="unavailable", checks=checks, reason="; ".join(reasons + degraded))
        return JSONResponse(body.model_dump(), status_code=503)
    if degraded:
        body = ReadyOut(status="degraded", checks=checks, reason="; ".join(degraded))
        return JSONResponse(body.model_dump())
    return JSONResponse(ReadyOut(status="ok", checks=checks).model_dump())


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
def prometheus_metrics(ctx: Ctx) -> Response:
    return Response(
        metrics.render(ctx.orders_collector, ctx.dependency_collector),
        media_type=metrics.CONTENT_TYPE,
    )


@router.get("/api/v1/version", response_model=VersionOut, summary="Version and release id")
def version(ctx: Ctx) -> VersionOut:
    try:
        revision = schema_revision(ctx.engine)
    except Exception:  # noqa: BLE001 - the version must answer even without a database
        revision = None
    return VersionOut(
        name="brigade-api",
        version=__version__,
        release_id=ctx.settings.release_id,
        schema_revision=revision,
    )
