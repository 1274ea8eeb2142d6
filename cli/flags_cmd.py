"""``flagyard flags``: definitions, per-environment configuration, toggles, versions, diffs, rollbacks."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from flagyard.rule_engine import FlagType

from .admin import CommentOption, EnvOption, NameOption, ProjectOption, connect, group, read_object
from .output import Column, on_off
from .rest import path

app = group("Flags: create, inspect, toggle, set rules, and see or undo every change.")

Key = Annotated[str, typer.Argument(help="The flag's key.", show_default=False)]
BOOLEAN_VARIANTS = {"on": True, "off": False}


class Switch(StrEnum):
    ON = "on"
    OFF = "off"


class Kind(StrEnum):
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


class Archived(StrEnum):
    FALSE = "false"
    TRUE = "true"
    ALL = "all"


OwnerOption = Annotated[
    str | None, typer.Option(help="Who answers for the flag (free text, up to 200 characters).")
]
KindOption = Annotated[
    Kind | None, typer.Option(help="temporary (meant to be removed; the default) or permanent.")
]
RemovalDateOption = Annotated[
    str | None,
    typer.Option("--removal-date", help="When a temporary flag should be gone (YYYY-MM-DD)."),
]


def _enabled(flag: dict[str, Any]) -> str:
    return " ".join(f"{env}:{on_off(on)}" for env, on in sorted(flag["enabled"].items()))


def _default(config: dict[str, Any]) -> Any:
    return "split" if config.get("default_split") else config.get("default_variant")


LIST_COLUMNS: list[Column] = [
    "key",
    "name",
    "type",
    "version",
    ("enabled", _enabled),
    "tags",
    "owner",
    "kind",
    "updated_at",
]
STALE_COLUMNS: list[Column] = [
    "key",
    "owner",
    "removal_date",
    "last_evaluated_at",
    "changed_at",
    ("reasons", lambda f: ", ".join(f["reasons"])),
]
ENV_COLUMNS: list[Column] = [
    "environment",
    ("enabled", lambda c: on_off(c["enabled"])),
    ("default", _default),
    "off_variant",
    ("rules", lambda c: len(c["rules"])),
    ("prerequisites", lambda c: len(c["prerequisites"])),
]


def _fields(record: dict[str, Any]) -> list[Column]:
    """Every field the control plane returns, in its order (so a new field shows without an edit
    here), but the per-environment configurations, which ``show`` prints as a table of their own."""
    return [
        ("enabled", lambda c: on_off(c["enabled"])) if name == "enabled" else name
        for name in record
        if name != "environments"
    ]


VERSION_COLUMNS: list[Column] = ["version", "action", "comment", "author_key_id", "created_at"]
CHANGE_COLUMNS: list[Column] = ["op", "path", "old", "value"]


def _flag_path(project: str, flag: str, *rest: str) -> str:
    return path("projects", project, "flags", flag, *rest)


@app.command("list")
def list_flags(
    ctx: typer.Context,
    project: ProjectOption,
    tag: Annotated[str | None, typer.Option(help="Only flags with this tag.")] = None,
    query: Annotated[str | None, typer.Option("--query", "-q", help="Substring of key or name.")] = None,
    archived: Annotated[
        Archived, typer.Option(help="false: live flags; true: only archived ones; all: both.")
    ] = Archived.FALSE,
) -> None:
    """List a project's flags with whether each is on, per environment."""
    with connect(ctx) as (rest, out):
        items = rest.pages(path("projects", project, "flags"), tag=tag, q=query, archived=archived.value)
        out.table(items, [*LIST_COLUMNS, "archived"] if archived is not Archived.FALSE else LIST_COLUMNS)


@app.command("show")
def show(
    ctx: typer.Context,
    key: Key,
    project: ProjectOption,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment, in full.")] = None,
) -> None:
    """Show a flag's definition and its configuration in every environment (or in one, in full)."""
    with connect(ctx) as (rest, out):
        if env is not None:
            config = rest.get(_flag_path(project, key, "environments", env))
            out.record(config, _fields(config))
            return
        flag = rest.get(_flag_path(project, key))
        if out.json_mode:
            out.data(flag)
            return
        out.record(flag, _fields(flag))
        configs = [{"environment": name, **config} for name, config in sorted(flag["environments"].items())]
        out.table(configs, ENV_COLUMNS, title="environments")


@app.command("create")
def create(
    ctx: typer.Context,
    key: Key,
    project: ProjectOption,
    flag_type: Annotated[FlagType, typer.Option("--type", help="Type of every variant.")] = FlagType.BOOLEAN,
    variants: Annotated[
        str | None,
        typer.Option(help='Variants as a JSON object, e.g. \'{"low": 10, "high": 500}\' (boolean: on/off).'),
    ] = None,
    name: NameOption = None,
    description: Annotated[str, typer.Option(help="What the flag is for.")] = "",
    tags: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeatable).")] = None,
    owner: OwnerOption = None,
    kind: KindOption = None,
    removal_date: RemovalDateOption = None,
    comment: CommentOption = "",
) -> None:
    """Create a flag; it starts off in every environment."""
    if variants is None:
        if flag_type is not FlagType.BOOLEAN:
            raise typer.BadParameter(f"--variants is required for type {flag_type}")
        parsed: Any = BOOLEAN_VARIANTS
    else:
        try:
            parsed = orjson.loads(variants)
        except orjson.JSONDecodeError as exc:
            raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="--variants") from exc
        if not isinstance(parsed, dict):
            raise typer.BadParameter("must be a JSON object of variant name → value", param_hint="--variants")
    body = {
        "key": key,
        "name": name or key,
        "description": description,
        "tags": tags or [],
        "type": flag_type.value,
        "variants": parsed,
        "comment": comment,
        **_lifecycle(owner, kind, removal_date),
    }
    with connect(ctx) as (rest, out):
        flag = rest.post(path("projects", project, "flags"), body)
        out.record(flag, _fields(flag))


def _lifecycle(owner: str | None, kind: Kind | None, removal_date: str | None) -> dict[str, Any]:
    """The lifecycle fields given on the command line (the server checks them)."""
    given = {"owner": owner, "kind": kind.value if kind else None, "removal_date": removal_date}
    return {name: value for name, value in given.items() if value is not None}


@app.command("update")
def update(
    ctx: typer.Context,
    key: Key,
    project: ProjectOption,
    name: NameOption = None,
    description: Annotated[str | None, typer.Option(help="What the flag is for.")] = None,
    tags: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeatable; replaces all).")] = None,
    owner: OwnerOption = None,
    kind: KindOption = None,
    removal_date: RemovalDateOption = None,
    no_removal_date: Annotated[
        bool, typer.Option("--no-removal-date", help="Clear the removal date.")
    ] = False,
    comment: CommentOption = "",
) -> None:
    """Change a flag's name, description, tags, owner, kind or removal date (a new version)."""
    if removal_date is not None and no_removal_date:
        raise typer.BadParameter("give --removal-date or --no-removal-date, not both")
    body: dict[str, Any] = {"comment": comment, **_lifecycle(owner, kind, removal_date)}
    body.update(
        {k: v for k, v in (("name", name), ("description", description), ("tags", tags)) if v is not None}
    )
    if no_removal_date:
        body["removal_date"] = None
    with connect(ctx) as (rest, out):
        flag = rest.update(_flag_path(project, key), body)
        out.record(flag, _fields(flag))


@app.command("archive")
def archive(ctx: typer.Context, key: Key, project: ProjectOption, comment: CommentOption = "") -> None:
    """Archive a flag: SDKs see it as missing, lists hide it; its history stays and unarchive restores it."""
    with connect(ctx) as (rest, out):
        flag = rest.post(_flag_path(project, key, "archive"), {"comment": comment})
        if out.json_mode:
            out.data(flag)
        else:
            out.note(f"archived flag {key} (version {flag['version']})")


@app.command("unarchive")
def unarchive(ctx: typer.Context, key: Key, project: ProjectOption, comment: CommentOption = "") -> None:
    """Serve an archived flag again, as it was, at a new version."""
    with connect(ctx) as (rest, out):
        flag = rest.post(_flag_path(project, key, "unarchive"), {"comment": comment})
        if out.json_mode:
            out.data(flag)
        else:
            out.note(f"unarchived flag {key} (version {flag['version']})")


@app.command("stale")
def stale(
    ctx: typer.Context,
    project: ProjectOption,
    env: EnvOption,
    evaluated_days: Annotated[
        int, typer.Option(min=1, max=3650, help="Not evaluated for this many days (or never).")
    ] = 30,
    changed_days: Annotated[
        int, typer.Option(min=1, max=3650, help="And not changed in the environment for this many days.")
    ] = 30,
) -> None:
    """List an environment's stale temporary flags: unused (not evaluated and not changed for the days
    given) or past their removal date. Permanent and archived flags are never listed."""
    with connect(ctx) as (rest, out):
        items = rest.pages(
            path("projects", project, "environments", env, "flags", "stale"),
            evaluated_days=evaluated_days,
            changed_days=changed_days,
        )
        out.table(items, STALE_COLUMNS)


@app.command("delete")
def delete(ctx: typer.Context, key: Key, project: ProjectOption) -> None:
    """Delete a flag (its versions stay; a re-created key continues above them)."""
    with connect(ctx) as (rest, out):
        rest.remove(_flag_path(project, key))
        out.note(f"deleted flag {key}")


@app.command("toggle")
def toggle(
    ctx: typer.Context,
    key: Key,
    state: Annotated[Switch, typer.Argument(help="on or off.", show_default=False)],
    project: ProjectOption,
    env: EnvOption,
    comment: CommentOption = "",
) -> None:
    """Turn a flag on or off in one environment (the kill switch)."""
    with connect(ctx) as (rest, out):
        body = {"enabled": state is Switch.ON, "comment": comment}
        config = rest.post(_flag_path(project, key, "environments", env, "toggle"), body)
        if out.json_mode:
            out.data(config)
        else:
            out.note(f"{key} is {on_off(config['enabled'])} in {env} (version {config['version']})")


@app.command("set-rules")
def set_rules(
    ctx: typer.Context,
    key: Key,
    file: Annotated[
        Path,
        typer.Argument(
            help="JSON or YAML object: rules, default_variant, default_split, off_variant, "
            "prerequisites, enabled (absent fields keep their value).",
            dir_okay=False,
            show_default=False,
        ),
    ],
    project: ProjectOption,
    env: EnvOption,
    comment: CommentOption = "",
) -> None:
    """Set a flag's configuration in one environment from a file."""
    with connect(ctx) as (rest, out):
        config = read_object(file)
        if comment:
            config["comment"] = comment
        config = rest.update(_flag_path(project, key, "environments", env), config)
        out.record(config, _fields(config))


@app.command("versions")
def versions(ctx: typer.Context, key: Key, project: ProjectOption) -> None:
    """List a flag's versions, newest first."""
    with connect(ctx) as (rest, out):
        out.table(rest.pages(_flag_path(project, key, "versions")), VERSION_COLUMNS)


@app.command("diff")
def diff(
    ctx: typer.Context,
    key: Key,
    project: ProjectOption,
    from_version: Annotated[int, typer.Argument(min=1, help="The older version.", show_default=False)],
    to_version: Annotated[
        int | None, typer.Argument(min=1, help="The newer version (default: the latest).")
    ] = None,
) -> None:
    """Show what changed between two versions of a flag."""
    with connect(ctx) as (rest, out):
        changes = rest.get(_flag_path(project, key, "diff"), **{"from": from_version, "to": to_version})
        if out.json_mode:
            out.data(changes)
            return
        title = f"{key}: version {changes['from_version']} → {changes['to_version']}"
        out.table(changes["changes"], CHANGE_COLUMNS, title=title)


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    key: Key,
    version: Annotated[int, typer.Argument(min=1, help="The version to restore.", show_default=False)],
    project: ProjectOption,
    comment: CommentOption = "",
) -> None:
    """Restore an earlier version of a flag, as a new version."""
    with connect(ctx) as (rest, out):
        body = {"version": version, "comment": comment}
        flag = rest.post(_flag_path(project, key, "rollback"), body)
        if out.json_mode:
            out.data(flag)
        else:
            out.note(f"{key} is back at version {version}'s state, as version {flag['version']}")
