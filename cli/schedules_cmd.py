"""``flagyard schedule``: changes to make at a given time (toggle, configuration, segment, rollback)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from .admin import CommentOption, EnvOption, ProjectOption, connect, group, read_object
from .exceptions import InputError
from .output import Column
from .rest import path

app = group(
    "Scheduled changes: a toggle, configuration change, segment change or rollback applied at a given "
    "time, once, as the key that scheduled it (and only if nothing it changes changed meanwhile)."
)


class Kind(StrEnum):
    TOGGLE = "toggle"
    ENV_CONFIG = "env_config"
    SEGMENT = "segment"
    ROLLBACK = "rollback"
    SEGMENT_ROLLBACK = "segment_rollback"


class Status(StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    FAILED = "failed"
    CANCELLED = "cancelled"


Id = Annotated[int, typer.Argument(help="The scheduled change's id.", show_default=False, min=1)]
At = Annotated[
    str,
    typer.Option(
        "--at",
        help="When: an ISO 8601 time with its offset (2027-01-31T09:00:00+01:00, …Z), or from now: "
        "+90s, +10m, +2h, +3d.",
        show_default=False,
    ),
]
_RELATIVE = re.compile(r"^\+(\d{1,7})([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

COLUMNS: list[Column] = [
    "id",
    "apply_at",
    "status",
    "kind",
    "target",
    ("body", lambda c: orjson.dumps(c["body"]).decode()[:60]),
    "created_by_key_prefix",
    ("result", lambda c: c["applied_version"] or (c["failure"] or {}).get("code")),
]


def parse_time(value: str, now: datetime | None = None) -> str:
    """``--at`` as the RFC 3339 time the API takes; a time without an offset is refused (ambiguous)."""
    match = _RELATIVE.match(value.strip())
    if match:
        amount, unit = match.groups()
        moment = (now or datetime.now(UTC)) + timedelta(**{_UNITS[unit]: int(amount)})
        return moment.isoformat()
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise InputError(f"--at {value!r}: not an ISO 8601 time nor +<n>s|m|h|d") from exc
    if moment.tzinfo is None:
        raise InputError(f"--at {value!r}: give its offset (Z or +01:00), the server's zone is not assumed")
    return moment.isoformat()


def _changes(project: str, env: str, *rest: str | int) -> str:
    return path("projects", project, "environments", env, "scheduled-changes", *rest)


def change_body(
    kind: Kind, file: Path | None, body: str | None, enabled: bool | None, version: int | None
) -> Any:
    given: dict[str, Any] = read_object(file) if file is not None else {}
    if body is not None:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"--body: not valid JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise InputError("--body: expected a JSON object")
        given.update(parsed)
    if enabled is not None:
        given["enabled"] = enabled
    if version is not None:
        given["version"] = version
    if not given:
        raise InputError(f"a {kind} change needs a body: --body, --file, --on/--off or --version")
    return given


@app.command("create")
def create(
    ctx: typer.Context,
    kind: Annotated[Kind, typer.Argument(help="What to change.", show_default=False)],
    target: Annotated[str, typer.Argument(help="The flag's or segment's key.", show_default=False)],
    project: ProjectOption,
    env: EnvOption,
    at: At,
    body: Annotated[
        str | None, typer.Option("--body", help="The change as the direct request's JSON body.")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="The body from a JSON or YAML file.", dir_okay=False),
    ] = None,
    enabled: Annotated[
        bool | None, typer.Option("--on/--off", help="toggle: turn the flag on or off.", show_default=False)
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", help="rollback: the version to restore.", min=1)
    ] = None,
    comment: CommentOption = "",
) -> None:
    """Schedule a change; it is checked now exactly as if it were made now."""
    with connect(ctx) as (rest, out):
        request = {
            "kind": kind.value,
            "target": target,
            "body": change_body(kind, file, body, enabled, version),
            "apply_at": parse_time(at),
            "comment": comment,
        }
        out.record(rest.post(_changes(project, env), request))


@app.command("list")
def list_changes(
    ctx: typer.Context,
    project: ProjectOption,
    env: EnvOption,
    status: Annotated[Status | None, typer.Option(help="Only changes in this state.")] = None,
) -> None:
    """List an environment's scheduled changes, newest first."""
    with connect(ctx) as (rest, out):
        out.table(rest.pages(_changes(project, env), status=status.value if status else None), COLUMNS)


@app.command("show")
def show(ctx: typer.Context, change_id: Id, project: ProjectOption, env: EnvOption) -> None:
    """Show a scheduled change, with why it failed if it did."""
    with connect(ctx) as (rest, out):
        out.record(rest.get(_changes(project, env, change_id)))


@app.command("cancel")
def cancel(ctx: typer.Context, change_id: Id, project: ProjectOption, env: EnvOption) -> None:
    """Cancel a pending change."""
    with connect(ctx) as (rest, out):
        out.record(rest.post(_changes(project, env, change_id, "cancel")))


@app.command("reschedule")
def reschedule(ctx: typer.Context, change_id: Id, project: ProjectOption, env: EnvOption, at: At) -> None:
    """Move a pending change to another time."""
    with connect(ctx) as (rest, out):
        response = rest.request("PATCH", _changes(project, env, change_id), body={"apply_at": parse_time(at)})
        out.record(response.json())
