"""Rendering results and errors as JSON responses."""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.responses import Response

from flagyard.control_plane.exceptions import ControlPlaneError, RateLimitedError
from flagyard.control_plane.services.common import Result


def dumps(content: Any) -> bytes:
    """orjson, falling back to the standard library for what orjson refuses (integers beyond 64 bits)."""
    try:
        return orjson.dumps(content)
    except TypeError:
        return json.dumps(content, default=str).encode()


def to_jsonable(content: Any) -> Any:
    return orjson.loads(dumps(content))


def result_response(result: Result, extra_headers: dict[str, str] | None = None) -> Response:
    headers = {**result.headers(), **(extra_headers or {})}
    if result.status == 204 or result.body is None:
        return Response(status_code=204, headers=headers)
    return Response(
        dumps(result.body), status_code=result.status, media_type="application/json", headers=headers
    )


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {"code": code, "message": message, "details": details or []}
    return Response(dumps(body), status_code=status, media_type="application/json", headers=headers)


def control_plane_error_response(exc: ControlPlaneError) -> Response:
    headers = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(exc.retry_after)
    if exc.status == 503:
        headers["Retry-After"] = "5"
    return error_response(exc.status, exc.code, exc.message, [d.as_dict() for d in exc.details], headers)
