"""L1: each environment's flags and segments compiled into a :class:`FlagSet`, plus what SyncFlags needs.

A :class:`CachedEnvironment` is the state of one environment in L1, free of any transport: what Redis held
when it was loaded plus the changes applied since, and the stream position they correspond to. It is
changed only by the follower task (:mod:`.follower`), which reads Redis: a whole reload
(:meth:`CachedEnvironment.install`) or one change (:meth:`CachedEnvironment.apply`), after
:meth:`CachedEnvironment.contiguous` said which events continue its revision. Readers never see a
half-applied state: each step replaces entries in place between two awaits.

For SyncFlags an environment keeps the serialized message of its last ``history`` changes, contiguous up to
its revision, and the position they start from (``base_revision``/``base_event_id``). A reload clears the
history and bumps ``generation``: streams then send a snapshot.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from sys import intern
from typing import Any

import orjson

from flagyard.contracts import redis as contract
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.rule_engine import (
    CompiledFlag,
    CompiledSegment,
    EvaluationResult,
    Flag,
    FlagSet,
    FlagType,
    Segment,
    compile_flag,
    compile_segment,
    limits,
)
from flagyard.rule_engine.compiler import Chain

from .exceptions import StoreCorruptError

KIND_PB = {"flag": pb.DEFINITION_KIND_FLAG, "segment": pb.DEFINITION_KIND_SEGMENT}
ENVELOPE_BYTES = limits.KiB
"""What the Redis envelope (``{"version": n, "definition": …}``) may add to a definition's own size."""
MAX_STORED_BYTES: dict[str, int] = {
    "flag": limits.MAX_FLAG_BYTES + ENVELOPE_BYTES,
    "segment": limits.MAX_SEGMENT_BYTES + ENVELOPE_BYTES,
}
"""A stored value larger than validation allows (written before the limits, or around the syncer) is skipped
as corrupt: served, it would make every snapshot of its environment larger than a gRPC message may be."""


class DefinitionEntry:
    """A definition as stored in Redis; its native JSON is extracted once, when a snapshot needs it."""

    __slots__ = ("_json", "key", "kind", "raw", "version")

    def __init__(self, kind: contract.Kind, key: str, version: int, raw: bytes) -> None:
        self.kind = kind
        self.key = intern(key)  # shared with the compiled flag's and the other environments' entries
        self.version = version
        self.raw = raw
        self._json: str | None = None

    def json(self) -> str:
        if self._json is None:
            self._json = orjson.dumps(contract.parse_stored(self.raw).definition).decode()
        return self._json

    def message(self) -> pb.Definition:
        return pb.Definition(kind=KIND_PB[self.kind], key=self.key, version=self.version, json=self.json())


Compiled = CompiledFlag | CompiledSegment


def compile_stored(kind: contract.Kind, key: str, raw: bytes) -> tuple[DefinitionEntry, Compiled]:
    """Compile a stored value without re-validating its meaning (the syncer did); StoreCorruptError if bad.

    The compiled object keeps no ``source``: the entry holds the stored bytes, which explain and snapshots
    read instead.
    """
    _check_size(kind, key, raw)
    try:
        stored = contract.parse_stored(raw)
        if stored.definition.get("key") != key:
            raise StoreCorruptError(
                f"{kind} {key!r}: stored under another key ({stored.definition.get('key')!r})"
            )
        # The envelope's version is authoritative: results must carry the version the guard compared.
        # The key: the interned one, so the compiled object shares it with every environment's entries.
        definition: dict[str, Any] = {**stored.definition, "version": stored.version, "key": intern(key)}
        compiled: Compiled
        if kind == "flag":
            compiled = compile_flag(Flag.model_validate(definition), keep_source=False)
        else:
            compiled = compile_segment(Segment.model_validate(definition), keep_source=False)
    except StoreCorruptError:
        raise
    except Exception as exc:  # a bad value is logged and skipped, never a crash
        raise StoreCorruptError(f"{kind} {key!r}: {type(exc).__name__}: {exc}") from exc
    return DefinitionEntry(kind, key, stored.version, raw), compiled


def _check_size(kind: str, key: str, raw: bytes) -> None:
    if len(raw) > MAX_STORED_BYTES[kind]:
        raise StoreCorruptError(
            f"{kind} {key!r}: {len(raw)} bytes stored, over the {kind} size limit ({MAX_STORED_BYTES[kind]})"
        )


InvalidCallback = Callable[[str, str, str], None]
"""Called with (kind, key, problem) for a stored value that cannot be compiled."""


class Lazy:
    """A definition held uncompiled: its placeholder compiles it on first use and takes its place.

    Hydration installs placeholders (cheap: one JSON parse each), so a large environment serves within a
    second; the follower's warm-up then compiles the rest in the background. A value that does not
    compile is reported, and its placeholder removed (the flag is then not found).
    """

    __slots__ = ("compiled", "entry", "flagset", "on_invalid", "placeholder")

    def __init__(self, flagset: FlagSet, entry: DefinitionEntry, on_invalid: InvalidCallback) -> None:
        self.flagset = flagset
        self.entry = entry
        self.on_invalid = on_invalid
        self.compiled: Compiled | None = None
        self.placeholder: Compiled | None = None

    def materialize(self) -> Compiled:
        compiled = self.compiled
        if compiled is not None:
            return compiled
        entry = self.entry
        held = self.flagset.flags if entry.kind == "flag" else self.flagset.segments
        try:
            _, compiled = compile_stored(entry.kind, entry.key, entry.raw)
        except StoreCorruptError as exc:
            if held.get(entry.key) is self.placeholder:
                del held[entry.key]
            self.on_invalid(entry.kind, entry.key, str(exc))
            raise
        self.compiled = compiled
        if held.get(entry.key) is self.placeholder:
            held[entry.key] = compiled  # type: ignore[assignment]
        return compiled

    def evaluate(self, context: Any, store: Any) -> EvaluationResult:
        compiled = self.materialize()
        assert isinstance(compiled, CompiledFlag)
        return compiled.evaluate(context, store)

    def matches(self, context: Any, store: Any) -> bool:
        compiled = self.materialize()
        assert isinstance(compiled, CompiledSegment)
        return compiled.matches(context, store)

    def evaluate_in_chain(self, context: Any, store: Any, chain: Chain | None = None, /) -> EvaluationResult:
        """The flag as a prerequisite inside ``chain``: compiled now, it carries the chain on, so a cycle
        or an over-deep chain through flags not yet compiled is bounded and named as a compiled one is
        (restarting the chain here would bound it only per restart)."""
        compiled = self.materialize()
        assert isinstance(compiled, CompiledFlag)
        nested = compiled.evaluate_in_chain
        if nested is None or chain is None:
            return compiled.evaluate(context, store)
        return nested(context, store, chain)

    def matches_in_chain(self, context: Any, store: Any, chain: Chain | None = None, /) -> bool:
        """The segment matched inside the chain of segments that led here (see :meth:`evaluate_in_chain`)."""
        compiled = self.materialize()
        assert isinstance(compiled, CompiledSegment)
        nested = compiled.matches_in_chain
        if nested is None or chain is None:
            return compiled.matches(context, store)
        return nested(context, store, chain)


def placeholder(
    kind: contract.Kind, key: str, raw: bytes, flagset: FlagSet, on_invalid: InvalidCallback
) -> Lazy:
    """A :class:`Lazy` for a stored value, its placeholder installed in ``flagset``; StoreCorruptError when
    even its envelope is bad."""
    _check_size(kind, key, raw)
    try:
        stored = contract.parse_stored(raw)
        definition = stored.definition
        if definition.get("key") != key:
            raise ValueError(f"stored under another key ({definition.get('key')!r})")
        entry = DefinitionEntry(kind, key, stored.version, raw)
        lazy = Lazy(flagset, entry, on_invalid)
        if kind == "flag":
            metadata = definition.get("metadata") or {}
            lazy.placeholder = CompiledFlag(
                key=key,
                type=FlagType(definition["type"]),
                version=stored.version,
                enabled=bool(definition.get("enabled", True)),
                evaluate=lazy.evaluate,
                metadata=metadata if isinstance(metadata, dict) else {},
                evaluate_in_chain=lazy.evaluate_in_chain,
            )
            flagset.flags[key] = lazy.placeholder
        else:
            lazy.placeholder = CompiledSegment(
                key=key, version=stored.version, matches=lazy.matches, matches_in_chain=lazy.matches_in_chain
            )
            flagset.segments[key] = lazy.placeholder
    except Exception as exc:
        raise StoreCorruptError(f"{kind} {key!r}: {type(exc).__name__}: {exc}") from exc
    return lazy


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    revision: int
    event_id: str
    message: bytes
    """The serialized SyncFlagsResponse every stream sends for this revision."""


@dataclass(slots=True)
class Built:
    """An environment compiled (or held lazily) from :class:`~flagyard.contracts.redis.EnvironmentData`."""

    flagset: FlagSet
    definitions: dict[tuple[str, str], DefinitionEntry]
    lazy: list[Lazy] = field(default_factory=list)
    """Definitions still to compile (see :func:`warm`)."""
    invalid: list[tuple[str, str, str]] = field(default_factory=list)
    """(kind, key, problem) of each value skipped."""


async def build(
    data: contract.EnvironmentData, *, lazy: bool, on_invalid: InvalidCallback, yield_every: int = 200
) -> Built:
    """Compile a loaded environment (``lazy``: install placeholders), yielding to the event loop every
    ``yield_every`` definitions so calls are still answered while a large environment loads."""
    flagset = FlagSet()
    built = Built(flagset, {})
    n = 0
    for kind, values in (("segment", data.segments), ("flag", data.flags)):
        for key, raw in values.items():
            key = intern(key)  # one copy of each key, whatever the environments holding it
            n += 1
            if n % yield_every == 0:
                await asyncio.sleep(0)
            try:
                if lazy:
                    held = placeholder(kind, key, raw, flagset, on_invalid)  # type: ignore[arg-type]
                    built.lazy.append(held)
                    built.definitions[kind, key] = held.entry
                    continue
                entry, compiled = compile_stored(kind, key, raw)  # type: ignore[arg-type]
            except StoreCorruptError as exc:
                built.invalid.append((kind, key, str(exc)))
                continue
            built.definitions[kind, key] = entry
            if isinstance(compiled, CompiledFlag):
                flagset.flags[key] = compiled
            else:
                flagset.segments[key] = compiled
    return built


async def warm(lazies: list[Lazy], yield_every: int = 50) -> int:
    """Compile every placeholder still in place, yielding to the event loop as it goes; how many."""
    done = 0
    for i, held in enumerate(lazies):
        if i % yield_every == 0:
            await asyncio.sleep(0)
        if held.compiled is None:
            try:
                held.materialize()
                done += 1
            except StoreCorruptError:
                continue
    return done


class Change:
    """An environment's next change: set once, when it happens, then replaced by the next one.

    What every stream of the environment waits on between changes. Unlike :class:`asyncio.Event` it also
    takes a future from outside (:meth:`add`), resolved True at the change, so a waiter can be woken for
    another reason (its own deadline, :meth:`.streams.Streams.wait_changed`) by resolving that future
    itself, without a timer or a cancellation per wait."""

    __slots__ = ("_done", "_waiters")

    def __init__(self) -> None:
        self._done = False
        self._waiters: set[asyncio.Future[bool]] = set()

    def is_set(self) -> bool:
        return self._done

    def set(self) -> None:
        self._done = True
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(True)

    def add(self, waiter: asyncio.Future[bool]) -> None:
        """Resolve ``waiter`` True at the change (at once if it happened); :meth:`discard` it after."""
        if self._done:
            if not waiter.done():
                waiter.set_result(True)
        else:
            self._waiters.add(waiter)

    def discard(self, waiter: asyncio.Future[bool]) -> None:
        self._waiters.discard(waiter)

    async def wait(self) -> bool:
        """Return once the change happened (True, as :meth:`asyncio.Event.wait`)."""
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.add(waiter)
        try:
            return await waiter
        finally:
            self.discard(waiter)


class CachedEnvironment:
    """One environment as L1 holds it (not the control plane's row, nor Redis's hashes, nor a document):
    compiled flags, the stored definitions a snapshot is made of, its revision and stream position, and
    the history SyncFlags replays."""

    def __init__(self, env_id: str, history: int = 1000) -> None:
        self.env_id = env_id
        self.flagset = FlagSet()
        self.definitions: dict[tuple[str, str], DefinitionEntry] = {}
        self.meta: dict[str, str] = {}
        self.revision = 0
        self.event_id = ""
        self.exists = False
        """Whether Redis held this environment when it was last loaded or a change to it was read since: an
        environment first loaded before the syncer wrote it exists once its first change arrives, so a later
        load finding nothing is Redis having lost it, not the environment's state."""
        self.generation = 0
        self.history: deque[HistoryEntry] = deque()
        self.history_limit = history
        self.base_revision = 0
        self.base_event_id = ""
        self._changed = Change()
        self._snapshot: tuple[int, int, list[bytes]] | None = None
        self._heartbeat: tuple[int, int, bytes] | None = None
        self.serializations = 0
        """SyncFlagsResponse messages serialized so far: once per change, snapshot chunk and heartbeat
        position, however many streams send them (a fan-out test counts them)."""

    def __repr__(self) -> str:
        return f"CachedEnvironment({self.env_id!r}, revision={self.revision}, flags={len(self.flagset)})"

    # --- changes (follower only) ---

    def contiguous(self, events: list[contract.Event]) -> tuple[list[contract.Event], str | None]:
        """The leading events that continue this environment's revision one by one, and why the next one
        cannot be applied: ``"gap"`` (its revision is ahead: events were trimmed past this reader) or
        ``"regression"`` (behind: Redis lost or restored data); ``None`` when all can. Either cause means
        a reload from the hashes."""
        expected = self.revision + 1
        for i, event in enumerate(events):
            if event.revision != expected:
                return events[:i], "gap" if event.revision > expected else "regression"
            expected += 1
        return events, None

    def install(self, data: contract.EnvironmentData, built: Built) -> None:
        """Replace everything with a fresh load (start, gap, reconnect)."""
        self.flagset = built.flagset
        self.definitions = built.definitions
        self.meta = data.meta
        self.revision = data.revision
        self.event_id = data.last_event_id
        self.exists = data.exists
        self.generation += 1
        self.history.clear()
        self.base_revision, self.base_event_id = self.revision, self.event_id
        self._snapshot = None
        self._notify()

    def apply(
        self, event: contract.Event, raw: bytes | None, version: int | None, on_invalid: InvalidCallback
    ) -> None:
        """Apply the event at ``self.revision + 1``, given what Redis holds for its key now: ``raw`` its
        stored value (None: deleted) and ``version`` its highest version (a deletion's tombstone).

        A value that does not compile is reported to ``on_invalid`` and skipped (the old definition stays;
        the revision advances). The value may be newer than the event: versions of a key only grow in
        Redis, so applying the newest is always safe, and an older one than held is ignored.
        """
        entry: DefinitionEntry | None = None
        compiled: Compiled | None = None
        if raw is not None:
            try:
                entry, compiled = compile_stored(event.kind, event.key, raw)
            except StoreCorruptError as exc:
                on_invalid(event.kind, event.key, str(exc))
                entry = DefinitionEntry(event.kind, event.key, version or event.version, raw)
        key = (event.kind, event.key)
        held = self.definitions.get(key)
        message = pb.SyncFlagsResponse(revision=event.revision, event_id=event.event_id)
        if entry is not None and compiled is not None:
            if held is None or entry.version > held.version:
                self.definitions[key] = entry
                if isinstance(compiled, CompiledFlag):
                    self.flagset.put_flag(compiled)
                else:
                    self.flagset.put_segment(compiled)
            message.change.operation = pb.OPERATION_PUT
            message.change.definition.CopyFrom(self.definitions[key].message())
        elif entry is None:
            if held is not None:
                del self.definitions[key]
                if event.kind == "flag":
                    self.flagset.remove_flag(event.key)
                else:
                    self.flagset.remove_segment(event.key)
            message.change.operation = pb.OPERATION_DELETE
            message.change.definition.CopyFrom(
                pb.Definition(kind=KIND_PB[event.kind], key=event.key, version=version or event.version)
            )
        else:  # a bad value is skipped, but the revision still advances
            message.heartbeat.SetInParent()
        self.revision = event.revision
        self.event_id = event.event_id
        self.exists = True
        self._snapshot = None
        self.serializations += 1
        self._remember(HistoryEntry(self.revision, self.event_id, message.SerializeToString()))
        self._notify()

    def _remember(self, entry: HistoryEntry) -> None:
        if self.history_limit <= 0:
            self.base_revision, self.base_event_id = entry.revision, entry.event_id
            return
        if len(self.history) >= self.history_limit:
            dropped = self.history.popleft()
            self.base_revision, self.base_event_id = dropped.revision, dropped.event_id
        self.history.append(entry)

    def _notify(self) -> None:
        changed, self._changed = self._changed, Change()
        changed.set()

    # --- reads (SyncFlags) ---

    @property
    def changed(self) -> Change:
        """Set at the next change; take it *before* reading the state you compare against."""
        return self._changed

    def position_known(self, revision: int, event_id: str) -> bool:
        """Whether (revision, event_id) is a position of this history from which changes can be replayed."""
        if revision == self.revision:
            return event_id == self.event_id
        if not self.base_revision <= revision < self.revision:
            return False
        if revision == self.base_revision:
            return event_id == self.base_event_id
        return self.history[revision - self.base_revision - 1].event_id == event_id

    def changes_after(self, revision: int) -> Iterator[bytes]:
        """Messages of the revisions after ``revision`` (which must satisfy :meth:`position_known`)."""
        start = revision - self.base_revision
        for i in range(start, len(self.history)):
            yield self.history[i].message

    def heartbeat_message(self) -> bytes:
        """The heartbeat at the current position, serialized once per position for every stream."""
        cached = self._heartbeat
        if cached is not None and cached[0] == self.generation and cached[1] == self.revision:
            return cached[2]
        msg = pb.SyncFlagsResponse(revision=self.revision, event_id=self.event_id)
        msg.heartbeat.SetInParent()
        self.serializations += 1
        out = msg.SerializeToString()
        self._heartbeat = (self.generation, self.revision, out)
        return out

    def snapshot_messages(self) -> list[bytes]:
        """The current state as SyncFlagsResponse snapshot messages: definitions are added to a message until
        it holds ``SYNC_CHUNK_BYTES`` of them, so none exceeds that plus one definition plus its header (well
        under ``MAX_GRPC_MESSAGE_BYTES``, as no stored definition is larger than :data:`MAX_STORED_BYTES`)."""
        cached = self._snapshot
        if cached is not None and cached[0] == self.generation and cached[1] == self.revision:
            return cached[2]
        messages: list[bytes] = []
        chunk: list[pb.Definition] = []
        size = 0

        def emit(more: bool) -> None:
            msg = pb.SyncFlagsResponse(revision=self.revision, event_id=self.event_id)
            msg.snapshot.definitions.extend(chunk)
            msg.snapshot.metadata.update(self.meta)
            msg.snapshot.more = more
            self.serializations += 1
            messages.append(msg.SerializeToString())

        entries = sorted(self.definitions.values(), key=_snapshot_order)
        for entry in entries:
            definition = entry.message()
            chunk.append(definition)
            size += definition.ByteSize()
            if size >= limits.SYNC_CHUNK_BYTES:
                emit(True)
                chunk, size = [], 0
        emit(False)
        self._snapshot = (self.generation, self.revision, messages)
        return messages


def _snapshot_order(entry: DefinitionEntry) -> tuple[int, str]:
    return (0 if entry.kind == "segment" else 1, entry.key)
