"""The syncer: committed state in PostgreSQL → validated definitions in Redis, under the version guard.

A job names what changed (environment, flag/segment/environment/sdk_key, key, version); the syncer reads
the *current* committed state rather than trusting the job, so a job that arrives late, twice or out of
order writes the newest state or nothing (the guard in Redis refuses anything not newer). A burst of
changes to one flag therefore coalesces: the first job writes the newest version, the rest are no-ops.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
import redis
import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session, sessionmaker

from flagyard.contracts.redis import (
    Change,
    EnvironmentData,
    EnvKeys,
    SdkKeyRecord,
    delete_sdk_key,
    envs_key,
    load_environment_sync,
    parse_stored,
    purge_change,
    put_sdk_key,
    sdkkeys_key,
)
from flagyard.contracts.redis import apply_change as redis_apply_change
from flagyard.contracts.redis import apply_changes as redis_apply_changes
from flagyard.contracts.sampling import (
    SamplingPolicy,
    dump_policy,
    parse_policy,
    policy_key,
    put_policy,
    samples_key,
    sampling_keys,
    seen_key,
)
from flagyard.db import mapping
from flagyard.db.models import (
    ApiKey,
    Environment,
    Flag,
    FlagEnvironment,
    OutboxEntry,
    Project,
    Segment,
)
from flagyard.rule_engine import (
    DefinitionError,
    Document,
    compile_flag,
    compile_segment,
    validate_flag,
    validate_segment,
)

from . import metrics
from .exceptions import ChangeFailedError, InvalidDefinitionError, StoreUnavailableError

log = structlog.get_logger("flagyard.syncer")

Outcome = Literal["applied", "ignored", "invalid", "dropped", "batched", "missing", "failed"]
"""``missing``: Redis no longer lists the environment, nothing was written; :meth:`Syncer._sync` restores
the whole environment instead (it lost its data after the syncer looked), so no job reports it."""
ENTITY_TYPES = ("flag", "segment", "environment", "sdk_key")
STORE_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError, redis.RedisError)
"""PostgreSQL or Redis unreachable: the whole job or pass fails and is retried. Any other exception is about
one change, definition or environment and is isolated to it."""
UNREADABLE = (ValueError, TypeError, KeyError)
"""What the ORM ↔ rule-engine mapping raises for a stored row it cannot read (pydantic's ValidationError is a
ValueError): a poison definition written past the API, treated like one that fails validation."""


@dataclass(frozen=True, slots=True)
class EnvironmentInfo:
    id: int
    project_id: int
    project_key: str
    key: str

    @property
    def meta(self) -> dict[str, str]:
        return {"project": self.project_key, "environment": self.key}


@dataclass
class _Applied:
    count: int = 0
    missing: bool = False
    """Redis did not list the environment, so nothing was written (see :meth:`Syncer._atomically`)."""


class Syncer:
    """Reads PostgreSQL through the control plane's ORM ↔ rule-engine mapping; writes the Redis contract."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        client: redis.Redis,
        prefix: str,
        *,
        stream_maxlen: int = 10_000,
    ) -> None:
        self._sessions = sessions
        self._redis = client
        self._prefix = prefix
        self._stream_maxlen = stream_maxlen
        self._local = threading.local()
        """Holds ``batch``: the changes :meth:`_atomically` collects in this thread. Per thread, because the
        reconcile runs in a thread of the worker whose jobs use this same syncer: a shared batch let one
        collect the other's changes and end it early, writing part of a restore outside its transaction."""

    @property
    def _batch(self) -> list[Change] | None:
        batch: list[Change] | None = getattr(self._local, "batch", None)
        return batch

    @contextlib.contextmanager
    def _atomically(self, env: EnvironmentInfo, *, restore: bool = False) -> Iterator[_Applied]:
        """Collect the changes :meth:`_apply` would write and write them in one MULTI/EXEC at the end, so a
        data plane reloading the environment meanwhile never sees part of it (a restore after Redis lost
        its data, a reconcile). Only a ``restore`` (the whole environment) may write an environment Redis
        does not list; otherwise nothing is written and ``missing`` is set."""
        applied = _Applied()
        batch: list[Change] = []
        self._local.batch = batch
        try:
            yield applied
        finally:
            self._local.batch = None
        if not batch:
            return
        results = redis_apply_changes(
            self._redis,
            self._prefix,
            str(env.id),
            batch,
            env.meta,
            stream_maxlen=self._stream_maxlen,
            atomic=True,
            if_listed=not restore,
        )
        if any(result.missing for result in results):
            applied.missing = True
            return
        for change, result in zip(batch, results, strict=True):
            metrics.CHANGES.labels(change.kind, "applied" if result.applied else "ignored").inc()
            applied.count += result.applied
            if change.definition is None and not result.applied:
                log.warning("reconcile.stale_kept", environment_id=env.id, kind=change.kind, key=change.key)

    # --- jobs ---------------------------------------------------------------------------------------

    def sync_change(
        self,
        environment_id: int,
        entity_type: str,
        entity_key: str,
        version: int,
        outbox_id: int | None = None,
    ) -> Outcome:
        """Handle one change; raises :class:`StoreUnavailableError` when a retry may help."""
        change = {
            "environment_id": environment_id,
            "entity_type": entity_type,
            "entity_key": entity_key,
            "version": version,
            "outbox_id": outbox_id,
        }
        (outcome,) = self._run([change], skip_invalid=False)
        return outcome

    def sync_changes(self, changes: list[dict[str, Any]]) -> dict[str, int]:
        """Handle a batch job in one session. Changes to the same entity coalesce (the syncer reads the
        current state anyway); an unknown entity type is logged and skipped. A transient failure fails
        the whole job, which is safe to retry because applying is idempotent."""
        newest: dict[tuple[int, str, str], dict[str, Any]] = {}
        for change in changes:
            key = (int(change["environment_id"]), str(change["entity_type"]), str(change["entity_key"]))
            if key not in newest or int(change["version"]) > int(newest[key]["version"]):
                newest[key] = change
        outcomes: dict[str, int] = {}
        for outcome in self._run(list(newest.values()), skip_invalid=True):
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return outcomes

    def _run(self, changes: list[dict[str, Any]], *, skip_invalid: bool) -> list[Outcome]:
        started = time.perf_counter()
        outcomes: list[Outcome] = []
        applied: list[int] = []
        failed: list[str] = []
        try:
            with self._sessions() as session:
                envs: dict[int, EnvironmentInfo | None] = {}
                for change in changes:
                    env_id, entity_type = int(change["environment_id"]), str(change["entity_type"])
                    key, version = str(change["entity_key"]), int(change["version"])
                    try:
                        outcome = self._sync(session, env_id, entity_type, key, version, envs)
                    except InvalidDefinitionError as exc:
                        if not skip_invalid:
                            raise
                        log.error(
                            "change.skipped", environment_id=env_id, entity_type=entity_type, error=str(exc)
                        )
                        outcome = "invalid"
                    except STORE_ERRORS:
                        raise
                    except Exception as exc:
                        # One change must not stop the others of its job: count it, carry on, and fail the
                        # job at the end so RQ retries it (the changes written meanwhile are no-ops then).
                        _failed("change", exc, environment_id=env_id, entity_type=entity_type, key=key)
                        session.rollback()
                        envs.pop(env_id, None)
                        failed.append(f"{entity_type} {key!r} of environment {env_id}")
                        outcome = "failed"
                    outcomes.append(outcome)
                    if outcome == "applied" and change.get("outbox_id") is not None:
                        applied.append(int(change["outbox_id"]))
                    log.info(
                        "change.synced",
                        environment_id=env_id,
                        entity_type=entity_type,
                        key=key,
                        version=version,
                        outcome=outcome,
                    )
                self._observe_propagation(session, applied)
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise StoreUnavailableError(f"PostgreSQL: {exc}") from exc
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Redis: {exc}") from exc
        metrics.JOB_SECONDS.observe(time.perf_counter() - started)
        if failed:
            raise ChangeFailedError(
                f"{len(failed)} of {len(changes)} changes failed (the others were applied): "
                + "; ".join(failed)
            )
        return outcomes

    def _sync(
        self,
        session: Session,
        environment_id: int,
        entity_type: str,
        key: str,
        version: int,
        envs: dict[int, EnvironmentInfo | None],
    ) -> Outcome:
        if entity_type not in ENTITY_TYPES:
            raise InvalidDefinitionError(f"unknown entity type {entity_type!r}")
        if entity_type == "sdk_key":
            return self._sync_sdk_key(session, int(key))
        restored = False
        if environment_id not in envs:
            envs[environment_id] = info = _environment(session, environment_id)
            if info is not None and not self._redis.sismember(envs_key(self._prefix), str(info.id)):
                # Redis does not list the environment: it is new, or Redis lost its data (restarted empty)
                # and the reconcile has not run yet.
                self._restore(session, info)
                restored = True
        env = envs[environment_id]
        if env is None:
            self.drop_environment(environment_id)
            return "dropped"
        if entity_type == "environment":
            if not restored:
                self._push_environment(session, env)
            return "applied"
        if entity_type == "flag":
            outcome = self._sync_flag(session, env, key, version)
        else:
            outcome = self._sync_segment(session, env, key, version)
        if outcome == "missing":  # Redis lost its data since the check above
            self._restore(session, env)
            return "applied"
        return "applied" if restored and outcome == "ignored" else outcome

    def _sync_flag(self, session: Session, env: EnvironmentInfo, key: str, version: int) -> Outcome:
        try:
            flag = mapping.load_flag(session, env.id, key)
        except UNREADABLE as exc:
            return self._unreadable(env, "flag", key, exc)
        if flag is None:
            return self._apply(
                env, "flag", key, max(version, _tombstone_version(session, Flag, env, key)), None
            )
        try:
            checked = validate_flag(flag.model_dump(mode="json"))
            compile_flag(checked)
        except DefinitionError as exc:
            return self._invalid(env, "flag", key, exc)
        return self._apply(env, "flag", key, checked.version, checked.model_dump(mode="json"))

    def _sync_segment(self, session: Session, env: EnvironmentInfo, key: str, version: int) -> Outcome:
        try:
            segment = mapping.load_segment(session, env.id, key)
        except UNREADABLE as exc:
            return self._unreadable(env, "segment", key, exc)
        if segment is None:
            tombstone = _tombstone_version(session, Segment, env, key)
            return self._apply(env, "segment", key, max(version, tombstone), None)
        try:
            checked = validate_segment(segment.model_dump(mode="json"))
            compile_segment(checked)
        except DefinitionError as exc:
            return self._invalid(env, "segment", key, exc)
        return self._apply(env, "segment", key, checked.version, checked.model_dump(mode="json"))

    def _apply(
        self,
        env: EnvironmentInfo,
        kind: Literal["flag", "segment"],
        key: str,
        version: int,
        definition: Mapping[str, Any] | None,
    ) -> Outcome:
        if self._batch is not None:
            self._batch.append(Change(kind, key, version, definition))
            return "batched"
        result = redis_apply_change(
            self._redis,
            self._prefix,
            str(env.id),
            kind,
            key,
            version,
            definition,
            env.meta,
            stream_maxlen=self._stream_maxlen,
            if_listed=True,
        )
        if result.missing:
            return "missing"
        outcome: Outcome = "applied" if result.applied else "ignored"
        metrics.CHANGES.labels(kind, outcome).inc()
        return outcome

    def _invalid(self, env: EnvironmentInfo, kind: str, key: str, exc: DefinitionError) -> Outcome:
        metrics.CHANGES.labels(kind, "invalid").inc()
        log.error(
            "change.invalid", environment_id=env.id, kind=kind, key=key, issues=[str(i) for i in exc.issues]
        )
        return "invalid"

    def _unreadable(self, env: EnvironmentInfo, kind: str, key: str, exc: Exception) -> Outcome:
        """A stored row the mapping cannot read: kept out of Redis (which keeps what it had), like an invalid
        definition. Only the error's type and field locations are logged, never the stored values."""
        metrics.CHANGES.labels(kind, "invalid").inc()
        log.error(
            "change.unreadable",
            environment_id=env.id,
            kind=kind,
            key=key,
            error_type=type(exc).__name__,
            locations=_locations(exc),
        )
        return "invalid"

    @contextlib.contextmanager
    def _isolated(self, stage: str, session: Session, **where: Any) -> Iterator[None]:
        """Run one definition's or environment's part of a reconcile: an unexpected exception is logged and
        counted (``flagyard_syncer_failures_total{stage}``) and the pass goes on with the next one; only
        PostgreSQL or Redis being unreachable ends the pass."""
        try:
            yield
        except STORE_ERRORS:
            raise
        except Exception as exc:
            _failed(stage, exc, **where)
            session.rollback()  # the syncer only reads: dropping a broken transaction loses nothing

    def _load_document(self, session: Session, env: EnvironmentInfo) -> Document:
        """The environment's document; if a stored row cannot be read, every definition that can be (the
        others are logged and counted, and stay in Redis as they were)."""
        try:
            return mapping.load_environment_document(session, env.id)
        except UNREADABLE:
            session.rollback()
        project = sa.select(Environment.project_id).where(Environment.id == env.id).scalar_subquery()
        flag_keys = session.scalars(
            sa.select(Flag.key)
            .join(FlagEnvironment, FlagEnvironment.flag_id == Flag.id)
            .where(FlagEnvironment.environment_id == env.id, mapping.flag_is_served())
            .order_by(Flag.key)
        ).all()
        segment_keys = session.scalars(
            sa.select(Segment.key)
            .where(Segment.project_id == project, Segment.deleted_at.is_(None))
            .order_by(Segment.key)
        ).all()
        document = Document()
        for key in segment_keys:
            try:
                segment = mapping.load_segment(session, env.id, key)
            except UNREADABLE as exc:
                self._unreadable(env, "segment", key, exc)
                metrics.FAILURES.labels("reconcile_definition").inc()
                continue
            if segment is not None:
                document.segments.append(segment)
        for key in flag_keys:
            try:
                flag = mapping.load_flag(session, env.id, key)
            except UNREADABLE as exc:
                self._unreadable(env, "flag", key, exc)
                metrics.FAILURES.labels("reconcile_definition").inc()
                continue
            if flag is not None:
                document.flags.append(flag)
        return document

    def _observe_propagation(self, session: Session, outbox_ids: list[int]) -> None:
        if not outbox_ids:
            return
        now = time.time()
        created = session.scalars(sa.select(OutboxEntry.created_at).where(OutboxEntry.id.in_(outbox_ids)))
        for at in created:
            metrics.PROPAGATION_SECONDS.observe(max(0.0, now - at.timestamp()))

    # --- SDK keys -----------------------------------------------------------------------------------

    def _sync_sdk_key(self, session: Session, key_id: int) -> Outcome:
        row = session.get(ApiKey, key_id)
        if row is None or row.role != "sdk":
            return "ignored"
        if row.revoked_at is not None or row.environment_id is None:
            delete_sdk_key(self._redis, self._prefix, row.key_hash)
            return "applied"
        env = _environment(session, row.environment_id)
        if env is None:
            delete_sdk_key(self._redis, self._prefix, row.key_hash)
            return "applied"
        put_sdk_key(self._redis, self._prefix, row.key_hash, _sdk_record(row, env))
        return "applied"

    def sync_sdk_keys(self) -> int:
        """Make ``P:sdkkeys`` hold exactly the usable SDK keys of PostgreSQL; returns the repairs made."""
        with self._sessions() as session:
            rows = session.execute(
                sa.select(ApiKey, Environment.project_id, Project.key, Environment.key)
                .join(Environment, Environment.id == ApiKey.environment_id)
                .join(Project, Project.id == Environment.project_id)
                .where(ApiKey.role == "sdk", ApiKey.revoked_at.is_(None))
            ).all()
        wanted = {
            row.key_hash: _sdk_record(row, EnvironmentInfo(row.environment_id or 0, pid, pkey, ekey))
            for row, pid, pkey, ekey in rows
        }
        held = {_text(k): v for k, v in self._redis.hgetall(sdkkeys_key(self._prefix)).items()}
        repairs = 0
        for key_hash in held.keys() - wanted.keys():
            delete_sdk_key(self._redis, self._prefix, key_hash)
            repairs += 1
        for key_hash, record in wanted.items():
            current = held.get(key_hash)
            if current is None or orjson.loads(current) != _record_dict(record):
                put_sdk_key(self._redis, self._prefix, key_hash, record)
                repairs += 1
        if repairs:
            metrics.RECONCILE_REPAIRS.labels("sdk_key").inc(repairs)
        return repairs

    # --- whole environments -------------------------------------------------------------------------

    def drop_environment(self, environment_id: int) -> None:
        """Remove everything Redis holds for a deleted environment."""
        keys = EnvKeys(self._prefix, str(environment_id))
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(
                keys.flags,
                keys.segments,
                keys.versions,
                keys.rev,
                keys.events,
                keys.meta,
                keys.evaluations,
                keys.evaluated_at,
                keys.served,
                *sampling_keys(self._prefix, str(environment_id)),
            )
            pipe.srem(envs_key(self._prefix), str(environment_id))
            pipe.execute()
        log.info("environment.dropped", environment_id=environment_id)

    def _restore(self, session: Session, env: EnvironmentInfo) -> int:
        """Restore the SDK keys, then the whole environment: a data plane must never load an environment
        holding only some of its flags, nor find it listed while its SDK keys are missing (it would reject
        them)."""
        self.sync_sdk_keys()
        return self._push_environment(session, env)

    def _push_environment(self, session: Session, env: EnvironmentInfo) -> int:
        """Write the whole environment: its definitions (under the version guard: what Redis already holds
        is a no-op) and its settings (the sampling policy)."""
        document = self._load_document(session, env)
        with self._atomically(env, restore=True) as applied:
            for segment in document.segments:
                self._sync_segment(session, env, segment.key, segment.version)
            for flag in document.flags:
                self._sync_flag(session, env, flag.key, flag.version)
        self._publish_sampling(session, env)
        return applied.count

    # --- sampling -----------------------------------------------------------------------------------

    def _wanted_sampling(self, session: Session, env: EnvironmentInfo) -> SamplingPolicy | None:
        """The environment's committed sampling policy (``None``: it does not sample, or was deleted).
        Raises :class:`ValueError` for a stored policy out of contract (written past the API)."""
        row = session.execute(
            sa.select(Environment.sampling, Environment.sampling_salt).where(Environment.id == env.id)
        ).first()
        if row is None or row.sampling is None or row.sampling_salt is None:
            return None
        policy = SamplingPolicy(
            tuple(row.sampling["attributes"]), tuple(row.sampling["hashed"]), row.sampling_salt
        )
        dump_policy(policy)  # checks it, salt included (RedisContractError is a ValueError)
        return policy

    def _publish_sampling(self, session: Session, env: EnvironmentInfo) -> bool:
        """Publish the environment's sampling policy, or withdraw it with the sample when it is off. Applied
        from the current committed row, so a late or repeated job writes the newest policy. A stored
        policy out of contract is logged (where, never the values: the salt is secret) and Redis keeps
        what it had. True if Redis was written."""
        try:
            policy = self._wanted_sampling(session, env)
        except UNREADABLE as exc:
            self._unreadable(env, "sampling", env.key, exc)
            return False
        put_policy(self._redis, self._prefix, str(env.id), policy)
        metrics.CHANGES.labels("sampling", "applied").inc()
        return True

    def _reconcile_sampling(self, session: Session, env: EnvironmentInfo) -> int:
        """Repair the published policy if it differs from PostgreSQL's; an environment that does not sample
        must hold no sample either (a data plane may still have had the withdrawn policy cached). Returns
        the repairs made (0 or 1)."""
        try:
            wanted = self._wanted_sampling(session, env)
        except UNREADABLE as exc:
            self._unreadable(env, "sampling", env.key, exc)
            return 0
        env_id = str(env.id)
        held = self._redis.get(policy_key(self._prefix, env_id))
        if wanted is None:
            stale = held is not None or bool(
                self._redis.exists(samples_key(self._prefix, env_id), seen_key(self._prefix, env_id))
            )
        else:
            try:
                stale = held is None or parse_policy(held) != wanted
            except ValueError:  # out of contract in Redis: replaced
                stale = True
        if not stale:
            return 0
        put_policy(self._redis, self._prefix, env_id, wanted)
        metrics.RECONCILE_REPAIRS.labels("sampling").inc()
        return 1

    def reconcile(self) -> int:
        """Compare every environment in PostgreSQL with Redis and repair each difference.

        Newer definitions missing from Redis are written, definitions deleted in PostgreSQL are deleted,
        environments that no longer exist are dropped, and SDK keys are made to match. Also hydrates an
        empty Redis. Returns the number of repairs.
        """
        repairs = 0
        try:
            # SDK keys first: once Redis lists an environment again (after losing its data), data planes
            # take a key missing from P:sdkkeys as revoked.
            try:
                repairs += self.sync_sdk_keys()
            except STORE_ERRORS:
                raise
            except Exception as exc:
                _failed("reconcile_sdk_keys", exc)
            with self._sessions() as session:
                envs = [
                    EnvironmentInfo(e.id, e.project_id, pkey, e.key)
                    for e, pkey in session.execute(
                        sa.select(Environment, Project.key).join(
                            Project, Project.id == Environment.project_id
                        )
                    ).all()
                ]
                for env in envs:
                    with self._isolated("reconcile_environment", session, environment_id=env.id):
                        repairs += self._reconcile_environment(session, env)
            live = {str(e.id) for e in envs}
            for raw in self._redis.smembers(envs_key(self._prefix)):
                env_id = _text(raw)
                if env_id not in live:
                    self.drop_environment(int(env_id))
                    repairs += 1
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            metrics.RECONCILE_RUNS.labels("failed").inc()
            raise StoreUnavailableError(f"PostgreSQL: {exc}") from exc
        except redis.RedisError as exc:
            metrics.RECONCILE_RUNS.labels("failed").inc()
            raise StoreUnavailableError(f"Redis: {exc}") from exc
        metrics.RECONCILE_RUNS.labels("ok").inc()
        if repairs:
            log.info("reconcile.repaired", repairs=repairs)
        return repairs

    def _reconcile_environment(self, session: Session, env: EnvironmentInfo) -> int:
        document = self._load_document(session, env)
        held = load_environment_sync(self._redis, self._prefix, str(env.id))
        applied, purged = _Applied(missing=not held.exists), 0
        if held.exists:
            with self._atomically(env) as applied:
                purged = self._reconcile_definitions(session, env, document, held)
        # Not in Redis, or Redis lost its data since the read above: the environment is restored whole
        # (its sampling policy with it).
        repairs = self._restore(session, env) if applied.missing else applied.count + purged
        if repairs:
            metrics.RECONCILE_REPAIRS.labels("definition").inc(repairs)
        if not applied.missing:
            repairs += self._reconcile_sampling(session, env)
        return repairs

    def _reconcile_definitions(
        self, session: Session, env: EnvironmentInfo, document: Document, held: EnvironmentData
    ) -> int:
        """Queue every repair of one environment (see :meth:`_atomically`); returns the purges done."""
        purged = 0
        for kind, wanted, stored in (
            ("segment", {s.key: s.version for s in document.segments}, held.segments),
            ("flag", {f.key: f.version for f in document.flags}, held.flags),
        ):
            held_versions = {key: parse_stored(raw).version for key, raw in stored.items()}
            sync = self._sync_flag if kind == "flag" else self._sync_segment
            for key, version in wanted.items():
                if held_versions.get(key, -1) < version:
                    with self._isolated(
                        "reconcile_definition", session, environment_id=env.id, kind=kind, key=key
                    ):
                        sync(session, env, key, version)
            model = Flag if kind == "flag" else Segment
            for key in held_versions.keys() - wanted.keys():
                if _tombstone_version(session, model, env, key) == 0:
                    # PostgreSQL never had it: remove it without a tombstone, so a later key starts at 1.
                    purged += purge_change(self._redis, self._prefix, str(env.id), kind, key)  # type: ignore[arg-type]
                    continue
                with self._isolated(
                    "reconcile_definition", session, environment_id=env.id, kind=kind, key=key
                ):
                    sync(session, env, key, 0)
        return purged


def _failed(stage: str, exc: BaseException, **where: Any) -> None:
    """Log (the error's type and its first line, cut at 300 characters) and count a failure isolated at
    ``stage``."""
    metrics.FAILURES.labels(stage).inc()
    text = str(exc).strip()
    first_line = text.splitlines()[0][:300] if text else ""
    log.error(
        "syncer.failure_isolated", stage=stage, error_type=type(exc).__name__, error=first_line, **where
    )


def _locations(exc: Exception) -> list[str]:
    """JSON pointers of what a pydantic error refused (its locations only: the inputs may be anything)."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return []
    try:
        return ["/" + "/".join(str(part) for part in e["loc"]) for e in errors(include_input=False)][:10]
    except Exception:
        return []


def _environment(session: Session, environment_id: int) -> EnvironmentInfo | None:
    row = session.execute(
        sa.select(Environment.id, Environment.project_id, Project.key, Environment.key)
        .join(Project, Project.id == Environment.project_id)
        .where(Environment.id == environment_id)
    ).first()
    return None if row is None else EnvironmentInfo(row[0], row[1], row[2], row[3])


def _tombstone_version(
    session: Session, model: type[Flag] | type[Segment], env: EnvironmentInfo, key: str
) -> int:
    """The highest version a deleted flag or segment reached (0 if it never existed)."""
    highest = session.scalar(
        sa.select(sa.func.max(model.version)).where(model.project_id == env.project_id, model.key == key)
    )
    return int(highest or 0)


def _sdk_record(row: ApiKey, env: EnvironmentInfo) -> SdkKeyRecord:
    expires: datetime | None = row.expires_at
    return SdkKeyRecord(
        environment_id=str(env.id),
        project=env.project_key,
        environment=env.key,
        expires_at=None if expires is None else expires.timestamp(),
    )


def _record_dict(record: SdkKeyRecord) -> dict[str, Any]:
    return {
        "environment_id": record.environment_id,
        "project": record.project,
        "environment": record.environment,
        "expires_at": record.expires_at,
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
