"""THE one mapping between database rows and rule-engine models.

The control plane writes through it, and the syncer reads through it: the rule-engine
:class:`~flagyard.rule_engine.Flag` of environment E is the flag's definition (key, type, variants,
salt) plus E's configuration plus E's version of it (the flag version at which what E serves last
changed, so a change in one environment is not a change in the others); a
:class:`~flagyard.rule_engine.Segment` is project-wide and the same in every environment. The fields
themselves are declared once, in :mod:`.fields`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flagyard import rule_engine
from flagyard.db.fields import (
    DEFINITION_FIELDS,
    ENV_CONFIG_FIELDS,
    SEGMENT_FIELDS,
    SERVED_DEFINITION_FIELDS,
    SERVED_SEGMENT_FIELDS,
    default_env_config,
)
from flagyard.db.models import Environment, Flag, FlagEnvironment, Segment

__all__ = ["DEFINITION_FIELDS", "ENV_CONFIG_FIELDS", "SEGMENT_FIELDS", "default_env_config"]


def flag_is_served() -> sa.ColumnElement[bool]:
    """The flags an environment serves: live and not archived. An archived flag is, to Redis, the data
    planes and SDKs, exactly a deleted one (a delete at its archive version; unarchiving puts it back at a
    higher version), so no plane knows of archiving."""
    return sa.and_(Flag.deleted_at.is_(None), Flag.archived.is_(False))


def env_config_dict(row: object) -> dict[str, Any]:
    """An environment's configuration of a flag, from the ORM row or any row with those columns."""
    return {name: getattr(row, name) for name in ENV_CONFIG_FIELDS}


def flag_definition_dict(row: object) -> dict[str, Any]:
    """A flag's definition, from the ORM object or any row with those columns."""
    return {name: getattr(row, name) for name in DEFINITION_FIELDS}


def flag_snapshot(definition: Mapping[str, Any], configs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A version's snapshot: the definition and every environment's configuration, by environment key."""
    snapshot = {name: definition[name] for name in DEFINITION_FIELDS}
    snapshot["environments"] = {env: dict(configs[env]) for env in sorted(configs)}
    return snapshot


def rule_engine_flag_data(
    definition: Mapping[str, Any], config: Mapping[str, Any], version: int
) -> dict[str, Any]:
    """The rule-engine input for one environment (validate it with ``validate_flag``)."""
    data = {name: definition[name] for name in SERVED_DEFINITION_FIELDS}
    data.update({name: config[name] for name in ENV_CONFIG_FIELDS})
    data["version"] = version
    return data


def serves_differently(
    before_definition: Mapping[str, Any],
    before_config: Mapping[str, Any],
    after_definition: Mapping[str, Any],
    after_config: Mapping[str, Any],
) -> bool:
    """Whether an environment serves something else after a change (name, description, tags, owner, kind
    and removal date are not served; archiving and unarchiving serve nothing, then the flag again): only
    then does its version move, is Redis written and do SDKs hear of a change."""
    if before_definition.get("archived", False) != after_definition.get("archived", False):
        return True
    return rule_engine_flag_data(before_definition, before_config, 0) != rule_engine_flag_data(
        after_definition, after_config, 0
    )


def to_rule_engine_flag(row: Flag, config: FlagEnvironment) -> rule_engine.Flag:
    return rule_engine.Flag.model_validate(
        rule_engine_flag_data(flag_definition_dict(row), env_config_dict(config), config.version)
    )


def canonical_env_config(flag: rule_engine.Flag) -> dict[str, Any]:
    """What is stored for a validated flag's environment configuration (defaults filled in)."""
    dumped = flag.model_dump(mode="json", include=set(ENV_CONFIG_FIELDS))
    return {name: dumped[name] for name in ENV_CONFIG_FIELDS}


def segment_dict(row: object) -> dict[str, Any]:
    """A segment's definition, from the ORM object or any row with those columns."""
    return {name: getattr(row, name) for name in SEGMENT_FIELDS}


def rule_engine_segment_data(snapshot: Mapping[str, Any], version: int) -> dict[str, Any]:
    data = {name: snapshot[name] for name in SERVED_SEGMENT_FIELDS}
    data["version"] = version
    return data


def to_rule_engine_segment(row: Segment) -> rule_engine.Segment:
    return rule_engine.Segment.model_validate(rule_engine_segment_data(segment_dict(row), row.version))


def canonical_segment_rules(segment: rule_engine.Segment) -> list[Any]:
    return [rule.model_dump(mode="json") for rule in segment.rules]


def load_flag(session: Session, environment_id: int, key: str) -> rule_engine.Flag | None:
    """The live flag ``key`` as served in an environment, or ``None`` (deleted, archived or never
    existed)."""
    row = session.execute(
        sa.select(Flag, FlagEnvironment)
        .join(FlagEnvironment, FlagEnvironment.flag_id == Flag.id)
        .where(FlagEnvironment.environment_id == environment_id, Flag.key == key, flag_is_served())
    ).first()
    return None if row is None else to_rule_engine_flag(row[0], row[1])


def load_segment(session: Session, environment_id: int, key: str) -> rule_engine.Segment | None:
    """The live segment ``key`` of the environment's project, or ``None``."""
    project_id = sa.select(Environment.project_id).where(Environment.id == environment_id).scalar_subquery()
    row = session.scalars(
        sa.select(Segment).where(
            Segment.project_id == project_id, Segment.key == key, Segment.deleted_at.is_(None)
        )
    ).first()
    return None if row is None else to_rule_engine_segment(row)


def load_environment_document(session: Session, environment_id: int) -> rule_engine.Document:
    """Every served flag (live, not archived) and live segment of an environment as a native document
    (export, full sync)."""
    flags = session.execute(
        sa.select(Flag, FlagEnvironment)
        .join(FlagEnvironment, FlagEnvironment.flag_id == Flag.id)
        .where(FlagEnvironment.environment_id == environment_id, flag_is_served())
        .order_by(Flag.key)
    ).all()
    project_id = sa.select(Environment.project_id).where(Environment.id == environment_id).scalar_subquery()
    segments = session.scalars(
        sa.select(Segment)
        .where(Segment.project_id == project_id, Segment.deleted_at.is_(None))
        .order_by(Segment.key)
    ).all()
    return rule_engine.Document(
        flags=[to_rule_engine_flag(f, c) for f, c in flags],
        segments=[to_rule_engine_segment(s) for s in segments],
    )
