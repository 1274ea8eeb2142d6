"""The Redis contract (ARCHITECTURE.md, "Redis contract"): the syncer's writes and the data plane's reads.

Writers: :func:`apply_change` (one Lua script: version guard, value, version, revision, event, environment
set, metadata, all atomic), :func:`put_sdk_key`, :func:`delete_sdk_key`. They take a synchronous
``redis.Redis`` (the syncer is an RQ worker); :func:`apply_change_async` is the same script for
``redis.asyncio``.

Readers (the data plane): :func:`load_environment` reads an environment's revision, definitions and the
id of its latest stream event in one MULTI/EXEC, so the three agree; :func:`parse_event`,
:func:`parse_stored` and :func:`parse_sdk_key` decode what the writers wrote.

Served revisions (the data plane writes, the control plane reads): ``P:env:{id}:served`` is a hash, field
= a data-plane instance id (:func:`check_instance_id`: at most :data:`MAX_INSTANCE_ID` characters of
``A-Z a-z 0-9 . _ -``, never a secret), value = ``"<revision>:<unix ms>"``, the environment revision that
instance serves and when it said so. Each data plane rewrites its own field every few seconds and soon
after it applies a change (:func:`report_served`), while Redis holds the environment's revision; every
write gives the whole hash a TTL of :data:`SERVED_TTL_SECONDS` and drops fields older than that, so dead
instances leave it. The syncer deletes it with the environment. Readers
(:func:`read_propagation`) ignore entries older than :data:`SERVED_STALE_SECONDS`.

Both kinds of client may be created with or without ``decode_responses``.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import redis
import redis.asyncio

from flagyard.rule_engine import limits

Kind = Literal["flag", "segment"]
Op = Literal["put", "delete"]

KINDS: tuple[Kind, ...] = ("flag", "segment")
STREAM_MAXLEN = 10_000
"""Events kept per environment stream (trimmed with ``MAXLEN ~``, so about this many)."""
MAX_VERSION = 2**53
"""Versions are compared in Lua, whose numbers are doubles: exact up to 2**53."""

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class RedisContractError(ValueError):
    """A value in Redis, or an argument meant for Redis, does not follow the contract."""


@dataclass(frozen=True, slots=True)
class EnvKeys:
    """The keys of one environment under prefix ``P``."""

    prefix: str
    env_id: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:env:{self.env_id}"

    @property
    def meta(self) -> str:
        return f"{self.base}:meta"

    @property
    def flags(self) -> str:
        return f"{self.base}:flags"

    @property
    def segments(self) -> str:
        return f"{self.base}:segments"

    @property
    def versions(self) -> str:
        return f"{self.base}:versions"

    @property
    def rev(self) -> str:
        return f"{self.base}:rev"

    @property
    def events(self) -> str:
        return f"{self.base}:events"

    @property
    def evaluations(self) -> str:
        return f"{self.base}:evaluations"

    @property
    def served(self) -> str:
        return f"{self.base}:served"

    @property
    def evaluated_at(self) -> str:
        return f"{self.base}:evaluated_at"

    def values(self, kind: Kind) -> str:
        """The hash holding definitions of ``kind``."""
        return self.flags if kind == "flag" else self.segments


def envs_key(prefix: str) -> str:
    return f"{prefix}:envs"


def sdkkeys_key(prefix: str) -> str:
    return f"{prefix}:sdkkeys"


# KEYS: versions, values hash (flags or segments), rev, events, envs, meta
# ARGV: env_id, kind, key, version, op, stored value ("" for a delete), stream maxlen, if listed (1/0),
#       meta field/value...
# Returns {applied (0/1), revision, highest version held, event id ("" when not applied), missing (0/1)}.
APPLY_CHANGE_LUA = """
local field = ARGV[2] .. ':' .. ARGV[3]
local version = tonumber(ARGV[4])
if ARGV[8] == '1' and redis.call('SISMEMBER', KEYS[5], ARGV[1]) == 0 then
  return {0, 0, -1, '', 1}
end
local held = tonumber(redis.call('HGET', KEYS[1], field) or '-1')
if held >= version then
  return {0, tonumber(redis.call('GET', KEYS[3]) or '0'), held, '', 0}
end
if ARGV[5] == 'put' then
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[6])
else
  redis.call('HDEL', KEYS[2], ARGV[3])
end
redis.call('HSET', KEYS[1], field, ARGV[4])
local rev = redis.call('INCR', KEYS[3])
local id = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*',
  'rev', rev, 'op', ARGV[5], 'kind', ARGV[2], 'key', ARGV[3], 'version', ARGV[4])
redis.call('SADD', KEYS[5], ARGV[1])
if #ARGV > 8 then
  redis.call('HSET', KEYS[6], unpack(ARGV, 9))
end
return {1, rev, version, id, 0}
"""


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: bool
    """False when Redis already held this version or a newer one (nothing was written)."""
    revision: int
    """The environment revision after the call."""
    version: int
    """The highest version of this key Redis now holds."""
    event_id: str
    """The stream id of the event appended ("" when not applied)."""
    missing: bool = False
    """True when the write asked ``if_listed`` and Redis does not list the environment (nothing written)."""


def _apply_args(
    prefix: str,
    env_id: str,
    kind: str,
    key: str,
    version: int,
    definition: Mapping[str, Any] | None,
    meta: Mapping[str, str] | None,
    stream_maxlen: int,
    if_listed: bool = False,
) -> tuple[list[str], list[str | bytes]]:
    if kind not in KINDS:
        raise RedisContractError(f"kind must be one of {KINDS}, not {kind!r}")
    if not key or not env_id or ":" in env_id:
        raise RedisContractError("env_id and key must be non-empty (and env_id without ':')")
    if type(version) is not int or not 0 <= version < MAX_VERSION:
        raise RedisContractError(f"version must be an integer in [0, 2**53), not {version!r}")
    if definition is not None and definition.get("key", key) != key:
        raise RedisContractError(f"definition key {definition.get('key')!r} is not {key!r}")
    keys = EnvKeys(prefix, env_id)
    value: bytes = b""
    if definition is not None:
        # The definition's own version is the version it was written under, so results carry it.
        value = orjson.dumps({"version": version, "definition": {**definition, "version": version}})
    args: list[str | bytes] = [
        env_id,
        kind,
        key,
        str(version),
        "put" if definition is not None else "delete",
        value,
        str(stream_maxlen),
        "1" if if_listed else "0",
    ]
    for name, text in (meta or {}).items():
        args += [name, text]
    return [
        keys.versions,
        keys.flags if kind == "flag" else keys.segments,
        keys.rev,
        keys.events,
        envs_key(prefix),
        keys.meta,
    ], args


def _apply_result(raw: Any) -> ApplyResult:
    applied, revision, version, event_id, missing = raw
    return ApplyResult(bool(applied), int(revision), int(version), _text(event_id), bool(missing))


def apply_change(
    client: redis.Redis,
    prefix: str,
    env_id: str,
    kind: Kind,
    key: str,
    version: int,
    definition: Mapping[str, Any] | None,
    meta: Mapping[str, str] | None = None,
    *,
    stream_maxlen: int = STREAM_MAXLEN,
    if_listed: bool = False,
) -> ApplyResult:
    """Apply one change under the version guard; ``definition=None`` deletes.

    ``definition`` is the native Flag or Segment JSON object, already validated; it is stored with its
    ``version`` field set to ``version``. ``meta`` (``project``, ``environment``) is written to
    ``P:env:{env}:meta`` with an applied change. Idempotent: applying an older or the same version again
    changes nothing and returns ``applied=False``. ``if_listed`` writes only into an environment
    ``P:envs`` lists (else nothing, ``missing=True``): one change must not re-create an environment Redis
    lost, or readers would load it holding that change alone.
    """
    keys, args = _apply_args(prefix, env_id, kind, key, version, definition, meta, stream_maxlen, if_listed)
    script = client.register_script(APPLY_CHANGE_LUA)
    return _apply_result(script(keys=keys, args=args))


PURGE_LUA = """
local field = ARGV[2] .. ':' .. ARGV[3]
local held = redis.call('HGET', KEYS[1], field)
if not held then
  return {0, tonumber(redis.call('GET', KEYS[3]) or '0'), ''}
end
redis.call('HDEL', KEYS[2], ARGV[3])
redis.call('HDEL', KEYS[1], field)
local rev = redis.call('INCR', KEYS[3])
local id = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*',
  'rev', rev, 'op', 'delete', 'kind', ARGV[2], 'key', ARGV[3], 'version', held)
return {1, rev, id}
"""


def purge_change(
    client: redis.Redis, prefix: str, env_id: str, kind: Kind, key: str, *, stream_maxlen: int = STREAM_MAXLEN
) -> bool:
    """Delete a key **and its version** (no tombstone): for entries PostgreSQL never had, so that a key
    created there later starts from its own first version. Appends a delete event. True if it existed."""
    keys, _ = _apply_args(prefix, env_id, kind, key, 0, None, None, stream_maxlen)
    script = client.register_script(PURGE_LUA)
    applied, _rev, _id = script(keys=keys[:4], args=[env_id, kind, key, str(stream_maxlen)])
    return bool(applied)


@dataclass(frozen=True, slots=True)
class Change:
    """One change for :func:`apply_changes` (``definition=None`` deletes)."""

    kind: Kind
    key: str
    version: int
    definition: Mapping[str, Any] | None


def apply_changes(
    client: redis.Redis,
    prefix: str,
    env_id: str,
    changes: Iterable[Change],
    meta: Mapping[str, str] | None = None,
    *,
    stream_maxlen: int = STREAM_MAXLEN,
    atomic: bool = False,
    if_listed: bool = False,
) -> list[ApplyResult]:
    """:func:`apply_change` for many changes in one round trip (a pipeline; each change is its own guarded
    script call, applied in order). ``atomic`` wraps them in MULTI/EXEC, so no reader sees some of them
    without the others (restoring a whole environment); with ``if_listed`` too, either all of them are
    written or, Redis not listing the environment, none."""
    script = client.register_script(APPLY_CHANGE_LUA)
    with client.pipeline(transaction=atomic) as pipe:
        for change in changes:
            keys, args = _apply_args(
                prefix,
                env_id,
                change.kind,
                change.key,
                change.version,
                change.definition,
                meta,
                stream_maxlen,
                if_listed,
            )
            script(keys=keys, args=args, client=pipe)
        return [_apply_result(raw) for raw in pipe.execute()]


async def apply_change_async(
    client: redis.asyncio.Redis,
    prefix: str,
    env_id: str,
    kind: Kind,
    key: str,
    version: int,
    definition: Mapping[str, Any] | None,
    meta: Mapping[str, str] | None = None,
    *,
    stream_maxlen: int = STREAM_MAXLEN,
) -> ApplyResult:
    """:func:`apply_change` for an asyncio client."""
    keys, args = _apply_args(prefix, env_id, kind, key, version, definition, meta, stream_maxlen)
    script = client.register_script(APPLY_CHANGE_LUA)
    return _apply_result(await script(keys=keys, args=args))


# --- SDK keys -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SdkKeyRecord:
    environment_id: str
    project: str
    environment: str
    expires_at: float | None
    """Unix seconds; ``None`` never expires."""

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def hash_sdk_key(sdk_key: str) -> str:
    """SHA-256 hex of an SDK key: the field of ``P:sdkkeys`` (the raw key is never stored)."""
    return hashlib.sha256(sdk_key.encode()).hexdigest()


def _check_hash(key_hash: str) -> None:
    if not _SHA256_HEX.match(key_hash):
        raise RedisContractError("an SDK key hash is 64 lowercase hex characters (see hash_sdk_key)")


def put_sdk_key(client: redis.Redis, prefix: str, key_hash: str, record: SdkKeyRecord) -> None:
    """Register (or replace) the SDK key whose SHA-256 hex is ``key_hash``."""
    _check_hash(key_hash)
    value = orjson.dumps(
        {
            "environment_id": record.environment_id,
            "project": record.project,
            "environment": record.environment,
            "expires_at": record.expires_at,
        }
    )
    client.hset(sdkkeys_key(prefix), key_hash, value)


def delete_sdk_key(client: redis.Redis, prefix: str, key_hash: str) -> bool:
    """Revoke an SDK key; True if it existed. Data planes notice within their key cache's lifetime."""
    _check_hash(key_hash)
    return bool(client.hdel(sdkkeys_key(prefix), key_hash))


def parse_sdk_key(raw: bytes | str) -> SdkKeyRecord:
    """Decode a ``P:sdkkeys`` value; :class:`RedisContractError` if it is not one."""
    try:
        data = orjson.loads(raw)
        expires_at = data.get("expires_at")
        if expires_at is not None and (type(expires_at) not in (int, float)):
            raise TypeError("expires_at")
        env = data["environment_id"]
        if type(env) is not str or not env:
            raise TypeError("environment_id")
        return SdkKeyRecord(
            environment_id=env,
            project=str(data.get("project") or ""),
            environment=str(data.get("environment") or ""),
            expires_at=None if expires_at is None else float(expires_at),
        )
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
        raise RedisContractError(f"bad SDK key record: {exc}") from exc


async def get_sdk_key(client: redis.asyncio.Redis, prefix: str, key_hash: str) -> SdkKeyRecord | None:
    """The record of an SDK key hash, or None if unknown. Raises redis errors and RedisContractError."""
    raw = await client.hget(sdkkeys_key(prefix), key_hash)
    return None if raw is None else parse_sdk_key(raw)


# --- Evaluation counts (the data plane writes what SDKs report; the control plane reads) ---------------

_SEP = "\x1f"
MAX_STORED_COUNT = MAX_VERSION - 1
"""A usage counter saturates here: Lua adds counts as doubles, exact up to 2**53 (and JSON readers too)."""


@dataclass(frozen=True, slots=True)
class EvaluationCount:
    flag: str
    variant: str
    """Empty when the caller's default was served."""
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class RecordedEvaluations:
    recorded: int
    """Evaluations added to the environment's counters."""
    dropped: int
    """Entries not stored because the environment already holds ``max_fields`` counters."""


# KEYS: evaluations, evaluated_at
# ARGV: max_fields, max_count, last_evaluated_at, then per entry: field, flag, count
# Returns {evaluations recorded, entries dropped}.
RECORD_EVALUATIONS_LUA = """
local max_fields = tonumber(ARGV[1])
local max_count = tonumber(ARGV[2])
local stamp = tonumber(ARGV[3])
local fields = redis.call('HLEN', KEYS[1])
local recorded, dropped = 0, 0
for i = 4, #ARGV, 3 do
  local held = redis.call('HGET', KEYS[1], ARGV[i])
  if held or fields < max_fields then
    if not held then fields = fields + 1 end
    local count = tonumber(ARGV[i + 2])
    local total = (tonumber(held) or 0) + count
    if total > max_count then total = max_count end
    redis.call('HSET', KEYS[1], ARGV[i], string.format('%.0f', total))
    recorded = recorded + count
    local last = tonumber(redis.call('HGET', KEYS[2], ARGV[i + 1]))
    if not last or last < stamp then
      redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[3])
    end
  else
    dropped = dropped + 1
  end
end
return {recorded, dropped}
"""


async def record_evaluations(
    client: redis.asyncio.Redis,
    prefix: str,
    env_id: str,
    counts: Iterable[EvaluationCount],
    last_evaluated_at: int,
    *,
    max_fields: int = limits.MAX_USAGE_FIELDS,
) -> RecordedEvaluations:
    """Add reported counts to ``P:env:{env}:evaluations`` and stamp ``P:env:{env}:evaluated_at``, atomically.

    The caller validated the entries (keys of existing flags, counts in range). A counter new to the
    environment is created only while it holds fewer than ``max_fields`` (an entry past that is dropped, and
    counted in the result), so no stream of reports grows Redis without bound; counters saturate at
    :data:`MAX_STORED_COUNT`, and a flag's stamp only moves forward (a late report never makes a flag look
    older). A value that is not a number (written by something else) is replaced.
    """
    keys = EnvKeys(prefix, env_id)
    args: list[str | int] = [max_fields, MAX_STORED_COUNT, last_evaluated_at]
    for c in counts:
        args += [f"{c.flag}{_SEP}{c.variant}{_SEP}{c.reason}", c.flag, c.count]
    if len(args) == 3:
        return RecordedEvaluations(0, 0)
    script = client.register_script(RECORD_EVALUATIONS_LUA)
    recorded, dropped = await script(keys=[keys.evaluations, keys.evaluated_at], args=args)
    return RecordedEvaluations(int(recorded), int(dropped))


@dataclass(frozen=True, slots=True)
class FlagUsage:
    evaluations: int
    variants: dict[str, int]
    reasons: dict[str, int]
    last_evaluated_at: int | None


def read_evaluations(
    client: redis.Redis, prefix: str, env_id: str, *, now: float | None = None
) -> dict[str, FlagUsage]:
    """Reported evaluations per flag of an environment.

    Whatever the hashes hold is read without failing: a field that is not ``flag\\x1fvariant\\x1freason``,
    a count that is not a non-negative integer and a stamp that is not a non-negative number are skipped;
    counts saturate at :data:`MAX_STORED_COUNT` and a stamp in the future reads as ``now`` (data written
    before reports were validated, or by another writer, must not break the page that shows them).
    """
    keys = EnvKeys(prefix, env_id)
    with client.pipeline(transaction=True) as pipe:
        pipe.hgetall(keys.evaluations)
        pipe.hgetall(keys.evaluated_at)
        counts, stamps = pipe.execute()
    latest = int(time.time() if now is None else now)
    totals: dict[str, int] = {}
    variants: dict[str, dict[str, int]] = {}
    reasons: dict[str, dict[str, int]] = {}
    for field, raw in counts.items():
        parts = _lenient_text(field).split(_SEP)
        n = _stored_int(raw)
        if len(parts) != 3 or n is None:
            continue
        flag, variant, reason = parts
        totals[flag] = min(totals.get(flag, 0) + n, MAX_STORED_COUNT)
        by_variant = variants.setdefault(flag, {})
        by_variant[variant] = min(by_variant.get(variant, 0) + n, MAX_STORED_COUNT)
        by_reason = reasons.setdefault(flag, {})
        by_reason[reason] = min(by_reason.get(reason, 0) + n, MAX_STORED_COUNT)
    last: dict[str, int] = {}
    for field, raw in stamps.items():
        stamp = _stored_int(raw)
        if stamp is not None:
            last[_lenient_text(field)] = min(stamp, latest)
    return {
        flag: FlagUsage(totals.get(flag, 0), variants.get(flag, {}), reasons.get(flag, {}), last.get(flag))
        for flag in totals.keys() | last.keys()
    }


def _stored_int(raw: bytes | str) -> int | None:
    """A non-negative integer as Redis holds it (``"12"``, or ``"1.2e+15"`` from an older Lua writer)."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    if not 0 <= value < float("inf"):
        return None
    return min(int(value), MAX_STORED_COUNT)


def _lenient_text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


# --- Served revisions (each data plane writes its own; the control plane reads) -------------------------

SERVED_STALE_SECONDS = 30.0
"""A report older than this is ignored by readers: its data plane stopped, or lost Redis."""
SERVED_TTL_SECONDS = 60.0
"""Every report gives the whole ``served`` hash this TTL and drops fields older than it, so the hash lives
only while some data plane reports and holds no more fields than instances reporting within a minute."""
SERVED_REPORT_SECONDS = 5.0
"""How often a data plane reports at most between changes (well inside :data:`SERVED_STALE_SECONDS`)."""
MAX_INSTANCE_ID = 64
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def check_instance_id(instance_id: str) -> str:
    """The instance id, or :class:`RedisContractError` saying what is wrong with it."""
    if not _INSTANCE_ID.match(instance_id):
        raise RedisContractError(
            f"an instance id is 1-{MAX_INSTANCE_ID} characters of A-Z a-z 0-9 . _ - (got {len(instance_id)} "
            "characters, or others)"
        )
    return instance_id


# KEYS: served hash, rev. ARGV: instance id, value, now ms, ttl ms.
# Returns 1, or 0 (nothing written) when Redis holds no revision for the environment.
REPORT_SERVED_LUA = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local oldest = tonumber(ARGV[3]) - tonumber(ARGV[4])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local stamp = tonumber(string.match(all[i + 1], ':(%d+)$') or '0')
  if stamp < oldest then
    redis.call('HDEL', KEYS[1], all[i])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""


async def report_served(
    client: redis.asyncio.Redis,
    prefix: str,
    instance_id: str,
    revisions: Mapping[str, int],
    *,
    now_ms: int | None = None,
) -> None:
    """Write ``instance_id``'s served revision of each environment (env id → revision), one pipeline.

    Only into environments Redis holds a revision for: a data plane keeps serving an environment the
    syncer dropped (deleted, or lost with Redis's data), and its reports must not keep the key alive."""
    check_instance_id(instance_id)
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    ttl_ms = int(SERVED_TTL_SECONDS * 1000)
    script = client.register_script(REPORT_SERVED_LUA)
    async with client.pipeline(transaction=False) as pipe:
        for env_id, revision in revisions.items():
            keys = EnvKeys(prefix, env_id)
            await script(
                keys=[keys.served, keys.rev],
                args=[instance_id, f"{int(revision)}:{stamp}", stamp, ttl_ms],
                client=pipe,
            )
        await pipe.execute()


async def withdraw_served(
    client: redis.asyncio.Redis, prefix: str, instance_id: str, env_ids: Iterable[str]
) -> None:
    """Remove ``instance_id``'s reports (a data plane stopping: it serves nothing any more)."""
    check_instance_id(instance_id)
    async with client.pipeline(transaction=False) as pipe:
        for env_id in env_ids:
            pipe.hdel(EnvKeys(prefix, env_id).served, instance_id)
        await pipe.execute()


@dataclass(frozen=True, slots=True)
class ServedRevision:
    instance_id: str
    revision: int
    reported_at_ms: int


@dataclass(frozen=True, slots=True)
class PropagationState:
    """What Redis holds of one environment's propagation, read in one MULTI/EXEC."""

    revision: int | None
    """``P:env:{id}:rev`` (None when absent: the syncer never wrote the environment, or Redis lost it)."""
    versions: dict[str, int]
    """``P:env:{id}:versions``: the highest version held per ``kind:key`` (tombstones too)."""
    present: set[str]
    """``kind:key`` of every definition held (the flags and segments hashes' fields)."""
    served: list[ServedRevision]
    """Reports younger than ``max_age``, by instance id."""


def read_propagation(
    client: redis.Redis,
    prefix: str,
    env_id: str,
    *,
    now: float | None = None,
    max_age: float = SERVED_STALE_SECONDS,
) -> PropagationState:
    """An environment's stored revision, held versions and definitions, and its live served reports.

    Lenient like :func:`read_evaluations`: a version or report that does not parse, or a report stamped in
    the future by more than ``max_age``, is skipped rather than failing the read.
    """
    keys = EnvKeys(prefix, env_id)
    with client.pipeline(transaction=True) as pipe:
        pipe.get(keys.rev)
        pipe.hgetall(keys.versions)
        pipe.hkeys(keys.flags)
        pipe.hkeys(keys.segments)
        pipe.hgetall(keys.served)
        rev, versions, flags, segments, served = pipe.execute()
    now_ms = int((time.time() if now is None else now) * 1000)
    oldest, newest = now_ms - int(max_age * 1000), now_ms + int(max_age * 1000)
    held: dict[str, int] = {}
    for field, raw in versions.items():
        version = _stored_int(raw)
        if version is not None:
            held[_lenient_text(field)] = version
    reports = []
    for field, raw in served.items():
        revision_text, _, stamp_text = _lenient_text(raw).partition(":")
        if not (revision_text.isdigit() and stamp_text.isdigit()):
            continue
        stamp = int(stamp_text)
        if oldest <= stamp <= newest:
            reports.append(ServedRevision(_lenient_text(field), int(revision_text), stamp))
    reports.sort(key=lambda r: r.instance_id)
    return PropagationState(
        revision=_stored_int(rev) if rev is not None else None,
        versions=held,
        present={f"flag:{_lenient_text(k)}" for k in flags}
        | {f"segment:{_lenient_text(k)}" for k in segments},
        served=reports,
    )


# --- Readers ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredDefinition:
    version: int
    definition: dict[str, Any]


def parse_stored(raw: bytes | str) -> StoredDefinition:
    """Decode a value of the flags or segments hash; :class:`RedisContractError` if it is not one."""
    try:
        data = orjson.loads(raw)
        version = data["version"]
        definition = data["definition"]
    except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
        raise RedisContractError(f"bad stored definition: {exc}") from exc
    if type(version) is not int or type(definition) is not dict:
        raise RedisContractError("bad stored definition: version must be an integer, definition an object")
    return StoredDefinition(version, definition)


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of ``P:env:{env}:events``."""

    event_id: str
    revision: int
    op: Op
    kind: Kind
    key: str
    version: int


def parse_event(event_id: bytes | str, fields: Mapping[Any, Any]) -> Event:
    """Decode a stream entry; :class:`RedisContractError` if it is not one of the contract's."""
    try:
        values = {_text(k): _text(v) for k, v in fields.items()}
        op, kind = values["op"], values["kind"]
        if op not in ("put", "delete") or kind not in KINDS:
            raise ValueError(f"op {op!r} / kind {kind!r}")
        return Event(
            event_id=_text(event_id),
            revision=int(values["rev"]),
            op=op,  # type: ignore[arg-type]
            kind=kind,
            key=values["key"],
            version=int(values["version"]),
        )
    except (KeyError, ValueError) as exc:
        raise RedisContractError(f"bad stream event {_text(event_id)}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class EnvironmentData:
    """An environment as Redis holds it, read atomically: ``flags``/``segments`` are raw stored values."""

    env_id: str
    revision: int
    last_event_id: str
    """The id of the newest stream event ("" if the stream is empty): follow the stream from here."""
    exists: bool
    """False when Redis holds nothing for this environment (no revision)."""
    flags: dict[str, bytes]
    segments: dict[str, bytes]
    meta: dict[str, str]


def _environment_data(env_id: str, raw: list[Any]) -> EnvironmentData:
    rev, flags, segments, meta, last = raw
    return EnvironmentData(
        env_id=env_id,
        revision=int(rev) if rev is not None else 0,
        last_event_id=_text(last[0][0]) if last else "",
        exists=rev is not None,
        flags={_text(k): _bytes(v) for k, v in flags.items()},
        segments={_text(k): _bytes(v) for k, v in segments.items()},
        meta={_text(k): _text(v) for k, v in meta.items()},
    )


async def load_environment(client: redis.asyncio.Redis, prefix: str, env_id: str) -> EnvironmentData:
    """Read an environment consistently (one MULTI/EXEC): revision, definitions, metadata, last event id."""
    keys = EnvKeys(prefix, env_id)
    async with client.pipeline(transaction=True) as pipe:
        pipe.get(keys.rev)
        pipe.hgetall(keys.flags)
        pipe.hgetall(keys.segments)
        pipe.hgetall(keys.meta)
        pipe.xrevrange(keys.events, count=1)
        raw = await pipe.execute()
    return _environment_data(env_id, raw)


def load_environment_sync(client: redis.Redis, prefix: str, env_id: str) -> EnvironmentData:
    """:func:`load_environment` for a synchronous client (tools and tests)."""
    keys = EnvKeys(prefix, env_id)
    with client.pipeline(transaction=True) as pipe:
        pipe.get(keys.rev)
        pipe.hgetall(keys.flags)
        pipe.hgetall(keys.segments)
        pipe.hgetall(keys.meta)
        pipe.xrevrange(keys.events, count=1)
        raw = pipe.execute()
    return _environment_data(env_id, raw)


async def list_environments(client: redis.asyncio.Redis, prefix: str) -> set[str]:
    """Every environment id the syncer has written (``P:envs``)."""
    return {_text(m) for m in await client.smembers(envs_key(prefix))}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
