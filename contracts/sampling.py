"""Context samples for impact previews: the policy an environment opts in with, and the sample itself.

An environment samples only when an admin opts it in, naming the attributes a sample may keep: some in
clear (``attributes``: plan, country, app version — what rules test and nobody is identified by) and
some hashed (``hashed``: the targeting key, an email), as ``h:`` + the first 32 hex characters of
HMAC-SHA256 keyed by the policy's per-environment ``salt``. Every other attribute is dropped before a
sample is stored, by :func:`sanitize`, in the data plane (SDKs in local mode send their samples there
in ``ReportEvaluations``, so one place enforces the policy). A hashed value keeps splits statistically
faithful (a hashed key buckets like any other key) but no longer matches a rule naming the clear value.

Redis (``P`` the prefix, ``{id}`` the environment id):

* ``P:env:{id}:sampling`` — the policy (:func:`dump_policy`), written by the syncer from the control
  plane's environment settings; absent when the environment does not sample.
* ``P:env:{id}:samples`` — hash, field = the sample's fingerprint (a hash of its JSON), value = the
  sanitized context as JSON; ``P:env:{id}:samples:seen`` — sorted set, the same fingerprints scored by
  when they were last seen (Unix ms). :func:`store_samples` adds and refreshes samples and evicts the
  least recently seen past :data:`~flagyard.rule_engine.limits.MAX_SAMPLE_CONTEXTS`, in one Lua script,
  and gives both keys a TTL of :data:`~flagyard.rule_engine.limits.SAMPLE_TTL_SECONDS`; so an
  environment's sample never holds more than ``MAX_SAMPLE_CONTEXTS`` contexts of at most
  ``MAX_SAMPLE_ATTRIBUTES`` values of ``MAX_SAMPLE_VALUE_BYTES`` each. The syncer deletes all three keys
  with the environment, and the sample when sampling is turned off.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis
import redis.asyncio

from flagyard.rule_engine import limits

from .redis import EnvKeys, RedisContractError

HASH_PREFIX = "h:"
_ATTRIBUTE = re.compile(r"^[A-Za-z0-9_$-]{1,64}(\.[A-Za-z0-9_$-]{1,64}){0,3}$")
"""A context attribute path as clauses name it: up to four dotted parts."""
_SALT = re.compile(r"^[0-9a-f]{32,64}$")


def policy_key(prefix: str, env_id: str) -> str:
    return f"{EnvKeys(prefix, env_id).base}:sampling"


def samples_key(prefix: str, env_id: str) -> str:
    return f"{EnvKeys(prefix, env_id).base}:samples"


def seen_key(prefix: str, env_id: str) -> str:
    return f"{EnvKeys(prefix, env_id).base}:samples:seen"


def sampling_keys(prefix: str, env_id: str) -> tuple[str, str, str]:
    """Every key of an environment's sampling, for deletion with the environment."""
    return policy_key(prefix, env_id), samples_key(prefix, env_id), seen_key(prefix, env_id)


@dataclass(frozen=True, slots=True)
class SamplingPolicy:
    attributes: tuple[str, ...]
    """Kept in clear."""
    hashed: tuple[str, ...]
    """Kept as ``h:`` + HMAC-SHA256(salt, value) (first 32 hex characters)."""
    salt: str
    """Hex, per environment; never shown by the API."""

    def __repr__(self) -> str:
        return f"SamplingPolicy(attributes={self.attributes!r}, hashed={self.hashed!r})"


def policy_issues(attributes: Iterable[str], hashed: Iterable[str]) -> list[tuple[str, str]]:
    """Problems of a policy as ``(field, message)`` pairs (field ``attributes`` or ``hashed``, with the
    index); empty when it may be stored. Checked by the control plane at the edge and again here."""
    issues: list[tuple[str, str]] = []
    clear, secret = list(attributes), list(hashed)
    if len(clear) + len(secret) > limits.MAX_SAMPLE_ATTRIBUTES:
        issues.append(
            ("attributes", f"{len(clear) + len(secret)} attributes, at most {limits.MAX_SAMPLE_ATTRIBUTES}")
        )
    seen: set[str] = set()
    for name, names in (("attributes", clear), ("hashed", secret)):
        for i, attr in enumerate(names):
            if type(attr) is not str or not _ATTRIBUTE.match(attr):
                issues.append(
                    (f"{name}/{i}", "not an attribute path (1-4 dotted parts of A-Z a-z 0-9 _ $ -)")
                )
            elif attr in seen:
                issues.append((f"{name}/{i}", f"'{attr}' is named twice"))
            else:
                seen.add(attr)
    return issues


def dump_policy(policy: SamplingPolicy) -> bytes:
    issues = policy_issues(policy.attributes, policy.hashed)
    if issues or not _SALT.match(policy.salt):
        raise RedisContractError(f"bad sampling policy: {issues or 'salt'}")
    return orjson.dumps(
        {"attributes": list(policy.attributes), "hashed": list(policy.hashed), "salt": policy.salt}
    )


def parse_policy(raw: bytes | str) -> SamplingPolicy:
    """Decode ``P:env:{id}:sampling``; :class:`RedisContractError` if it is not a valid policy."""
    try:
        data = orjson.loads(raw)
        attributes = tuple(data["attributes"])
        hashed = tuple(data["hashed"])
        salt = data["salt"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise RedisContractError(f"bad sampling policy: {type(exc).__name__}") from exc
    if policy_issues(attributes, hashed) or type(salt) is not str or not _SALT.match(salt):
        raise RedisContractError("bad sampling policy: attributes, hashed or salt out of contract")
    return SamplingPolicy(attributes, hashed, salt)


def put_policy(client: redis.Redis, prefix: str, env_id: str, policy: SamplingPolicy | None) -> None:
    """Publish (or, with ``None``, withdraw) an environment's policy. Withdrawing deletes the sample."""
    if policy is None:
        client.delete(*sampling_keys(prefix, env_id))
    else:
        client.set(policy_key(prefix, env_id), dump_policy(policy))


async def get_policy(client: redis.asyncio.Redis, prefix: str, env_id: str) -> SamplingPolicy | None:
    """The environment's policy, or ``None`` when it does not sample. Raises redis errors and
    :class:`RedisContractError`."""
    raw = await client.get(policy_key(prefix, env_id))
    return None if raw is None else parse_policy(raw)


def _lookup(context: Mapping[str, Any], path: str) -> Any:
    value: Any = context
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _place(sample: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = sample
    for part in parents:
        child = node.get(part)
        if type(child) is not dict:
            child = node[part] = {}
        node = child
    node[last] = value


def _scalar(value: Any) -> bool:
    return value is None or type(value) in (str, int, float, bool)


def _clear_value(value: Any) -> Any:
    """``value`` if it may be kept in clear (a scalar, or a flat list of scalars, small), else ``None``."""
    if not (_scalar(value) or (type(value) is list and all(_scalar(v) for v in value))):
        return None
    try:
        encoded = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return None
    return value if len(encoded) <= limits.MAX_SAMPLE_VALUE_BYTES else None


def hash_value(salt: str, value: Any) -> str | None:
    """The hashed form of a string or integer attribute (what bucketing accepts too), else ``None``."""
    if type(value) is str:
        text = value
    elif type(value) is int:
        text = str(value)
    else:
        return None
    digest = hmac.new(bytes.fromhex(salt), text.encode(), hashlib.sha256).hexdigest()
    return HASH_PREFIX + digest[:32]


def sanitize(policy: SamplingPolicy, context: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a sample keeps of ``context``: the policy's clear attributes (scalars and flat lists of at
    most ``MAX_SAMPLE_VALUE_BYTES``) and hashed attributes (strings and integers), nothing else.
    ``None`` when nothing is left."""
    sample: dict[str, Any] = {}
    for path in policy.attributes:
        raw = _lookup(context, path)
        if raw is None:
            continue
        value = _clear_value(raw)
        if value is not None:
            _place(sample, path, value)
    for path in policy.hashed:
        hashed = hash_value(policy.salt, _lookup(context, path))
        if hashed is not None:
            _place(sample, path, hashed)
    return sample or None


def encode_sample(sample: Mapping[str, Any]) -> tuple[str, str]:
    """``(fingerprint, JSON)`` of a sample: equal samples share a fingerprint, so they are held once."""
    encoded = orjson.dumps(sample, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(encoded).hexdigest()[:32], encoded.decode()


# KEYS: samples, seen, policy
# ARGV: capacity, ttl seconds, now ms, then per sample: fingerprint, json
# Returns the number of samples the set holds afterwards, or -1 (nothing written) without a policy.
STORE_SAMPLES_LUA = """
if redis.call('EXISTS', KEYS[3]) == 0 then
  return -1
end
local capacity = tonumber(ARGV[1])
local now = tonumber(ARGV[3])
for i = 4, #ARGV, 2 do
  redis.call('ZADD', KEYS[2], now, ARGV[i])
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
local held = redis.call('ZCARD', KEYS[2])
if held > capacity then
  local evicted = redis.call('ZPOPMIN', KEYS[2], held - capacity)
  for i = 1, #evicted, 2 do
    redis.call('HDEL', KEYS[1], evicted[i])
  end
  held = capacity
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return held
"""


async def store_samples(
    client: redis.asyncio.Redis,
    prefix: str,
    env_id: str,
    samples: Iterable[Mapping[str, Any]],
    now_ms: int,
    *,
    capacity: int = limits.MAX_SAMPLE_CONTEXTS,
) -> int:
    """Add sanitized samples (see :func:`sanitize`) to the environment's sample, refreshing ones already
    held and evicting the least recently seen past ``capacity``; the number held afterwards.

    Only while the environment's policy exists, checked in the same script: a flush racing the syncer's
    withdrawal (which deletes policy and sample together) writes nothing and returns -1, so no sample
    outlives the opt-out."""
    args: list[str | int] = [capacity, limits.SAMPLE_TTL_SECONDS, now_ms]
    for sample in samples:
        args += encode_sample(sample)
    if len(args) == 3:
        return 0
    script = client.register_script(STORE_SAMPLES_LUA)
    held = await script(
        keys=[samples_key(prefix, env_id), seen_key(prefix, env_id), policy_key(prefix, env_id)], args=args
    )
    return int(held)


def read_samples(client: redis.Redis, prefix: str, env_id: str) -> list[dict[str, Any]]:
    """Every context the environment's sample holds (at most ``MAX_SAMPLE_CONTEXTS``); values that are
    not JSON objects (written by something else) are skipped."""
    samples: list[dict[str, Any]] = []
    for raw in client.hvals(samples_key(prefix, env_id)):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if type(value) is dict:
            samples.append(value)
    return samples
