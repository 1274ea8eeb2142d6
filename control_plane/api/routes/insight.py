"""Explain one evaluation and preview the impact of a configuration change, before saving it.

Both are POSTs because they take a body (a context, a proposed configuration, contexts) that does not fit
a query string, but they read only: the reader role suffices, no Idempotency-Key or If-Match applies
(nothing is written that a retry could repeat), and they run as the GETs do (:meth:`RequestContext.read`).
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from flagyard.control_plane import schemas
from flagyard.control_plane.api.body import StrictRoute
from flagyard.control_plane.api.deps import ReadContext
from flagyard.control_plane.api.params import API_PREFIX, ERRORS, EnvKey, FlagKey, ProjectKey
from flagyard.control_plane.schemas import ErrorBody
from flagyard.control_plane.services import insight as ops

router = APIRouter(
    route_class=StrictRoute,
    prefix=API_PREFIX + "/projects/{project}/flags/{flag}/environments/{env}",
    tags=["flags"],
    responses=ERRORS,
)

READ_ONLY_POSTS = ("/explain", "/preview")
"""The path endings of the POSTs that write nothing (the contract tests tell them from writes)."""


@router.post(
    "/explain",
    response_model=schemas.ExplainOut,
    summary="Evaluate a flag for a context as SDKs would here, with the whole decision (writes nothing)",
)
def explain(
    project: ProjectKey, flag: FlagKey, env: EnvKey, body: schemas.ExplainIn, ctx: ReadContext
) -> Response:
    return ctx.read(lambda session, actor: ops.explain(session, actor, project, flag, env, body))


@router.post(
    "/preview",
    response_model=schemas.PreviewOut,
    responses={
        409: {"model": ErrorBody, "description": "The flag is archived (as its PATCH would answer)."},
    },
    summary="How many contexts a proposed configuration would switch to another variant (saves nothing)",
)
def preview(
    project: ProjectKey, flag: FlagKey, env: EnvKey, body: schemas.PreviewIn, ctx: ReadContext
) -> Response:
    state = ctx.state
    return ctx.read(
        lambda session, actor: ops.preview(
            session, actor, state.redis, state.settings.redis_prefix, project, flag, env, body
        )
    )
