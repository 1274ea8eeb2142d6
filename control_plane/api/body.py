"""Request bodies: bounded while they arrive, and JSON parsed once by the rule engine's strict parser.

Every admin route is a :class:`StrictRoute`. Before FastAPI reads anything it checks the declared
``Content-Length`` against the route's limit (``limits.MAX_REQUEST_BODY_BYTES``; the environment import,
an :class:`ImportRoute`, ``limits.MAX_IMPORT_BODY_BYTES``), then counts a chunked body as it arrives: 413
as soon as either is over, nothing parsed, nothing written. A JSON body is parsed by
:func:`flagyard.rule_engine.documents.parse_json` (duplicate object keys and over-deep nesting refused,
422 with the JSON pointer), once: FastAPI's own ``request.json()`` then returns the same object.
"""

from __future__ import annotations

import email.message
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from flagyard.control_plane.exceptions import Detail, InvalidRequestError, PayloadTooLargeError
from flagyard.rule_engine import limits
from flagyard.rule_engine.documents import parse_json
from flagyard.rule_engine.exceptions import DocumentFormatError


def too_large(limit: int) -> PayloadTooLargeError:
    message = f"the request body is larger than {limit} bytes"
    return PayloadTooLargeError(message, [Detail("", message)])


class StrictRequest(Request):
    """A request whose body stops at ``body_limit`` bytes and whose JSON is parsed strictly."""

    body_limit: int = limits.MAX_REQUEST_BODY_BYTES

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            chunks = []
            size = 0
            async for chunk in self.stream():
                size += len(chunk)
                if size > self.body_limit:
                    raise too_large(self.body_limit)
                chunks.append(chunk)
            self._body = b"".join(chunks)
        return self._body

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = parse_json(body)
            except DocumentFormatError as exc:
                reason = str(exc).removeprefix("not valid JSON: ")
                raise InvalidRequestError(
                    "the request is invalid", [Detail(exc.path, f"the body is not valid JSON: {reason}")]
                ) from exc
            except RecursionError as exc:
                reason = f"it nests deeper than {limits.MAX_JSON_DEPTH} levels"
                raise InvalidRequestError(
                    "the request is invalid", [Detail("", f"the body is not valid JSON: {reason}")]
                ) from exc
        return self._json


def declares_json(content_type: str | None) -> bool:
    """Whether FastAPI would read this body as JSON (``application/json`` or ``application/*+json``)."""
    if not content_type:
        return False
    if content_type == "application/json":
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class StrictRoute(APIRoute):
    """An admin route: body bounded by :attr:`body_limit`, JSON parsed strictly and once."""

    body_limit: int = limits.MAX_REQUEST_BODY_BYTES

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        limit = self.body_limit
        reads_body = self.body_field is not None

        async def strict_handler(request: Request) -> Response:
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise too_large(limit)
            if not reads_body:
                return await handler(request)  # FastAPI never reads it: nothing to bound or parse
            strict = StrictRequest(request.scope, request.receive, request._send)
            strict.body_limit = limit
            if await strict.body() and declares_json(request.headers.get("content-type")):
                await strict.json()
            return await handler(strict)

        return strict_handler


class ImportRoute(StrictRoute):
    """The environment import: a whole environment in one body."""

    body_limit = limits.MAX_IMPORT_BODY_BYTES
