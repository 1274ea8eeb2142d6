"""The native flag model: what admins write and what every plane stores.

These pydantic models check shape (types, required fields, unknown fields); :mod:`.validation` checks
meaning (declared variants, weights, regexes, segment references, prerequisite cycles).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from .result import FlagType

KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"

Key = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
"""Flag, segment, variant and rule keys: 1-128 of ``A-Z a-z 0-9 _ . -``, not starting with a symbol."""

MetadataValue = bool | int | float | str


class Operator(StrEnum):
    """Clause operators. A missing attribute never matches, whatever ``negate`` says (LaunchDarkly's rule)."""

    EQ = "eq"
    NEQ = "neq"
    IN = "in"
    NOT_IN = "not_in"
    CONTAINS = "contains"
    STARTS_WITH = "starts_with"
    ENDS_WITH = "ends_with"
    MATCHES = "matches"
    LT = "lt"
    LTE = "lte"
    GT = "gt"
    GTE = "gte"
    SEMVER_EQ = "semver_eq"
    SEMVER_LT = "semver_lt"
    SEMVER_LTE = "semver_lte"
    SEMVER_GT = "semver_gt"
    SEMVER_GTE = "semver_gte"
    BEFORE = "before"
    AFTER = "after"
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"
    SEGMENT_MATCH = "segment_match"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Clause(_Model):
    """``attribute <operator> values``; ``negate`` inverts the outcome when the attribute is present."""

    attribute: str | None = Field(
        default=None,
        description="Dotted path into the context; `targeting_key` is the OpenFeature targeting key. "
        "Not used by `segment_match`.",
    )
    operator: Operator
    values: list[Any] = Field(default_factory=list)
    negate: bool = False


class WeightedVariant(_Model):
    variant: Key
    weight: int = Field(ge=0)


class Split(_Model):
    """A sticky weighted split: the same bucket-by value always lands in the same variant."""

    variations: list[WeightedVariant] = Field(min_length=1)
    bucket_by: str = Field(default="targeting_key", min_length=1)
    weight_unit: Literal["basis_points", "relative"] = Field(
        default="basis_points",
        description="`basis_points`: weights sum to 10000; `relative`: any non-negative integers.",
    )


class Rule(_Model):
    """All clauses must match (AND); then the rule serves ``variant`` or ``split`` (exactly one)."""

    id: Key
    description: str = ""
    clauses: list[Clause] = Field(min_length=1)
    variant: Key | None = None
    split: Split | None = None


class SegmentRule(_Model):
    clauses: list[Clause] = Field(min_length=1)


class Prerequisite(_Model):
    """The flag is served normally only if flag ``flag`` serves ``variant`` for the same context."""

    flag: Key
    variant: Key


class Flag(_Model):
    """One flag's definition and its configuration in one environment."""

    key: Key
    type: FlagType
    variants: dict[Key, Any] = Field(min_length=1)
    enabled: bool = True
    off_variant: Key | None = Field(
        default=None, description="Served when disabled; none means the caller's default."
    )
    default_variant: Key | None = Field(
        default=None, description="Served when no rule matches; none means the caller's default."
    )
    default_split: Split | None = Field(default=None, description="A split served when no rule matches.")
    rules: list[Rule] = Field(default_factory=list)
    targeting: dict[str, Any] | None = Field(
        default=None,
        description="A JsonLogic expression in flagd's dialect, instead of `rules`: its result names the "
        'variant served, null serves the default; `{"$ref": "<segment key>"}` is true for contexts in '
        "that segment.",
    )
    prerequisites: list[Prerequisite] = Field(default_factory=list)
    salt: str = Field(default="", max_length=128, description="Mixed into the bucketing hash.")
    version: int = Field(default=0, ge=0)
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)


class Segment(_Model):
    """A reusable audience: excluded keys never match, included keys always do, else any rule matches."""

    key: Key
    included: list[str] = Field(default_factory=list)
    excluded: list[str] = Field(default_factory=list)
    rules: list[SegmentRule] = Field(default_factory=list)
    version: int = Field(default=0, ge=0)


class Document(_Model):
    """A whole environment: every flag and segment (the native file format)."""

    flags: list[Flag] = Field(default_factory=list)
    segments: list[Segment] = Field(default_factory=list)
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)
