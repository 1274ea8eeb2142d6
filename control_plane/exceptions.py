"""Errors of the control plane, each carrying its HTTP status, a stable code and optional details.

Everything the API answers with an error body comes from one of these::

    ControlPlaneError                     500 internal_error
    ├── NotFoundError                          404 not_found
    ├── ConflictError                          409 conflict
    │   └── FlagArchivedError                  409 flag_archived       (unarchive the flag first)
    ├── InvalidRequestError                    422 validation_error   (details: one per problem)
    │   └── IdempotencyKeyReusedError          422 idempotency_key_reused
    ├── PreconditionRequiredError              428 precondition_required
    ├── PreconditionFailedError                412 precondition_failed
    ├── AuthenticationError              401 unauthenticated
    ├── PermissionDeniedError                  403 forbidden
    │   └── CsrfError                          403 csrf_failed         (console session without its token)
    ├── RateLimitedError                       429 rate_limited        (retry_after seconds)
    ├── PayloadTooLargeError                   413 payload_too_large
    ├── NotSupportedError                 501 not_implemented
    └── ServiceUnavailableError                503 service_unavailable
        └── DatabaseUnavailableError           503 database_unavailable

    ConfigurationError                    the settings are invalid (at start; never an HTTP answer)
    RefusedDestinationError               a webhook's URL resolves to a refused address (a delivery's error)

Errors of SQLAlchemy, asyncpg, psycopg and redis never leave the layer that talks to them raw: they are
mapped here with ``raise ... from exc`` (see :func:`map_db_error` and :func:`map_driver_error`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg
import sqlalchemy.exc

from flagyard.rule_engine import Issue


@dataclass(frozen=True, slots=True)
class Detail:
    """One problem: ``path`` is a JSON pointer into the request (or the resource), ``message`` says why."""

    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class ControlPlaneError(Exception):
    """Base of every control-plane error; the API renders it as ``{code, message, details}``."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: Sequence[Detail] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)

    def body(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "details": [d.as_dict() for d in self.details]}


class NotFoundError(ControlPlaneError):
    status = 404
    code = "not_found"


class ConflictError(ControlPlaneError):
    status = 409
    code = "conflict"


class FlagArchivedError(ConflictError):
    """A change of an archived flag other than unarchiving or deleting it."""

    code = "flag_archived"


class ApprovalRequiredError(ConflictError):
    """A direct write to an environment with an approval policy: the change must be proposed as a change
    request (``POST …/environments/{env}/change-requests``) and approved first."""

    code = "approval_required"


class RebaseRequiredError(ConflictError):
    """Applying a change request whose target moved, since it was reviewed, in a field it writes: it
    must be rebased (re-recorded against the current state, which clears its approvals), not applied
    blind."""

    code = "rebase_required"


class InvalidRequestError(ControlPlaneError):
    status = 422
    code = "validation_error"

    @classmethod
    def from_issues(
        cls, issues: Iterable[Issue], message: str = "the request is invalid", prefix: str = ""
    ) -> InvalidRequestError:
        return cls(message, [Detail(prefix + i.path, i.message) for i in issues])


class IdempotencyKeyReusedError(InvalidRequestError):
    code = "idempotency_key_reused"


class PreconditionRequiredError(ControlPlaneError):
    status = 428
    code = "precondition_required"


class PreconditionFailedError(ControlPlaneError):
    status = 412
    code = "precondition_failed"


class AuthenticationError(ControlPlaneError):
    status = 401
    code = "unauthenticated"


class PermissionDeniedError(ControlPlaneError):
    status = 403
    code = "forbidden"


class SelfApprovalError(PermissionDeniedError):
    """An approval by the request's author: the same key, a key of the same owner, or a key of the same
    rotation chain."""

    code = "self_approval"


class CsrfError(PermissionDeniedError):
    """A console-session request that changes state without the session's ``X-CSRF-Token``."""

    code = "csrf_failed"


class RateLimitedError(ControlPlaneError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLargeError(ControlPlaneError):
    status = 413
    code = "payload_too_large"


class ConfigurationError(Exception):
    """The settings are invalid. The message names each setting and why, never a value (secrets)."""


class RefusedDestinationError(Exception):
    """A webhook URL resolves to an address deliveries may not go to (recorded as the attempt's error,
    never an HTTP answer)."""


class NotSupportedError(ControlPlaneError):
    status = 501
    code = "not_implemented"


class ServiceUnavailableError(ControlPlaneError):
    status = 503
    code = "service_unavailable"


class DatabaseUnavailableError(ServiceUnavailableError):
    code = "database_unavailable"


def map_db_error(exc: sqlalchemy.exc.SQLAlchemyError, *, writing: bool = True) -> ControlPlaneError:
    """The control-plane error for a database error of SQLAlchemy (raise it ``from exc``); ``writing``
    when it interrupted a change (which the database then rolled back), for the message."""
    outcome = "the change was not applied" if writing else "try again later"
    if isinstance(exc, sqlalchemy.exc.IntegrityError):
        return ConflictError(
            "the change conflicts with existing data (a duplicate key, or a concurrent change)"
        )
    if isinstance(exc, sqlalchemy.exc.DataError):
        return InvalidRequestError("the database rejected a value of the request")
    if is_connection_error(exc):
        if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
            return DatabaseUnavailableError(f"the database connection was lost; {outcome}")
        return DatabaseUnavailableError(f"the database is unavailable; {outcome}")
    return ControlPlaneError("unexpected database error")


def is_connection_error(exc: sqlalchemy.exc.SQLAlchemyError) -> bool:
    """The database could not be reached, or the connection broke (as opposed to refusing a statement)."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc,
        sqlalchemy.exc.OperationalError
        | sqlalchemy.exc.InterfaceError
        | sqlalchemy.exc.TimeoutError
        | sqlalchemy.exc.DisconnectionError,
    )


def commit_outcome_unknown() -> DatabaseUnavailableError:
    """The error for a connection lost while its COMMIT was under way: the database may have applied the
    change or not, and only a read can tell."""
    return DatabaseUnavailableError(
        "the database connection was lost while committing: the change may or may not have been applied; "
        "read the resource before trying again"
    )


def map_driver_error(exc: Exception) -> ControlPlaneError:
    """The control-plane error for an error of asyncpg (or the network under it) on a read."""
    if isinstance(exc, asyncpg.DataError):
        return InvalidRequestError("the database rejected a value of the request")
    if isinstance(exc, asyncpg.PostgresError) and not isinstance(
        exc, asyncpg.QueryCanceledError | asyncpg.OperatorInterventionError | asyncpg.PostgresConnectionError
    ):
        return ControlPlaneError("unexpected database error")
    # Refused, lost or timed out connections, a cancelled statement, a database shutting down.
    return DatabaseUnavailableError("the database is unavailable; try again later")
