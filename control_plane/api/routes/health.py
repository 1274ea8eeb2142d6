"""Liveness, readiness and metrics (outside /api/v1, unauthenticated)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from flagyard.control_plane import schemas
from flagyard.control_plane.api.body import StrictRoute
from flagyard.control_plane.api.deps import StateDep
from flagyard.control_plane.api.responses import dumps

router = APIRouter(route_class=StrictRoute, tags=["health"])

_ALIVE = dumps({"status": "ok"})


@router.get("/healthz", response_model=schemas.HealthOut, summary="Liveness: the process serves requests")
async def healthz() -> Response:
    return Response(_ALIVE, media_type="application/json")


@router.get(
    "/readyz",
    response_model=schemas.ReadyOut,
    summary="Readiness: the database is reachable",
    responses={
        503: {
            "model": schemas.NotReadyBody,
            "description": "Not ready: the database is unreachable (`checks` says which dependency is down).",
        }
    },
)
def readyz(state: StateDep) -> Response:
    checks = {}
    try:
        with state.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except sa.exc.SQLAlchemyError:
        checks["database"] = "unavailable"
    try:
        state.redis.ping()
        checks["redis"] = "ok"
    except Exception:
        checks["redis"] = "unavailable"
    ready = checks["database"] == "ok"
    if ready:
        body: dict[str, object] = {"status": "ready", "checks": checks}
    else:
        body = {
            "code": "not_ready",
            "message": "the database is unavailable",
            "details": [{"path": "/checks/database", "message": "unreachable"}],
            "checks": checks,
        }
    return Response(dumps(body), status_code=200 if ready else 503, media_type="application/json")


@router.get("/metrics", include_in_schema=False)
def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
