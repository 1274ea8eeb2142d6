"""FastAPI dependencies: the request context through which every route reads or writes."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import sqlalchemy as sa
import structlog
from fastapi import Depends, FastAPI, Header, Request
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from flagyard.control_plane.api.params import API_PREFIX
from flagyard.control_plane.api.responses import result_response, to_jsonable
from flagyard.control_plane.db.reads import ReadPool
from flagyard.control_plane.exceptions import (
    AuthenticationError,
    IdempotencyKeyReusedError,
    RateLimitedError,
    commit_outcome_unknown,
    is_connection_error,
    map_db_error,
)
from flagyard.control_plane.services import sessions
from flagyard.control_plane.services.common import Actor, Result, Tx
from flagyard.control_plane.services.keys import authenticate, cached_actor
from flagyard.control_plane.state import AppState
from flagyard.db.models import IdempotencyRecord

log = structlog.get_logger("flagyard.api")


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.flagyard
    return state


StateDep = Annotated[AppState, Depends(get_state)]


BEARER_SCHEME = "HTTPBearer"
"""The OpenAPI security scheme of every /api/v1 route (see :func:`declare_bearer_scheme`)."""
SESSION_SCHEME = "ConsoleSession"
"""The other one: the console's session cookie."""
SESSIONS_PATH = API_PREFIX + "/sessions"
"""Sign-in: the one /api/v1 operation that takes no credentials (the key is in its body)."""


def bearer_token(request: Request) -> str | None:
    """The key of ``Authorization: Bearer <key>``, as :class:`~fastapi.security.HTTPBearer` reads it.

    Read here rather than by an ``HTTPBearer`` dependency: each dependency costs every request, and
    the scheme is declared in the OpenAPI document once instead.
    """
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    return token if scheme.lower() == "bearer" and token else None


def declare_bearer_scheme(app: FastAPI) -> None:
    """Publish the bearer scheme in the OpenAPI document, on every operation under /api/v1."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[BEARER_SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `Authorization: Bearer fy_admin_…`",
        }
        schemes[SESSION_SCHEME] = {
            "type": "apiKey",
            "in": "cookie",
            "name": sessions.COOKIE,
            "description": "A console session (`POST /api/v1/sessions`); a change made with it also "
            f"needs the session's `csrf_token` in `{sessions.CSRF_HEADER}`.",
        }
        for path, operations in schema.get("paths", {}).items():
            if path == SESSIONS_PATH:
                continue
            if path.startswith(API_PREFIX + "/"):
                for operation in operations.values():
                    operation["security"] = [{BEARER_SCHEME: []}, {SESSION_SCHEME: []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


async def request_fingerprint(request: Request) -> str:
    """What identifies a POST for idempotency: method, path, query and body."""
    body = await request.body()
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.url.path.encode(), request.url.query.encode(), body):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


class IdempotencyPruner:
    """Deletes expired idempotency records from the write path, a bounded batch at a time.

    A write that stores a record prunes at most :attr:`batch` expired ones in its transaction (``SKIP
    LOCKED``: never waiting), at most once per :attr:`interval` seconds per process, or at once again while
    a full batch shows more are waiting; so the table holds about one TTL of records whatever the rate.
    """

    def __init__(self, ttl_seconds: int, batch: int = 500, interval: float = 60.0) -> None:
        self.ttl_seconds = ttl_seconds
        self.batch = batch
        self.interval = interval
        self._next = 0.0
        self._lock = threading.Lock()

    def maybe_prune(self, session: Session) -> int:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                return 0
            self._next = now + self.interval
        pruned = prune_idempotency_records(session, self.ttl_seconds, self.batch)
        if pruned >= self.batch:
            with self._lock:
                self._next = 0.0
        return pruned


_PRUNE = sa.text(
    "DELETE FROM idempotency_records WHERE (api_key_id, idempotency_key) IN ("
    " SELECT api_key_id, idempotency_key FROM idempotency_records"
    " WHERE created_at < now() - make_interval(secs => :ttl)"
    " ORDER BY created_at LIMIT :batch FOR UPDATE SKIP LOCKED)"
)


def prune_idempotency_records(session: Session, ttl_seconds: int, batch: int) -> int:
    """Delete up to ``batch`` records older than the TTL (oldest first); how many were deleted."""
    result = session.execute(_PRUNE, {"ttl": ttl_seconds, "batch": batch})
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass
class RequestContext:
    """Everything a route needs, gathered without I/O on the event loop.

    A plain ``def`` route (so one worker thread) then calls :meth:`read` or :meth:`write`, which open the
    session, authenticate the key, apply its rate limit and run the operation, all in that one thread;
    an ``async def`` route calls :meth:`read_async`, which does the same on the event loop. Database
    errors leave as control-plane errors (503 when the database is down).
    """

    state: AppState
    request_state: Any
    credentials: str | None
    client: str | None
    """The client's address (behind a proxy: run uvicorn with --proxy-headers so it is the real one)."""
    request_id: str | None
    if_match: str | None
    idempotency_key: str | None
    fingerprint: str | None
    pruner: IdempotencyPruner | None = None
    session_token: str | None = None
    """The console session's cookie, used only when no ``Authorization`` header is sent."""
    csrf: str | None = None
    method: str = "GET"
    tls: bool = False

    def read(self, operation: Callable[[Session, Actor], Result]) -> Response:
        with self._session(writing=False) as session:
            actor = self._authenticate(session)
            self._limit(actor)
            return result_response(operation(session, actor))

    async def read_async(self, operation: Callable[[ReadPool, Actor], Awaitable[Result]]) -> Response:
        """Run a read of single statements (:class:`ReadPool`) on the event loop, for ``async def``
        routes: no worker thread, unless the key is not in the authentication cache."""
        try:
            try:
                actor = self._cached_actor()
                if actor is None:
                    self.state.limiter.check_address(self.client)
                    actor = await run_in_threadpool(self._look_up_actor)
            except AuthenticationError:
                await self.state.limiter.fail_auth_async(self.client)
                raise
            self.request_state.key_id = actor.key_id
            await self.state.limiter.check_async(actor.key_id)
        except RateLimitedError:
            self.state.metrics.rate_limited.inc()
            raise
        return result_response(await operation(self.state.reads, actor))

    def write(self, operation: Callable[[Tx], Result]) -> Response:
        with self._session() as session:
            actor = self._authenticate(session)
            self._limit(actor)
            return Writer(self, session, actor).run(operation)

    @contextlib.contextmanager
    def _session(self, *, autocommit: bool = False, writing: bool = True) -> Iterator[Session]:
        session = self.state.autocommit_sessions() if autocommit else self.state.sessions()
        try:
            yield session
        except sa.exc.SQLAlchemyError as exc:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                session.rollback()
            raise map_db_error(exc, writing=writing) from exc
        finally:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                session.close()

    def sign_in(self, api_key: str) -> Response:
        """Exchange an API key for a console session: its cookie, and its body (with the CSRF token)."""
        self.credentials, self.session_token = api_key, None
        settings = self.state.settings
        with self._session() as session:
            actor = self._authenticate(session)
            self._limit(actor)
            token, info = sessions.create_session(session, actor, settings.session_ttl_seconds)
            session.commit()
        log.info("session.created", actor_key_id=actor.key_id, expires_at=info.expires_at.isoformat())
        response = result_response(Result(sessions.session_body(info, token), 201))
        response.set_cookie(
            sessions.COOKIE,
            token,
            max_age=max(1, int((info.expires_at - datetime.now(UTC)).total_seconds())),
            path="/",
            secure=settings.session_cookie_secure or self.tls,
            httponly=True,
            samesite="strict",
        )
        return response

    def current_session(self) -> Response:
        """The console session of the request's cookie (401 without one)."""
        token = self._session_cookie()
        with self._session(writing=False) as session:
            try:
                try:
                    self.state.limiter.check_address(self.client)
                    info = sessions.look_up(session, token)
                except AuthenticationError:
                    self.state.limiter.fail_auth(self.client)
                    raise
            except RateLimitedError:
                self.state.metrics.rate_limited.inc()
                raise
        self.request_state.key_id = info.actor.key_id
        return result_response(Result(sessions.session_body(info, token)))

    def sign_out(self) -> Response:
        """End the cookie's session (idempotent) and clear the cookie; needs the CSRF token."""
        token = self._session_cookie()
        sessions.check_csrf(self.method, token, self.csrf)
        with self._session() as session:
            sessions.end_session(session, token)
            session.commit()
        self.state.key_cache.clear()
        log.info("session.ended")
        response = Response(status_code=204)
        response.delete_cookie(
            sessions.COOKIE,
            path="/",
            secure=self.state.settings.session_cookie_secure or self.tls,
            httponly=True,
            samesite="strict",
        )
        return response

    def _session_cookie(self) -> str:
        if self.session_token is None:
            raise AuthenticationError("no console session: sign in with POST /api/v1/sessions")
        return self.session_token

    def _cached_actor(self) -> Actor | None:
        """The actor of the request's key, or of its console session (whose state changes must carry
        the session's CSRF token), when this process authenticated it recently; else ``None``."""
        if self.credentials is not None:
            return cached_actor(self.credentials, self.state.key_cache)
        if self.session_token is not None:
            sessions.check_csrf(self.method, self.session_token, self.csrf)
            return sessions.cached_session_actor(self.session_token, self.state.key_cache)
        raise AuthenticationError(
            "send an API key as 'Authorization: Bearer <key>' (or sign in to the console)"
        )

    def _look_up(self, session: Session) -> Actor:
        if self.credentials is not None:
            return authenticate(session, self.credentials, cache=self.state.key_cache)
        assert self.session_token is not None  # _cached_actor ran first
        return sessions.authenticate_session(session, self.session_token, cache=self.state.key_cache)

    def _authenticate(self, session: Session) -> Actor:
        """The key's actor (401/403). A failure counts against the client's address, and an address over
        its failure limit is answered 429 (a key this process authenticated recently still passes)."""
        try:
            try:
                actor = self._cached_actor()
                if actor is None:
                    self.state.limiter.check_address(self.client)
                    actor = self._look_up(session)
            except AuthenticationError:
                self.state.limiter.fail_auth(self.client)
                raise
        except RateLimitedError:
            self.state.metrics.rate_limited.inc()
            raise
        self.request_state.key_id = actor.key_id
        return actor

    def _look_up_actor(self) -> Actor:
        with self._session(autocommit=True, writing=False) as session:
            return self._look_up(session)

    def _limit(self, actor: Actor) -> None:
        """The key's rate limit (429)."""
        try:
            self.state.limiter.check(actor.key_id)
        except RateLimitedError:
            self.state.metrics.rate_limited.inc()
            raise


@dataclass
class Writer:
    """Runs one write: idempotency replay, the operation, commit, then outbox dispatch and events."""

    ctx: RequestContext
    session: Session
    actor: Actor

    def run(self, operation: Callable[[Tx], Result]) -> Response:
        s, ctx = self.session, self.ctx
        key = ctx.idempotency_key
        if key is not None:
            replay = self._replay(key)
            if replay is not None:
                return replay
        tx = Tx(s, self.actor, ctx.request_id, ctx.if_match)
        result = operation(tx)
        if key is not None:
            stored = result.replay or result  # a secret (a new key's) is never stored
            s.add(
                IdempotencyRecord(
                    api_key_id=self.actor.key_id,
                    idempotency_key=key,
                    fingerprint=ctx.fingerprint or "",
                    status_code=stored.status,
                    body=to_jsonable(stored.body),
                    headers=stored.headers(),
                )
            )
            if ctx.pruner is not None:
                ctx.pruner.maybe_prune(s)
        tx.run_deferred()
        s.flush()
        try:
            s.commit()  # nothing left to send but COMMIT itself
        except sa.exc.SQLAlchemyError as exc:
            if is_connection_error(exc):
                raise commit_outcome_unknown() from exc
            raise
        if tx.keys_changed:
            ctx.state.key_cache.clear()
        ctx.state.dispatcher.dispatch(tx.messages())
        if tx.webhooks_raised and ctx.state.webhooks is not None:
            ctx.state.webhooks.wake()
        for event, fields in tx.events:
            log.info(event, actor_key_id=self.actor.key_id, **fields)
        return result_response(result)

    def _replay(self, key: str) -> Response | None:
        s = self.session
        lock = int.from_bytes(
            hashlib.sha256(f"{self.actor.key_id}:{key}".encode()).digest()[:8], "big", signed=True
        )
        # Serialises concurrent retries of one key: the second waits for the first to commit, then replays.
        s.execute(sa.select(sa.func.pg_advisory_xact_lock(lock)))
        record = s.get(IdempotencyRecord, (self.actor.key_id, key))
        if record is None:
            return None
        ttl = timedelta(seconds=self.ctx.state.settings.idempotency_ttl_seconds)
        if record.created_at < datetime.now(UTC) - ttl:
            s.delete(record)
            s.flush()
            return None
        if record.fingerprint != self.ctx.fingerprint:
            raise IdempotencyKeyReusedError("this Idempotency-Key was used for a different request")
        s.rollback()
        result = Result(record.body, record.status_code)
        headers = {str(k): str(v) for k, v in record.headers.items()}
        return result_response(result, {**headers, "Idempotent-Replayed": "true"})


async def get_context(request: Request) -> RequestContext:
    credentials = bearer_token(request)
    return RequestContext(
        state=request.app.state.flagyard,
        request_state=request.state,
        credentials=credentials,
        client=request.client.host if request.client else None,
        request_id=getattr(request.state, "request_id", None),
        if_match=None,
        idempotency_key=None,
        fingerprint=None,
        session_token=request.cookies.get(sessions.COOKIE) if credentials is None else None,
        csrf=request.headers.get(sessions.CSRF_HEADER),
        method=request.method,
        tls=request.url.scheme == "https",
    )


IfMatch = Annotated[
    str | None,
    Header(
        max_length=1024,
        description="The ETag the change is based on: PATCH and DELETE need it, toggle and rollback check "
        "it when sent.",
    ),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="A retry with the same key returns the first result (`Idempotent-Replayed: true`), "
        "never a duplicate.",
    ),
]


async def get_change_context(request: Request, if_match: IfMatch = None) -> RequestContext:
    """A PATCH or DELETE of a versioned resource: it takes If-Match, no Idempotency-Key, since a repeat
    meets a stale If-Match or a resource already gone."""
    ctx = await get_context(request)
    ctx.if_match = if_match
    return ctx


async def get_post_context(request: Request, idempotency_key: IdempotencyKey = None) -> RequestContext:
    """A POST: its retry could repeat it, so it honours Idempotency-Key through the idempotency store."""
    ctx = await get_context(request)
    if idempotency_key is not None:
        ctx.idempotency_key = idempotency_key
        ctx.fingerprint = await request_fingerprint(request)
        ctx.pruner = getattr(request.app.state, "idempotency_pruner", None)
    return ctx


async def get_post_change_context(
    request: Request, if_match: IfMatch = None, idempotency_key: IdempotencyKey = None
) -> RequestContext:
    """A POST that changes a versioned resource (toggle, rollback): Idempotency-Key, and If-Match
    checked when sent."""
    # One dependency, not a tree of them: FastAPI's cost grows with each dependency it solves.
    ctx = await get_post_context(request, idempotency_key)
    ctx.if_match = if_match
    return ctx


ReadContext = Annotated[RequestContext, Depends(get_context)]
WriteContext = Annotated[RequestContext, Depends(get_context)]
"""A write that takes neither If-Match nor Idempotency-Key (revoking a key): each header is declared,
and so published, only where the write honours it."""
ChangeContext = Annotated[RequestContext, Depends(get_change_context)]
PostContext = Annotated[RequestContext, Depends(get_post_context)]
PostChangeContext = Annotated[RequestContext, Depends(get_post_change_context)]
