"""Bulk export and import of one environment's flags and segments (native or flagd format).

An import is validated as a whole first (the document merged with what the project already has, and
every other environment of every changed flag); only then is it applied, in one transaction.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from sqlalchemy.orm import Session

from flagyard import rule_engine
from flagyard.control_plane.db import flags as flag_repo
from flagyard.control_plane.db import segments as segment_repo
from flagyard.control_plane.db.deferred import Owner
from flagyard.control_plane.exceptions import Detail, InvalidRequestError, NotSupportedError
from flagyard.control_plane.security import Role, new_salt
from flagyard.control_plane.services import flags as flag_ops
from flagyard.control_plane.services.common import (
    Actor,
    Result,
    Tx,
    environments_of,
    get_environment,
    get_project,
    invalid,
)
from flagyard.db import fields
from flagyard.db import mapping as m
from flagyard.db.models import Environment, Project
from flagyard.rule_engine import DefinitionError, Issue, limits, validate_document
from flagyard.rule_engine.validation import pointer


def _flagd() -> ModuleType:
    try:
        return importlib.import_module("flagyard.rule_engine.flagd")
    except ImportError as exc:
        raise NotSupportedError("flagd format support is not available in this build") from exc


def export_environment(session: Session, actor: Actor, project_key: str, env_key: str, fmt: str) -> Result:
    actor.require(Role.READER)
    project = get_project(session, actor, project_key)
    env = get_environment(session, project, env_key)
    document = m.load_environment_document(session, env.id)
    document = document.model_copy(update={"metadata": {"project": project.key, "environment": env.key}})
    if fmt == "flagd":
        try:
            return Result(_flagd().export_flagd(document))
        except DefinitionError as exc:
            raise invalid(exc.issues, message="the environment uses what flagd cannot express") from exc
    return Result(document.model_dump(mode="json"))


def _flagd_type(variants: dict[str, Any]) -> str:
    values = list(variants.values())
    if all(type(v) is bool for v in values):
        return "boolean"
    if all(type(v) is str for v in values):
        return "string"
    if all(type(v) is int for v in values):
        return "integer"
    if all(type(v) in (int, float) for v in values):
        return "float"
    return "object"


def flagd_to_native(data: Any) -> dict[str, Any]:
    """A flagd document as a native one: variants, ``defaultVariant``, ``state`` and ``targeting``, which
    becomes the flag's native JsonLogic targeting with the ``$evaluators`` it refers to inlined (a
    native ``$ref`` names a segment). Set and flag metadata are not kept. Refused with every problem's
    pointer unless the whole document is valid flagd."""
    flagd = _flagd()
    try:
        flagd.validate_flagd(data)
    except DefinitionError as exc:
        raise invalid(exc.issues, message="not a valid flagd document") from exc
    evaluators = data.get("$evaluators") or {}
    flags = []
    for key, raw in data["flags"].items():
        variants = dict(raw["variants"])
        targeting = raw.get("targeting") or None
        flags.append(
            {
                "key": key,
                "type": _flagd_type(variants),
                "variants": variants,
                "enabled": raw.get("state", "ENABLED") == "ENABLED",
                "default_variant": raw.get("defaultVariant"),
                "targeting": None if targeting is None else flagd.inline_evaluators(targeting, evaluators),
            }
        )
    return {"flags": flags, "segments": []}


def _to_native(data: Any, fmt: str) -> dict[str, Any]:
    if fmt == "flagd":
        return flagd_to_native(data)
    if not isinstance(data, dict):
        raise invalid([Issue("", "a native document is a JSON object with 'flags' and 'segments' lists")])
    return data


def import_environment(tx: Tx, project_key: str, env_key: str, data: Any, fmt: str) -> Result:
    tx.actor.require(Role.WRITER)
    s = tx.session
    project = get_project(s, tx.actor, project_key, lock=True)
    env = get_environment(s, project, env_key)
    doc = _to_native(data, fmt)
    raw_flags, raw_segments = doc.get("flags", []), doc.get("segments", [])
    if not isinstance(raw_flags, list) or not isinstance(raw_segments, list):
        # Let the rule engine describe the shape problem.
        _validate(doc)
    # Every live flag locked before the environment is read for validation: a flag write committing in
    # between (A -> B while this imports B -> A) would otherwise escape the prerequisite-cycle check.
    existing = flag_repo.lock_all(s, project.id)
    archived = {k for k, row in existing.items() if row.definition["archived"]}
    refused = [
        Issue(f"/flags/{i}", f"flag '{f['key']}' is archived; unarchive it first")
        for i, f in enumerate(raw_flags)
        if isinstance(f, dict) and f.get("key") in archived
    ]
    if refused:
        raise invalid(refused, message="the import is invalid; nothing was applied")
    try:
        document = _validate_merged(s, project, env, doc, raw_flags, raw_segments, len(archived))
    except InvalidRequestError as exc:
        if fmt == "flagd":
            exc.details = [_flagd_pointer(d, raw_flags) for d in exc.details]
        raise
    n_flags, n_segments = len(raw_flags), len(raw_segments)
    imported_flags = document.flags[:n_flags]
    imported_segments = document.segments[:n_segments]

    envs = environments_of(s, project.id)
    plans: list[tuple[rule_engine.Flag, flag_repo.LockedFlag | None, dict[str, dict[str, Any]]]] = []
    issues: list[Issue] = []
    for i, flag in enumerate(imported_flags):
        row = existing.get(flag.key)
        target_config = m.canonical_env_config(flag)
        definition = _definition(flag, row)
        if row is None:
            configs = {e.key: (target_config if e.id == env.id else m.default_env_config()) for e in envs}
            plans.append((flag, None, configs))
            continue
        current = row.configs()
        configs = {**current, env.key: target_config}
        if (
            definition["type"] != row.definition["type"]
            or definition["variants"] != row.definition["variants"]
        ):
            others = {
                k: (e.environment_id, e.config)
                for k, e in row.environments.items()
                if e.environment_id != env.id
            }
            try:
                validated = flag_ops.validate_all_envs(s, project.id, definition, others, row.version + 1)
                configs.update(validated)
                flag_ops.check_dependents(s, project.id, flag.key, definition["variants"])
            except InvalidRequestError as exc:
                issues += [
                    Issue(f"/flags/{i}{d.path}", f"in other environments: {d.message}") for d in exc.details
                ]
        plans.append((flag, row, configs))
    if issues:
        raise invalid(issues, message="the import is invalid; nothing was applied")

    summary: dict[str, list[str]] = {
        k: []
        for k in (
            "created",
            "updated",
            "unchanged",
            "segments_created",
            "segments_updated",
            "segments_unchanged",
        )
    }
    _apply_segments(tx, project, imported_segments, summary)
    for flag, row, configs in plans:
        _apply_flag(tx, project, envs, env, flag, row, configs, summary)
    return Result(summary)


def _validate(doc: Any) -> rule_engine.Document:
    try:
        return validate_document(doc)
    except DefinitionError as exc:
        raise invalid(exc.issues, message="the import is invalid; nothing was applied") from exc


def _validate_merged(
    s: Session,
    project: Project,
    env: Environment,
    doc: dict[str, Any],
    raw_flags: list[Any],
    raw_segments: list[Any],
    archived: int,
) -> rule_engine.Document:
    """Validate the document together with the environment's other flags and segments (appended after
    the document's own, so issue paths into the document stay right); the ``archived`` flags, served
    nowhere, still count toward the project's bound."""
    current = m.load_environment_document(s, env.id)
    doc_flag_keys = {f.get("key") for f in raw_flags if isinstance(f, dict)}
    doc_segment_keys = {x.get("key") for x in raw_segments if isinstance(x, dict)}
    kept_flags = [f.model_dump(mode="json") for f in current.flags if f.key not in doc_flag_keys]
    kept_segments = [x.model_dump(mode="json") for x in current.segments if x.key not in doc_segment_keys]
    _check_counts(raw_flags, kept_flags, raw_segments, kept_segments, archived)
    merged = {**doc, "flags": [*raw_flags, *kept_flags], "segments": [*raw_segments, *kept_segments]}
    try:
        return validate_document(merged)
    except DefinitionError as exc:
        issues = [
            _rewrite(i, len(raw_flags), len(raw_segments), kept_flags, kept_segments) for i in exc.issues
        ]
        raise invalid(issues, message="the import is invalid; nothing was applied") from exc


def _flagd_pointer(detail: Detail, raw_flags: list[Any]) -> Detail:
    """A problem of the native form of a flagd document, pointing into the flagd document instead."""
    parts = detail.path.split("/")
    if len(parts) > 2 and parts[1] == "flags" and parts[2].isdigit() and int(parts[2]) < len(raw_flags):
        key = raw_flags[int(parts[2])]["key"]
        return Detail("/".join(["", "flags", pointer(key)[1:], *parts[3:]]), detail.message)
    return detail


def _check_counts(
    raw_flags: list[Any],
    kept_flags: list[Any],
    raw_segments: list[Any],
    kept_segments: list[Any],
    archived_flags: int = 0,
) -> None:
    """The environment after the import within the per-environment counts (the import's one place for
    them; single creations check with :func:`~.common.ensure_room`)."""
    issues = []
    for what, raw, n_kept, limit in (
        ("flags", raw_flags, len(kept_flags) + archived_flags, limits.MAX_FLAGS_PER_ENVIRONMENT),
        ("segments", raw_segments, len(kept_segments), limits.MAX_SEGMENTS_PER_ENVIRONMENT),
    ):
        if len(raw) + n_kept > limit:
            issues.append(
                Issue(
                    f"/{what}",
                    f"the environment would hold {len(raw) + n_kept} {what} ({len(raw)} imported, "
                    f"{n_kept} kept); at most {limit} (limits.MAX_{what.upper()}_PER_ENVIRONMENT)",
                )
            )
    if issues:
        raise invalid(issues, message="the import is invalid; nothing was applied")


def _rewrite(
    issue: Issue, n_flags: int, n_segments: int, kept_flags: list[Any], kept_segments: list[Any]
) -> Issue:
    parts = issue.path.split("/")
    if len(parts) > 2 and parts[1] in ("flags", "segments") and parts[2].isdigit():
        index = int(parts[2])
        n, kept = (n_flags, kept_flags) if parts[1] == "flags" else (n_segments, kept_segments)
        if index >= n:
            what = parts[1][:-1]
            return Issue(
                "",
                f"existing {what} '{kept[index - n]['key']}' would break: "
                f"{'/'.join(parts[3:]) or '/'}: {issue.message}",
            )
    return issue


def _definition(flag: rule_engine.Flag, row: flag_repo.LockedFlag | None) -> dict[str, Any]:
    """What an import makes of a flag's definition: the document sets type and variants; the rest is
    kept from the stored flag, or for a new one the key as name, the document's salt (or a new one) and
    every other field's declared default."""
    imported = {"key": flag.key, "type": flag.type.value, "variants": flag.variants}
    if row is not None:
        return {**row.definition, **imported}
    return fields.complete(
        fields.FLAG_DEFINITION, {**imported, "name": flag.key, "salt": flag.salt or new_salt()}
    )


def _apply_flag(
    tx: Tx,
    project: Project,
    envs: list[Environment],
    env: Environment,
    flag: rule_engine.Flag,
    row: flag_repo.LockedFlag | None,
    configs: dict[str, dict[str, Any]],
    summary: dict[str, list[str]],
) -> None:
    s = tx.session
    definition = _definition(flag, row)
    comment = f"import into {env.key}"
    if row is None:
        version = flag_repo.next_version(s, project.id, flag.key)
        owner = Owner(project.id, project.key)
        configured = {e.key: (e.id, configs[e.key]) for e in envs}
        flag_repo.create(tx, owner, definition, configured, version, "imported", comment, environment=env.key)
        summary["created"].append(flag.key)
    elif definition == row.definition and configs == row.configs():
        summary["unchanged"].append(flag.key)
    else:
        flag_repo.record_change(tx, row, definition, configs, "imported", comment, environment=env.key)
        summary["updated"].append(flag.key)


def _apply_segments(
    tx: Tx, project: Project, segments: list[rule_engine.Segment], summary: dict[str, list[str]]
) -> None:
    s = tx.session
    existing = segment_repo.lock_all(s, project.id)
    owner = Owner(project.id, project.key)
    for segment in segments:
        row = existing.get(segment.key)
        content = {
            "included": list(segment.included),
            "excluded": list(segment.excluded),
            "rules": m.canonical_segment_rules(segment),
        }
        if row is None:
            definition = fields.complete(fields.SEGMENT, {"key": segment.key, "name": segment.key, **content})
            version = segment_repo.next_version(s, project.id, segment.key)
            segment_repo.create(tx, owner, definition, version, "imported", "import")
            summary["segments_created"].append(segment.key)
        elif {**row.definition, **content} == row.definition:
            summary["segments_unchanged"].append(segment.key)
        else:
            segment_repo.record_change(tx, row, {**row.definition, **content}, "imported", "import")
            summary["segments_updated"].append(segment.key)
