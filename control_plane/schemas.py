"""Request and response bodies of the admin API (published in the OpenAPI spec).

Request bodies reject unknown fields. Flag content reuses the rule engine's models, so the spec shows
the real shape; the rule engine's validation then checks meaning (declared variants, weights, ...).
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

from flagyard.rule_engine import ErrorCode, FlagType, Prerequisite, Reason, Rule, SegmentRule, Split, limits
from flagyard.rule_engine.explain import SegmentDecision, ServedBy
from flagyard.rule_engine.model import KEY_PATTERN


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


Key = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
"""Project, environment, flag and segment keys: 1-128 of ``A-Z a-z 0-9 _ . -``, not starting with a symbol."""
Name = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(_no_nul)]
Text = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(_no_nul)]
Comment = Annotated[str, StringConstraints(max_length=2_000), AfterValidator(_no_nul)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_no_nul)]
TargetKey = Annotated[str, StringConstraints(max_length=1024), AfterValidator(_no_nul)]
FlagOwner = Annotated[
    str,
    StringConstraints(max_length=200),
    AfterValidator(_no_nul),
    Field(
        description="Who answers for the flag (a person, team or e-mail; free text, up to 200 characters)."
    ),
]
FlagKind = Literal["temporary", "permanent"]
"""A temporary flag (a release or experiment) is meant to be removed; a permanent one (a kill switch, an
entitlement) is not, so the stale report never lists it as unused."""


def _calendar_date(value: str) -> str:
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError("not a calendar date (YYYY-MM-DD)") from None
    return value


RemovalDate = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"),
    AfterValidator(_calendar_date),
    Field(
        description="When a temporary flag should be gone (ISO date, YYYY-MM-DD); past it, the stale report "
        "lists the flag.",
        json_schema_extra={"format": "date"},
    ),
]

T = TypeVar("T")


INT64 = (-(2**63), 2**63 - 1)
"""The integers a flag may hold: what OpenFeature, protobuf int64 and orjson represent exactly."""


def check_finite(value: Any, path: str = "") -> str | None:
    """The JSON pointer of the first NaN, infinity or integer beyond 64 bits in ``value`` (Python's JSON
    parser accepts them all; the planes could not carry them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "/"
    if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
        return path or "/"
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = check_finite(item, f"{path}/{key}")
        if found:
            return found
    return None


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _finite(cls, data: Any) -> Any:
        where = check_finite(data)
        if where:
            raise PydanticCustomError(
                "unrepresentable_number",
                "NaN, Infinity and integers beyond 64 bits are not accepted",
                {"pointer": "" if where == "/" else where},
            )
        return data


class Output(BaseModel):
    """A response body. Every field is always sent, so the published schema requires each one, and
    nothing else (``additionalProperties: false``): the test client holds every 2xx body to it."""

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


class Page(Output, Generic[T]):
    """One page of a list; pass ``next_cursor`` as ``cursor`` for the next one (``null`` at the end)."""

    items: list[T]
    next_cursor: str | None = None


# --- projects and environments ------------------------------------------------------------------


class ProjectCreate(Input):
    key: Key
    name: Name
    description: Text = ""


class ProjectUpdate(Input):
    name: Name | None = None
    description: Text | None = None


class ProjectOut(Output):
    key: str
    name: str
    description: str
    revision: int
    created_at: datetime
    updated_at: datetime


ApprovalsRequired = Annotated[
    int,
    Field(
        ge=0,
        le=10,
        description="Approvals (from owners other than the author's) a change of what this environment "
        "serves needs; 0 turns the policy off. With a policy a direct write is 409 approval_required: "
        "propose it as a change request. Only an admin sets it.",
    ),
]


class SamplingIn(Input):
    """An environment's opt-in to keeping a sample of the contexts it evaluates (for impact previews).
    Only the attributes named here are kept; every other one is dropped before a sample is stored."""

    attributes: list[str] = Field(
        default_factory=list,
        description="Attribute paths (up to four dotted parts: plan, app.version) kept in clear: what rules "
        "test and nobody is identified by.",
    )
    hashed: list[str] = Field(
        default_factory=list,
        description="Attribute paths kept only as a salted HMAC (targeting_key, email): a hashed key buckets "
        "like the clear one, but no rule naming the clear value matches it. The salt is per environment, "
        "made by the server and never shown.",
    )


class SamplingOut(Output):
    attributes: list[str]
    hashed: list[str]


SAMPLING_DESCRIPTION = (
    "Whether (and what of) the contexts this environment evaluates are sampled, for impact previews: null "
    f"(the default) samples nothing; at most {limits.MAX_SAMPLE_ATTRIBUTES} attributes in all, each named "
    "once. Only an admin sets it."
)


class EnvironmentCreate(Input):
    key: Key
    name: Name
    description: Text = ""
    approvals_required: ApprovalsRequired = 0
    sampling: SamplingIn | None = Field(default=None, description=SAMPLING_DESCRIPTION)


class EnvironmentUpdate(Input):
    name: Name | None = None
    description: Text | None = None
    approvals_required: ApprovalsRequired | None = None
    sampling: SamplingIn | None = Field(
        default=None,
        description=SAMPLING_DESCRIPTION
        + " Sent as null, it turns sampling off and deletes the sample; left "
        "out, it is kept as it is.",
    )


class EnvironmentOut(Output):
    key: str
    name: str
    description: str
    revision: int
    approvals_required: int
    sampling: SamplingOut | None
    created_at: datetime
    updated_at: datetime


class FlagUsageOut(Output):
    key: str
    evaluations: int
    variants: dict[str, int]
    reasons: dict[str, int]
    last_evaluated_at: datetime | None
    stale: bool


class EnvironmentUsageOut(Output):
    environment: str
    stale_after_days: float
    flags: list[FlagUsageOut]


class DataPlaneServedOut(Output):
    id: str = Field(description="The data-plane instance (FLAGYARD_INSTANCE_ID, else hostname-pid).")
    revision: int = Field(description="The environment revision this data plane serves.")
    reported_at: datetime


class PropagationOut(Output):
    environment: str
    revision: int = Field(
        description="The revision the environment reaches in Redis once every committed change is written "
        "(the stored revision plus one per flag or segment Redis does not hold as committed yet)."
    )
    stored_revision: int | None = Field(
        description="The revision Redis holds for the environment; null when the syncer has written nothing."
    )
    data_planes: list[DataPlaneServedOut] = Field(
        description="Data planes that reported within the last 30 seconds, by id (at most 100)."
    )
    in_sync: bool = Field(
        description="Redis holds every committed change and every data plane listed serves it. True with no "
        "data plane reporting: look at data_planes to tell."
    )


# --- flags ---------------------------------------------------------------------------------------


class EnvConfigIn(Input):
    """A flag's configuration in one environment."""

    enabled: bool = False
    off_variant: str | None = None
    default_variant: str | None = None
    default_split: Split | None = None
    rules: list[Rule] = Field(default_factory=list)
    prerequisites: list[Prerequisite] = Field(default_factory=list)
    targeting: dict[str, Any] | None = Field(
        default=None,
        description="A JsonLogic expression (flagd's dialect) instead of `rules`; its result names the "
        "variant served, null serves the default; "
        '`{"$ref": "<segment key>"}` is true for contexts in that segment.',
    )


class EnvConfigPatch(Input):
    """Fields to change in a flag's environment configuration; absent fields keep their value."""

    enabled: bool | None = None
    off_variant: str | None = None
    default_variant: str | None = None
    default_split: Split | None = None
    rules: list[Rule] | None = None
    prerequisites: list[Prerequisite] | None = None
    targeting: dict[str, Any] | None = None
    comment: Comment = ""


class EnvConfigOut(Output):
    enabled: bool
    off_variant: str | None
    default_variant: str | None
    default_split: Split | None
    rules: list[Rule]
    prerequisites: list[Prerequisite]
    targeting: dict[str, Any] | None


class FlagEnvironmentOut(EnvConfigOut):
    """A flag's configuration in one environment, with the flag's version (its ETag)."""

    flag: str
    environment: str
    version: int


class FlagCreate(Input):
    key: Key
    name: Name
    description: Text = ""
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    owner: FlagOwner = ""
    kind: FlagKind = "temporary"
    removal_date: RemovalDate | None = None
    type: FlagType
    variants: dict[str, Any] = Field(min_length=1, max_length=1000)
    environments: dict[str, EnvConfigIn] = Field(
        default_factory=dict, description="Initial configuration by environment key; others start off."
    )
    comment: Comment = ""


class FlagUpdate(Input):
    """Definition fields to change; absent fields keep their value."""

    name: Name | None = None
    description: Text | None = None
    tags: list[Tag] | None = Field(default=None, max_length=50)
    owner: FlagOwner | None = None
    kind: FlagKind | None = None
    removal_date: RemovalDate | None = Field(default=None, description="null clears it.")
    type: FlagType | None = None
    variants: dict[str, Any] | None = Field(default=None, min_length=1, max_length=1000)
    comment: Comment = ""


class FlagOut(Output):
    key: str
    name: str
    description: str
    tags: list[str]
    owner: str
    kind: FlagKind
    removal_date: str | None = Field(json_schema_extra={"format": "date"})
    archived: bool = Field(
        description="Archived: served nowhere (a missing flag to SDKs), kept with its history."
    )
    type: FlagType
    variants: dict[str, Any]
    salt: str
    version: int
    created_at: datetime
    updated_at: datetime
    environments: dict[str, EnvConfigOut]


class FlagSummary(Output):
    key: str
    name: str
    description: str
    tags: list[str]
    owner: str
    kind: FlagKind
    removal_date: str | None = Field(json_schema_extra={"format": "date"})
    archived: bool
    type: FlagType
    version: int
    updated_at: datetime
    enabled: dict[str, bool] = Field(description="Whether the flag is on, by environment key.")


class ToggleIn(Input):
    enabled: bool
    comment: Comment = ""


class ArchiveIn(Input):
    comment: Comment = ""


class StaleFlagOut(Output):
    key: str
    name: str
    owner: str
    kind: FlagKind
    removal_date: str | None = Field(json_schema_extra={"format": "date"})
    last_evaluated_at: datetime | None = Field(
        description="Last evaluation SDKs reported here; null if never."
    )
    changed_at: datetime = Field(description="When what this environment serves of the flag last changed.")
    reasons: list[Literal["not_evaluated", "not_changed", "past_removal_date"]]


class StaleReportOut(Output):
    """A page of an environment's stale temporary flags, by key (``next_cursor`` as for every list)."""

    environment: str
    evaluated_days: int
    changed_days: int
    items: list[StaleFlagOut]
    next_cursor: str | None


class RollbackIn(Input):
    version: int = Field(ge=1, le=2**31 - 1)
    comment: Comment = ""


class VersionSummary(Output):
    version: int
    action: str
    comment: str
    author_key_id: int | None
    created_at: datetime


class VersionOut(VersionSummary):
    snapshot: dict[str, Any]


class Change(Output):
    """One difference: ``op`` is add, remove or replace at ``path`` (a JSON pointer)."""

    op: Literal["add", "remove", "replace"]
    path: str
    old: Any = None
    value: Any = None


class DiffOut(Output):
    from_version: int
    to_version: int
    changes: list[Change]


# --- explain and impact preview ------------------------------------------------------------------


def _bounded_context(value: dict[str, Any]) -> dict[str, Any]:
    size = len(orjson.dumps(value))
    if size > limits.MAX_CONTEXT_BYTES:
        raise ValueError(
            f"the context is {size} bytes as JSON; at most {limits.MAX_CONTEXT_BYTES} "
            "(limits.MAX_CONTEXT_BYTES, what an SDK may send)"
        )
    return value


EvaluationContext = Annotated[
    dict[str, Any],
    AfterValidator(_bounded_context),
    Field(
        description="An evaluation context, as an SDK sends it (a JSON object, at most "
        f"{limits.MAX_CONTEXT_BYTES} bytes as JSON)."
    ),
]


class ExplainIn(Input):
    context: EvaluationContext
    default: Any = Field(
        default=None, description="The caller's default: the value served when no variant is (an error)."
    )


class EvaluationResultOut(Output):
    """What an SDK evaluating the flag in this environment gets (the rule engine's result)."""

    value: Any
    variant: str | None
    reason: Reason
    error_code: ErrorCode | None
    error_message: str | None
    rule_id: str | None
    version: int | None


class BucketRangeOut(Output):
    variant: str
    start: int = Field(description="First bucket, inclusive.")
    end: int = Field(description="Last bucket, exclusive.")


class SplitTraceOut(Output):
    bucket_by: str
    value: str | None = Field(
        description="The bucket-by attribute's value as hashed (null: absent, or neither string nor integer)."
    )
    bucket: int | None
    total: int = Field(description="Buckets in all: 10000 for basis points, else the sum of the weights.")
    variant: str | None = Field(description="The variant owning `bucket`.")
    ranges: list[BucketRangeOut]


class ClauseTraceOut(Output):
    operator: str
    attribute: str | None = Field(description="null for `segment_match`.")
    values: list[Any]
    negate: bool
    value: Any = Field(description="The context's value at `attribute` (null when absent).")
    matched: bool
    segments: list[SegmentTraceOut] = Field(
        description="For `segment_match`: each segment tested, in order, until one matched."
    )


class RuleTraceOut(Output):
    index: int
    id: str | None = Field(description="The flag rule's id (segment rules have none).")
    matched: bool
    clauses: list[ClauseTraceOut] = Field(
        description="The clauses evaluated, in order (a rule stops at the first that does not match)."
    )


class SegmentTraceOut(Output):
    key: str
    matched: bool
    decision: SegmentDecision = Field(
        description="The targeting key is `excluded` or `included`, one of its rules matched (`rule`), none "
        "did (`no_rule`), or the segment does not exist (`missing`)."
    )
    rule: int | None = Field(description="The index of the rule that matched (`decision` is `rule`).")
    rules: list[RuleTraceOut]


class TargetingTraceOut(Output):
    """A JsonLogic `targeting` flag: what the expression returned and the `$ref` segments it tested."""

    result: Any
    segments: list[SegmentTraceOut]


class PrerequisiteTraceOut(Output):
    flag: str
    variant: str = Field(description="The variant the prerequisite must serve.")
    state: Literal["missing", "disabled", "evaluated", "not_evaluated"]
    met: bool
    trace: FlagTraceOut | None = Field(
        description="The prerequisite's own evaluation (`state` is `evaluated`)."
    )


class FlagTraceOut(Output):
    flag: str
    version: int
    enabled: bool
    served_by: ServedBy
    variant: str | None
    reason: str
    prerequisites: list[PrerequisiteTraceOut]
    rules: list[RuleTraceOut] = Field(
        description="The rules evaluated, in order (evaluation stops at the first that matches)."
    )
    targeting: TargetingTraceOut | None
    split: SplitTraceOut | None = Field(
        description="The split that chose the variant, if one did (a rule's or the fallthrough's)."
    )


class ExplainOut(Output):
    """One evaluation in the environment as it is served, and the decision that led to it."""

    result: EvaluationResultOut
    trace: FlagTraceOut | None = Field(
        description="null when the flag was not evaluated (archived, so missing to SDKs)."
    )


class PreviewIn(Input):
    config: EnvConfigPatch = Field(
        description="The proposed change of the environment's configuration, exactly as the PATCH of "
        "`/flags/{flag}/environments/{env}` takes it (absent fields keep their value)."
    )
    contexts: list[EvaluationContext] | None = Field(
        default=None,
        max_length=limits.MAX_PREVIEW_CONTEXTS,
        description="Evaluate over these; absent: over the environment's stored sample of recently "
        "evaluated contexts.",
    )


class TransitionOut(Output):
    model_config = ConfigDict(populate_by_name=True)

    from_: str | None = Field(alias="from", description="The variant served now (null: none, an error).")
    to: str | None = Field(description="The variant the proposed configuration would serve.")
    count: int


class PreviewOut(Output):
    """How many contexts the proposed configuration would serve another variant (nothing is saved)."""

    source: Literal["supplied", "sample"]
    contexts: int
    changed: int
    transitions: list[TransitionOut] = Field(
        description="Each change of variant with its count, most frequent first."
    )
    unchanged: int
    errors_before: int
    errors_after: int
    note: str | None = Field(description="Why there was nothing to evaluate, when `contexts` is 0.")


# --- segments ------------------------------------------------------------------------------------


class SegmentCreate(Input):
    key: Key
    name: Name
    description: Text = ""
    included: list[TargetKey] = Field(default_factory=list, max_length=10_000)
    excluded: list[TargetKey] = Field(default_factory=list, max_length=10_000)
    rules: list[SegmentRule] = Field(default_factory=list)
    comment: Comment = ""


class SegmentUpdate(Input):
    name: Name | None = None
    description: Text | None = None
    included: list[TargetKey] | None = Field(default=None, max_length=10_000)
    excluded: list[TargetKey] | None = Field(default=None, max_length=10_000)
    rules: list[SegmentRule] | None = None
    comment: Comment = ""


class SegmentOut(Output):
    key: str
    name: str
    description: str
    included: list[str]
    excluded: list[str]
    rules: list[SegmentRule]
    version: int
    created_at: datetime
    updated_at: datetime


class SegmentUserOut(Output):
    flag: str
    environments: list[str] = Field(description="Environments whose rules or targeting use the segment.")


class SegmentUsageOut(Output):
    items: list[SegmentUserOut] = Field(description="Every live flag that uses the segment, by key.")
    segments: list[str] = Field(description="Other live segments whose rules match this one, by key.")


# --- audit ---------------------------------------------------------------------------------------


class AuditOut(Output):
    id: int
    project: str | None
    actor_key_id: int | None
    actor_key_prefix: str | None
    resource_type: str
    resource_key: str
    environment: str | None
    action: str
    version: int | None
    diff: list[Change]
    comment: str
    request_id: str | None
    created_at: datetime


# --- scheduled changes ---------------------------------------------------------------------------


ScheduledKind = Literal["toggle", "env_config", "segment", "rollback", "segment_rollback"]
ScheduledStatus = Literal["pending", "applied", "failed", "cancelled"]


class ScheduledChangeCreate(Input):
    """A change to make at ``apply_at``: ``body`` is what the direct change takes (``toggle``: ToggleIn
    of flag ``target`` in this environment; ``env_config``: EnvConfigPatch of it; ``segment``:
    SegmentUpdate of segment ``target``; ``rollback`` / ``segment_rollback``: RollbackIn of the flag or
    segment). Its ``comment`` is ignored: the change is recorded with this one, prefixed by the
    schedule's id."""

    kind: ScheduledKind
    target: Key
    body: dict[str, Any] = Field(
        description="The direct change's request body, by kind: toggle ToggleIn, env_config EnvConfigPatch, "
        "segment SegmentUpdate, rollback and segment_rollback RollbackIn.",
        json_schema_extra={
            "anyOf": [
                {"$ref": f"#/components/schemas/{name}"}
                for name in ("ToggleIn", "EnvConfigPatch", "SegmentUpdate", "RollbackIn")
            ]
        },
    )
    apply_at: AwareDatetime = Field(
        description="When to apply it: an RFC 3339 time with an offset, not in the past (5 s of clock "
        "skew allowed), at most 366 days ahead."
    )
    comment: Comment = ""


class ScheduledChangeUpdate(Input):
    """Reschedule a pending change."""

    apply_at: AwareDatetime


class ScheduledChangeFailure(Output):
    code: str = Field(
        description="`conflict` (a field it changes changed since it was scheduled), `validation_error`, "
        "`not_found`, `forbidden`, `unauthenticated` (the key was revoked or expired), or another error "
        "code of the direct change."
    )
    message: str
    details: list[ErrorDetail]


class ScheduledChangeOut(Output):
    id: int
    project: str
    environment: str
    kind: ScheduledKind
    target: str
    body: dict[str, Any]
    comment: str
    apply_at: datetime
    status: ScheduledStatus
    base_version: int = Field(description="The flag's or segment's version when it was scheduled.")
    created_by_key_id: int
    created_by_key_prefix: str
    created_at: datetime
    updated_at: datetime
    applied_at: datetime | None
    applied_version: int | None
    failure: ScheduledChangeFailure | None
    change_request_id: int | None = Field(description="The approved change request it applies, if any.")


# --- change requests -----------------------------------------------------------------------------


ChangeRequestStatus = Literal["open", "approved", "scheduled", "applied", "rejected", "withdrawn", "failed"]


class ChangeRequestCreate(Input):
    """Propose a change to an environment (required where the environment has an approval policy):
    ``kind``, ``target`` and ``body`` as a scheduled change takes them."""

    kind: ScheduledKind
    target: Key
    body: dict[str, Any] = Field(
        description="The direct change's request body, by kind: toggle ToggleIn, env_config EnvConfigPatch, "
        "segment SegmentUpdate, rollback and segment_rollback RollbackIn.",
        json_schema_extra={
            "anyOf": [
                {"$ref": f"#/components/schemas/{name}"}
                for name in ("ToggleIn", "EnvConfigPatch", "SegmentUpdate", "RollbackIn")
            ]
        },
    )
    title: Name
    description: Text = ""


class ChangeRequestUpdate(Input):
    """Edit an open request (its author): a new revision, re-checked and re-based on the current state;
    every approval given so far no longer counts."""

    body: dict[str, Any] | None = Field(default=None, description="The new body (same kind and target).")
    title: Name | None = None
    description: Text | None = None


class ChangeRequestReview(Input):
    revision: int = Field(
        ge=1,
        le=2**31 - 1,
        description="The revision reviewed: 409 if the request was edited or rebased since.",
    )
    comment: Text = ""


class ChangeRequestComment(Input):
    body: Annotated[str, StringConstraints(min_length=1, max_length=10_000), AfterValidator(_no_nul)]


class ChangeRequestApply(Input):
    apply_at: AwareDatetime | None = Field(
        default=None,
        description="Apply it then (a scheduled change, applied by the scheduler if the request is still "
        "approved and its base has not moved); now when absent. Same bounds as a scheduled change.",
    )


class ChangeRequestEventOut(Output):
    id: int
    action: Literal["comment", "approve", "reject"]
    revision: int
    body: str
    key_id: int
    key_prefix: str
    owner: str = Field(description="The identity it counts as: the key's owner, or key:<first key id>.")
    created_at: datetime


class ChangeRequestOut(Output):
    id: int
    project: str
    environment: str
    title: str
    description: str
    kind: ScheduledKind
    target: str
    body: dict[str, Any]
    status: ChangeRequestStatus
    revision: int = Field(description="Rises with each edit or rebase; approvals count at the current one.")
    base_version: int = Field(description="The target's version the request was (re)based on.")
    approvals_required: int
    approvals: int = Field(description="Distinct owners (not the author's) who approved this revision.")
    author_key_id: int
    author_key_prefix: str
    created_at: datetime
    updated_at: datetime
    applied_at: datetime | None
    applied_version: int | None
    applied_by_key_id: int | None
    scheduled_change_id: int | None


class ChangeRequestDetail(ChangeRequestOut):
    current_version: int | None = Field(description="The target's version now (null once it was deleted).")
    diff: list[Change] = Field(description="What applying the request now would change in the target.")
    events: list[ChangeRequestEventOut]


# --- keys ----------------------------------------------------------------------------------------


KeyOwner = Annotated[
    str,
    StringConstraints(max_length=200),
    AfterValidator(_no_nul),
    Field(
        description="The person the key belongs to (name or e-mail, up to 200 characters; compared trimmed "
        "and case-insensitively). Approvals count distinct owners and nobody approves a change request of "
        "their own; empty: the key and the keys it is rotated into are their own owner."
    ),
]


class ApiKeyCreate(Input):
    name: Name
    role: Literal["admin", "writer", "reader"]
    project: Key | None = Field(default=None, description="Scope the key to one project; none is global.")
    expires_at: datetime | None = None
    owner: KeyOwner = ""


class ApiKeyUpdate(Input):
    """What may change of an API key (its secret, role and scope never do: rotate or issue another)."""

    owner: KeyOwner


class SdkKeyCreate(Input):
    name: Name
    expires_at: datetime | None = None


class RotateIn(Input):
    overlap_seconds: int | None = Field(
        default=None, ge=0, le=90 * 24 * 3600, description="How long the old key keeps working."
    )


class ApiKeyOut(Output):
    id: int
    name: str
    role: Literal["admin", "writer", "reader", "sdk"]
    project: str | None
    environment: str | None
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    replaces_key_id: int | None
    owner: str


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself: shown once, never retrievable again.")


# --- webhooks ------------------------------------------------------------------------------------

MAX_WEBHOOK_URL_LENGTH = 2048
MAX_WEBHOOK_DESCRIPTION_LENGTH = 1000
WebhookEvent = Literal[
    "flag.changed",
    "flag.toggled",
    "segment.changed",
    "scheduled_change.applied",
    "scheduled_change.failed",
    "change_request.opened",
    "change_request.approved",
    "change_request.applied",
    "key.created",
    "key.revoked",
]
"""The event table of :mod:`flagyard.control_plane.webhook_events` (a test keeps the two equal)."""
WebhookUrl = Annotated[
    str,
    StringConstraints(max_length=MAX_WEBHOOK_URL_LENGTH, pattern=r"^https?://[^\s]+$"),
    AfterValidator(_no_nul),
]
WebhookDescription = Annotated[
    str, StringConstraints(max_length=MAX_WEBHOOK_DESCRIPTION_LENGTH), AfterValidator(_no_nul)
]
WebhookEvents = Annotated[list[WebhookEvent], Field(min_length=1, max_length=len(WebhookEvent.__args__))]


class WebhookCreate(Input):
    url: WebhookUrl = Field(description="Where deliveries are POSTed (http or https).")
    events: WebhookEvents = Field(description="The events to receive, each at most once.")
    description: WebhookDescription = ""
    enabled: bool = True


class WebhookUpdate(Input):
    url: WebhookUrl | None = None
    events: WebhookEvents | None = None
    description: WebhookDescription | None = None
    enabled: bool | None = Field(
        default=None, description="`true` re-enables a subscription (also one disabled after failures)."
    )


class WebhookOut(Output):
    id: int
    project: str
    url: str
    events: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None
    consecutive_failures: int
    secret_prefix: str = Field(description="The first characters of the signing secret, to tell it apart.")
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="The signing secret (`whsec_…`, Standard Webhooks): shown once, at creation and rotation."
    )


class WebhookDeliveryOut(Output):
    id: int
    event: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    http_status: int | None
    latency_ms: int | None
    response_excerpt: str | None
    error: str | None
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    completed_at: datetime | None


class WebhookTestOut(Output):
    delivery_id: int
    event: str


# --- import / export -----------------------------------------------------------------------------


class ImportResult(Output):
    created: list[str]
    updated: list[str]
    unchanged: list[str]
    segments_created: list[str]
    segments_updated: list[str]
    segments_unchanged: list[str]


class ErrorDetail(Output):
    path: str
    message: str


class ErrorBody(Output):
    """Every error response."""

    code: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


# --- sync jobs -----------------------------------------------------------------------------------

JobId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$")]


class FailedJobOut(Output):
    id: str
    description: str | None
    enqueued_at: datetime | None
    ended_at: datetime | None
    error: str = Field(description="The last attempt's exception: its type and message.")


class RequeueIn(Input):
    job_ids: list[JobId] | None = Field(
        default=None, min_length=1, max_length=1000, description="Jobs to requeue; none: every failed job."
    )


class RequeueOut(Output):
    requeued: list[str]


# --- probes --------------------------------------------------------------------------------------


class HealthOut(Output):
    status: Literal["ok"]


Check = Literal["ok", "unavailable"]


class ReadinessChecks(Output):
    database: Check
    redis: Check = Field(description="Reported only: the control plane serves without Redis.")


class ReadyOut(Output):
    status: Literal["ready"]
    checks: ReadinessChecks


class NotReadyBody(ErrorBody):
    """``/readyz`` when the database is unreachable: the error body plus every check's state."""

    code: Literal["not_ready"]
    checks: ReadinessChecks


# --- console sessions ---------------------------------------------------------------------------


class SessionCreate(Input):
    api_key: SecretStr = Field(
        min_length=1, max_length=200, description="An admin, writer or reader key; it is not stored."
    )


class SessionOut(Output):
    role: Literal["admin", "writer", "reader"]
    project: str | None = Field(description="The project the key is scoped to; null for a global key.")
    key_id: int
    key_prefix: str
    expires_at: datetime
    csrf_token: str = Field(description="Send it as `X-CSRF-Token` with every change made by this session.")
