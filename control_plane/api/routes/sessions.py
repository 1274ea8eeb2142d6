"""Console sessions: sign in with an API key, read the current session, sign out."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from flagyard.control_plane import schemas
from flagyard.control_plane.api.body import StrictRoute
from flagyard.control_plane.api.deps import SESSIONS_PATH, ReadContext, WriteContext
from flagyard.control_plane.api.params import ERRORS

router = APIRouter(route_class=StrictRoute, prefix=SESSIONS_PATH, tags=["sessions"], responses=ERRORS)


@router.post(
    "",
    status_code=201,
    response_model=schemas.SessionOut,
    summary="Sign in to the console: exchange an API key for a session cookie",
    description="Sets the `flagyard_session` cookie (HttpOnly, SameSite=Strict, Secure over TLS). "
    "The key is checked like a bearer key and never stored; the session acts with its role and scope.",
)
def sign_in(body: schemas.SessionCreate, ctx: WriteContext) -> Response:
    return ctx.sign_in(body.api_key.get_secret_value())


@router.get(
    "/current",
    response_model=schemas.SessionOut,
    summary="The console session of the cookie, with its CSRF token",
)
def current_session(ctx: ReadContext) -> Response:
    return ctx.current_session()


@router.delete("/current", status_code=204, summary="Sign out: end the cookie's session and clear it")
def sign_out(ctx: WriteContext) -> Response:
    return ctx.sign_out()
