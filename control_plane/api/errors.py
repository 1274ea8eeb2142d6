"""Exception handlers: every error, ours or FastAPI's, answers ``{code, message, details[]}``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy.exc
import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route

from flagyard.control_plane.api.responses import control_plane_error_response, error_response
from flagyard.control_plane.exceptions import ControlPlaneError, map_db_error
from flagyard.rule_engine.validation import pointer

log = structlog.get_logger("flagyard.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def loc_to_pointer(loc: tuple[Any, ...] | list[Any]) -> str:
    """A validation location as a JSON pointer: into the body (``/rules/0``), else ``/query/limit``."""
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]
    return pointer(*(str(p) for p in parts))


def _message(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "field required"
    if kind == "json_invalid":
        return "the body is not valid JSON: " + str(error.get("ctx", {}).get("error", error.get("msg", "")))
    return str(error.get("msg", "invalid"))


def validation_details(errors: Any) -> list[dict[str, str]]:
    details = []
    for error in errors:
        loc = list(error.get("loc", ()))
        if error.get("type") == "json_invalid":
            loc = loc[:1]
        inner = (error.get("ctx") or {}).get("pointer", "")
        details.append({"path": loc_to_pointer(loc) + inner, "message": _message(error)})
    return details


async def _control_plane_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ControlPlaneError)
    if exc.status >= 500:
        log.warning("request.failed", code=exc.code, error=exc.message, cause=repr(exc.__cause__))
    return control_plane_error_response(exc)


async def _request_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "validation_error", "the request is invalid", validation_details(exc.errors()))


_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class AllowedMethods:
    """Every method each path accepts, for the ``Allow`` of a 405.

    FastAPI makes one route per method and Starlette's 405 names only the methods of the first route
    whose path matched, so ``PUT /projects/{p}`` would answer ``Allow: GET`` though PATCH and DELETE
    work too. Only a 405 pays for this walk.
    """

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self.routes = [route for route in routes if isinstance(route, Route) and route.methods]

    def of(self, request: Request) -> str:
        methods: set[str] = set()
        for route in self.routes:
            if route.matches(request.scope)[0] != Match.NONE:
                methods |= route.methods or set()
        ordered = [m for m in _METHOD_ORDER if m in methods] + sorted(methods.difference(_METHOD_ORDER))
        return ", ".join(ordered)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    allowed: AllowedMethods | None = getattr(request.app.state, "allowed_methods", None)
    if exc.status_code == 405 and allowed is not None:
        headers["Allow"] = allowed.of(request)
        message = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
        return error_response(405, code, message, headers=headers)
    if exc.status_code == 404:
        message = "no such route" if exc.detail == "Not Found" else str(exc.detail)
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, code, message, headers=headers)


async def _database_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, sqlalchemy.exc.SQLAlchemyError)
    mapped = map_db_error(exc)
    log.warning("request.database_error", code=mapped.code, error=str(exc).splitlines()[0][:300])
    return control_plane_error_response(mapped)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("request.crashed", error=repr(exc), exc_info=exc)
    return error_response(500, "internal_error", "an unexpected error occurred; the change was not applied")


def index_methods(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Record every route's methods for 405s: the app's own routes and those of the included routers
    (an included router is one entry of ``app.routes``, not its routes)."""
    app.state.allowed_methods = AllowedMethods(
        [*app.routes, *(r for router in routers for r in router.routes)]
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(ControlPlaneError, _control_plane_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(sqlalchemy.exc.SQLAlchemyError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
