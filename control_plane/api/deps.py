"""FastAPI dependencies: the request context through which every route reads or writes."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import sqlalchemy as sa
import structlog
from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.responses import Response

from flagyard.control_plane.api.responses import result_response, to_jsonable
from flagyard.control_plane.db.models import IdempotencyRecord
from flagyard.control_plane.exceptions import (
    AuthenticationError,
    IdempotencyKeyReusedError,
    RateLimitedError,
    map_db_error,
)
from flagyard.control_plane.services.common import Actor, Result, Tx
from flagyard.control_plane.services.keys import authenticate
from flagyard.control_plane.state import AppState

log = structlog.get_logger("flagyard.api")


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.flagyard
    return state


StateDep = Annotated[AppState, Depends(get_state)]


bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer fy_admin_…`")


async def request_fingerprint(request: Request) -> str | None:
    """What identifies a POST for idempotency: method, path, query and body."""
    if request.method != "POST" or "idempotency-key" not in request.headers:
        return None
    body = await request.body()
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.url.path.encode(), request.url.query.encode(), body):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


@dataclass
class RequestContext:
    """Everything a route needs, gathered without I/O on the event loop.

    The route (a plain ``def``, so one worker thread) then calls :meth:`read` or :meth:`write`, which
    open the session, authenticate the key, apply its rate limit and run the operation, all in that
    one thread. Database errors leave as control-plane errors (503 when the database is down).
    """

    state: AppState
    request_state: Any
    credentials: str | None
    method: str
    request_id: str | None
    if_match: str | None
    idempotency_key: str | None
    fingerprint: str | None

    def read(
        self, operation: Callable[[Session, Actor], Result], *, single_statement: bool = False
    ) -> Response:
        """Run a read; ``single_statement`` reads skip the transaction (no BEGIN and ROLLBACK round trips),
        which is only consistent when the operation reads everything it returns in one statement."""
        with self._session(autocommit=single_statement) as session:
            actor = self._authenticate(session)
            return result_response(operation(session, actor))

    def write(self, operation: Callable[[Tx], Result]) -> Response:
        with self._session() as session:
            actor = self._authenticate(session)
            return Writer(self, session, actor).run(operation)

    @contextlib.contextmanager
    def _session(self, *, autocommit: bool = False) -> Iterator[Session]:
        session = self.state.autocommit_sessions() if autocommit else self.state.sessions()
        try:
            yield session
        except sa.exc.SQLAlchemyError as exc:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                session.rollback()
            raise map_db_error(exc) from exc
        finally:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                session.close()

    def _authenticate(self, session: Session) -> Actor:
        """Authenticate the key (401/403), then apply its rate limit (429)."""
        if self.credentials is None:
            raise AuthenticationError("send an API key as 'Authorization: Bearer <key>'")
        actor = authenticate(session, self.credentials, cache=self.state.key_cache)
        self.request_state.key_id = actor.key_id
        try:
            self.state.limiter.check(actor.key_id)
        except RateLimitedError:
            self.state.metrics.rate_limited.inc()
            raise
        return actor


@dataclass
class Writer:
    """Runs one write: idempotency replay, the operation, commit, then outbox dispatch and events."""

    ctx: RequestContext
    session: Session
    actor: Actor

    def run(self, operation: Callable[[Tx], Result]) -> Response:
        s, ctx = self.session, self.ctx
        key = ctx.idempotency_key if ctx.method == "POST" else None
        if key is not None:
            replay = self._replay(key)
            if replay is not None:
                return replay
        tx = Tx(s, self.actor, ctx.request_id, ctx.if_match)
        result = operation(tx)
        if key is not None:
            s.add(
                IdempotencyRecord(
                    api_key_id=self.actor.key_id,
                    idempotency_key=key,
                    fingerprint=ctx.fingerprint or "",
                    status_code=result.status,
                    body=to_jsonable(result.body),
                    headers=result.headers(),
                )
            )
        s.commit()
        if tx.keys_changed:
            ctx.state.key_cache.clear()
        ctx.state.dispatcher.dispatch(tx.messages())
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


async def get_context(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    fingerprint: Annotated[str | None, Depends(request_fingerprint)],
) -> RequestContext:
    return RequestContext(
        state=request.app.state.flagyard,
        request_state=request.state,
        credentials=credentials.credentials if credentials else None,
        method=request.method,
        request_id=getattr(request.state, "request_id", None),
        if_match=None,
        idempotency_key=None,
        fingerprint=fingerprint,
    )


async def get_write_context(
    ctx: Annotated[RequestContext, Depends(get_context)],
    if_match: Annotated[
        str | None,
        Header(
            max_length=1024, description="The ETag the change is based on (required on PATCH and DELETE)."
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="On POST: a retry with the same key returns the first result, never a duplicate.",
        ),
    ] = None,
) -> RequestContext:
    ctx.if_match = if_match
    ctx.idempotency_key = idempotency_key
    return ctx


ReadContext = Annotated[RequestContext, Depends(get_context)]
WriteContext = Annotated[RequestContext, Depends(get_write_context)]
