"""Environments of a project."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from flagyard.control_plane import schemas
from flagyard.control_plane.api.body import StrictRoute
from flagyard.control_plane.api.deps import ChangeContext, PostContext, ReadContext
from flagyard.control_plane.api.params import (
    API_PREFIX,
    CHANGE_ERRORS,
    ERRORS,
    WRITE_ERRORS,
    EnvKey,
    KeyCursor,
    Limit,
    ProjectKey,
)
from flagyard.control_plane.services import projects as ops
from flagyard.control_plane.services.lifecycle import DEFAULT_STALE_DAYS, MAX_STALE_DAYS, stale_report
from flagyard.control_plane.services.propagation import read_propagation_state
from flagyard.control_plane.services.usage import read_usage

router = APIRouter(
    route_class=StrictRoute,
    prefix=API_PREFIX + "/projects/{project}/environments",
    tags=["environments"],
    responses=ERRORS,
)


@router.get("", response_model=schemas.Page[schemas.EnvironmentOut], summary="List environments")
def list_environments(project: ProjectKey, ctx: ReadContext) -> Response:
    return ctx.read(lambda session, actor: ops.list_environments(session, actor, project))


@router.post(
    "",
    status_code=201,
    response_model=schemas.EnvironmentOut,
    responses=WRITE_ERRORS,
    summary="Create an environment",
)
def create_environment(project: ProjectKey, body: schemas.EnvironmentCreate, ctx: PostContext) -> Response:
    return ctx.write(lambda tx: ops.create_environment(tx, project, body))


@router.get("/{env}", response_model=schemas.EnvironmentOut, summary="Get an environment")
def get_environment(project: ProjectKey, env: EnvKey, ctx: ReadContext) -> Response:
    return ctx.read(lambda session, actor: ops.read_environment(session, actor, project, env))


@router.patch(
    "/{env}", response_model=schemas.EnvironmentOut, responses=CHANGE_ERRORS, summary="Update an environment"
)
def update_environment(
    project: ProjectKey, env: EnvKey, body: schemas.EnvironmentUpdate, ctx: ChangeContext
) -> Response:
    return ctx.write(lambda tx: ops.update_environment(tx, project, env, body))


@router.delete("/{env}", status_code=204, responses=CHANGE_ERRORS, summary="Delete an environment")
def delete_environment(project: ProjectKey, env: EnvKey, ctx: ChangeContext) -> Response:
    return ctx.write(lambda tx: ops.delete_environment(tx, project, env))


@router.get(
    "/{env}/evaluations",
    response_model=schemas.EnvironmentUsageOut,
    summary="Which flags SDKs evaluate in this environment, and which are stale",
)
def evaluations(project: ProjectKey, env: EnvKey, ctx: ReadContext) -> Response:
    state = ctx.state
    return ctx.read(
        lambda session, actor: read_usage(
            session,
            actor,
            state.redis,
            state.settings.redis_prefix,
            project,
            env,
            state.settings.stale_flag_days,
        )
    )


@router.get(
    "/{env}/propagation",
    response_model=schemas.PropagationOut,
    summary="Whether the last change reached Redis and the data planes",
)
def propagation(project: ProjectKey, env: EnvKey, ctx: ReadContext) -> Response:
    state = ctx.state
    return ctx.read(
        lambda session, actor: read_propagation_state(
            session, actor, state.redis, state.settings.redis_prefix, project, env
        )
    )


StaleDays = Annotated[int, Query(ge=1, le=MAX_STALE_DAYS)]


@router.get(
    "/{env}/flags/stale",
    response_model=schemas.StaleReportOut,
    summary="Temporary flags not evaluated for N days and not changed for M days, or past their removal date",
)
def stale_flags(
    project: ProjectKey,
    env: EnvKey,
    ctx: ReadContext,
    evaluated_days: Annotated[
        StaleDays, Query(description="Not evaluated for this many days (or never).")
    ] = DEFAULT_STALE_DAYS,
    changed_days: Annotated[
        StaleDays, Query(description="And not changed in this environment for this many days.")
    ] = DEFAULT_STALE_DAYS,
    limit: Limit = 50,
    cursor: KeyCursor = None,
) -> Response:
    state = ctx.state
    return ctx.read(
        lambda session, actor: stale_report(
            session,
            actor,
            state.redis,
            state.settings.redis_prefix,
            project,
            env,
            evaluated_days=evaluated_days,
            changed_days=changed_days,
            limit=limit,
            cursor=cursor,
        )
    )
