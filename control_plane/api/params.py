"""Path and query parameters shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from flagyard.control_plane.schemas import ErrorBody
from flagyard.rule_engine.model import KEY_PATTERN

API_PREFIX = "/api/v1"
"""Every admin route is under it (the API's major version)."""

ProjectKey = Annotated[str, Path(pattern=KEY_PATTERN, description="The project's key.")]
EnvKey = Annotated[str, Path(pattern=KEY_PATTERN, description="The environment's key.")]
FlagKey = Annotated[str, Path(pattern=KEY_PATTERN, description="The flag's key.")]
SegmentKey = Annotated[str, Path(pattern=KEY_PATTERN, description="The segment's key.")]
VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1, description="A version number.")]
KeyId = Annotated[int, Path(ge=1, le=2**62, description="The key's id.")]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size.")]
KeyCursor = Annotated[str | None, Query(max_length=128, description="`next_cursor` of the previous page.")]
IntCursor = Annotated[int | None, Query(ge=0, le=2**62, description="`next_cursor` of the previous page.")]

ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        401: "Missing, unknown, expired or revoked key.",
        403: "The key's role or project scope does not allow this.",
        404: "No such resource.",
        422: "Invalid request: one detail per problem, with a JSON pointer.",
        429: "Rate limited; see Retry-After.",
        503: "The database is unavailable; nothing was changed.",
    }.items()
}
WRITE_ERRORS: dict[int | str, dict[str, object]] = {
    **ERRORS,
    409: {"model": ErrorBody, "description": "ConflictError: a duplicate key, or the resource is in use."},
}
MATCHED_WRITE_ERRORS: dict[int | str, dict[str, object]] = {
    **WRITE_ERRORS,
    412: {"model": ErrorBody, "description": "If-Match does not match the current ETag."},
}
"""A write that checks If-Match when it is sent (toggle, rollback)."""
CHANGE_ERRORS: dict[int | str, dict[str, object]] = {
    **MATCHED_WRITE_ERRORS,
    428: {"model": ErrorBody, "description": "If-Match is required."},
}
"""A PATCH or DELETE of a versioned resource: If-Match required."""
