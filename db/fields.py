"""THE declaration of a flag's and a segment's fields: every field list of the write path derives from it.

A flag is a project-wide definition plus one configuration per environment; a segment is one
definition. The locked reads, the deferred write templates, the API's read statements, the create and
import definitions, the rollback of an old snapshot and the explicit-null checks all take their fields
from here (``tests/control_plane/test_cp_fields.py`` checks they equal these and the ORM columns), so
adding a field is: declare it here, add its column (model and migration) and its API schema
(``docs/adding-a-field.md``).

Each field has the value a snapshot recorded before the field existed reads as (``default``): versions
are immutable, so rolling back to one of them must fill what it lacks rather than fail. A field added
later must therefore have a default.

Pure (no SQLAlchemy): the row mapping, the repositories and the tests import it alike.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()
"""The default of a field every stored version has had since the first schema: no fallback exists."""


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    default: Any = REQUIRED
    """What a snapshot without the field reads as (a JSON value, copied on use)."""
    nullable: bool = False
    """Whether ``null`` is a value; a PATCH sending ``null`` for a non-nullable field is a 422."""
    editable: bool = True
    """Whether an update or rollback may change it (a flag's key and salt never change)."""
    served: bool = False
    """Whether it is part of the rule-engine model, so changing it changes what environments serve
    (every environment-configuration field is)."""
    listed: bool = False
    """Whether a page of flags shows it."""
    in_body: bool = True
    """Whether a create or update body may set it. A field that is not is changed only by its own
    operation (``archived``: archive and unarchive) or never (``salt``), and a rollback keeps its current
    value rather than the old snapshot's."""

    def fallback(self) -> Any:
        if self.default is REQUIRED:
            raise KeyError(self.name)
        return copy.deepcopy(self.default)


FLAG_DEFINITION: tuple[Field, ...] = (
    Field("key", editable=False, served=True, listed=True),
    Field("name", listed=True),
    Field("description", default="", listed=True),
    Field("tags", default=[], listed=True),
    Field("owner", default="", listed=True),
    Field("kind", default="temporary", listed=True),
    Field("removal_date", default=None, nullable=True, listed=True),
    Field("archived", default=False, listed=True, in_body=False),
    Field("type", served=True, listed=True),
    Field("variants", served=True),
    Field("salt", editable=False, served=True, in_body=False),
)
"""The project-wide part of a flag (columns of ``flags``; what a snapshot holds next to
``environments``)."""

FLAG_ENV_CONFIG: tuple[Field, ...] = (
    Field("enabled", default=False, served=True),
    Field("off_variant", default=None, nullable=True, served=True),
    Field("default_variant", default=None, nullable=True, served=True),
    Field("default_split", default=None, nullable=True, served=True),
    Field("rules", default=[], served=True),
    Field("prerequisites", default=[], served=True),
    Field("targeting", default=None, nullable=True, served=True),
)
"""A flag's configuration in one environment (columns of ``flag_environments``); the defaults are also
a new environment's configuration: off, serving the caller's default."""

SEGMENT: tuple[Field, ...] = (
    Field("key", editable=False, served=True),
    Field("name"),
    Field("description", default=""),
    Field("included", default=[], served=True),
    Field("excluded", default=[], served=True),
    Field("rules", default=[], served=True),
)
"""A segment (columns of ``segments``, and its snapshot)."""


def names(fields: tuple[Field, ...], **having: bool) -> tuple[str, ...]:
    """The names of ``fields`` whose flags equal ``having`` (``names(F, editable=True)``)."""
    return tuple(f.name for f in fields if all(getattr(f, flag) == want for flag, want in having.items()))


DEFINITION_FIELDS = names(FLAG_DEFINITION)
EDITABLE_DEFINITION_FIELDS = names(FLAG_DEFINITION, editable=True)
"""What a change of a flag may store (an update, a rollback, archive and unarchive)."""
BODY_DEFINITION_FIELDS = names(FLAG_DEFINITION, in_body=True)
"""What a create body sets; an update body sets those that are also editable."""
UPDATABLE_DEFINITION_FIELDS = names(FLAG_DEFINITION, editable=True, in_body=True)
OPERATION_DEFINITION_FIELDS = names(FLAG_DEFINITION, editable=True, in_body=False)
"""Changed only by their own operation (archive/unarchive): a rollback keeps their current value."""
SERVED_DEFINITION_FIELDS = names(FLAG_DEFINITION, served=True)
LISTED_FIELDS = names(FLAG_DEFINITION, listed=True)
ENV_CONFIG_FIELDS = names(FLAG_ENV_CONFIG)
SEGMENT_FIELDS = names(SEGMENT)
EDITABLE_SEGMENT_FIELDS = names(SEGMENT, editable=True)
SERVED_SEGMENT_FIELDS = names(SEGMENT, served=True)


def complete(fields: tuple[Field, ...], values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as a record of ``fields`` in declared order, what it lacks filled with the defaults
    (an old snapshot read after fields were added). Raises ``KeyError`` only for a required field."""
    return {f.name: values[f.name] if f.name in values else f.fallback() for f in fields}


def default_env_config() -> dict[str, Any]:
    """A new environment's configuration of a flag."""
    return {f.name: f.fallback() for f in FLAG_ENV_CONFIG}


def explicit_nulls(fields: tuple[Field, ...], changes: Mapping[str, Any]) -> list[str]:
    """The fields ``changes`` sets to ``null`` that may not be null."""
    return [f.name for f in fields if not f.nullable and f.name in changes and changes[f.name] is None]
