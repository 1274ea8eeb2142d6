"""The flags a local-mode SDK holds, and how SyncFlags messages change them. No transport, no threads.

:class:`SyncState` applies the messages of one SyncFlags stream in order: snapshot chunks are collected
until the last one and then replace everything, a change puts or removes one definition, a heartbeat only
moves the position. It remembers that position (revision, event id), which the connector sends when it
reconnects so only the missed changes come, and says which flags each message may have changed. It is
changed by one thread (the connector's) while evaluations read :attr:`SyncState.flagset` lock-free: a
change replaces one entry of the flag set, a snapshot swaps in a new flag set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import orjson

from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.rule_engine import (
    CompiledFlag,
    CompiledSegment,
    Flag,
    FlagSet,
    Segment,
    compile_flag,
    compile_segment,
)

from ._resolver import changed_flags
from .exceptions import ResyncError


@dataclass(frozen=True, slots=True)
class Applied:
    """What one complete message did."""

    changed: list[str] = field(default_factory=list)
    """Keys of the flags whose evaluation may have changed (sorted)."""
    first: bool = False
    """The first snapshot this state received: flags are held from now on."""
    skipped: list[str] = field(default_factory=list)
    """``key: problem`` of each definition of a snapshot that could not be compiled (the rest is held)."""


class SyncState:
    """The synchronised flags and the stream position they correspond to."""

    def __init__(self) -> None:
        self.flagset: FlagSet | None = None
        """``None`` until the first snapshot; read-only for everyone but :meth:`apply`."""
        self.revision: int | None = None
        self.event_id = ""
        self._chunks: list[pb.Definition] = []

    def request(self) -> pb.SyncFlagsRequest:
        """The request resuming from the position held (none: a snapshot)."""
        request = pb.SyncFlagsRequest(event_id=self.event_id)
        if self.revision is not None:
            request.revision = self.revision
        return request

    def restart_stream(self) -> None:
        """A new stream begins: a snapshot cut short by the old one comes again whole."""
        self._chunks = []

    def forget_position(self) -> None:
        """Ask the next stream for a snapshot (the flags held keep being served until it comes)."""
        self.revision, self.event_id, self._chunks = None, "", []

    def apply(self, message: pb.SyncFlagsResponse) -> Applied | None:
        """Apply one message; ``None`` for a snapshot chunk with more to come. ResyncError when the message
        cannot be applied to what is held (a change or heartbeat before any snapshot)."""
        payload = message.WhichOneof("payload")
        if payload == "snapshot":
            self._chunks.extend(message.snapshot.definitions)
            if message.snapshot.more:
                return None
            definitions, self._chunks = self._chunks, []
            applied = self._apply_snapshot(definitions, message.snapshot.metadata)
        elif payload == "change":
            applied = Applied(self._apply_change(message.change))
        elif self.flagset is None:
            raise ResyncError("a heartbeat before any snapshot")
        else:
            applied = Applied()
        self.revision, self.event_id = message.revision, message.event_id
        return applied

    def _apply_snapshot(self, definitions: Iterable[pb.Definition], metadata: Mapping[str, str]) -> Applied:
        flags: list[CompiledFlag] = []
        segments: list[CompiledSegment] = []
        skipped: list[str] = []
        for definition in definitions:
            try:
                compiled = compile_definition(definition)
            except Exception as exc:  # one bad definition must not cost the whole environment
                skipped.append(f"{definition.key}: {exc}")
                continue
            if isinstance(compiled, CompiledFlag):
                flags.append(compiled)
            elif compiled is not None:
                segments.append(compiled)
        flagset = FlagSet(flags, segments, dict(metadata))
        old, self.flagset = self.flagset, flagset
        if old is None:
            return Applied([], first=True, skipped=skipped)
        return Applied(changed_flags(old, flagset), skipped=skipped)

    def _apply_change(self, change: pb.Change) -> list[str]:
        flagset = self.flagset
        if flagset is None:
            raise ResyncError("a change before any snapshot")
        definition = change.definition
        kind, key = definition.kind, definition.key
        if change.operation == pb.OPERATION_PUT:
            compiled = compile_definition(definition)
            if isinstance(compiled, CompiledFlag):
                flagset.put_flag(compiled)
            elif compiled is not None:
                flagset.put_segment(compiled)
        elif change.operation == pb.OPERATION_DELETE:
            if kind == pb.DEFINITION_KIND_FLAG:
                flagset.remove_flag(key)
            elif kind == pb.DEFINITION_KIND_SEGMENT:
                flagset.remove_segment(key)
        return affected_flags(flagset, kind, key)


def compile_definition(definition: pb.Definition) -> CompiledFlag | CompiledSegment | None:
    """A definition as the data plane sent it (validated when it was written); ``None`` if of unknown kind."""
    if definition.kind == pb.DEFINITION_KIND_FLAG:
        return compile_flag(Flag.model_validate(orjson.loads(definition.json)))
    if definition.kind == pb.DEFINITION_KIND_SEGMENT:
        return compile_segment(Segment.model_validate(orjson.loads(definition.json)))
    return None


def affected_flags(flagset: FlagSet, kind: int, key: str) -> list[str]:
    """Flags whose evaluation a change of flag or segment ``key`` may change: the flag itself, flags
    matching the segment (directly or through other segments) and flags having any of those as a
    prerequisite."""
    segments = {key} if kind == pb.DEFINITION_KIND_SEGMENT else set()
    flags = {key} if kind == pb.DEFINITION_KIND_FLAG else set()
    grown = True
    while grown:
        grown = False
        for segment in flagset.segments.values():
            if segment.key not in segments and (
                not segment.native or not segments.isdisjoint(segment.segment_keys)
            ):
                segments.add(segment.key)
                grown = True
        for flag in flagset.flags.values():
            if flag.key not in flags and (
                not flag.native
                or not segments.isdisjoint(flag.segment_keys)
                or not flags.isdisjoint(flag.prerequisite_keys)
            ):
                flags.add(flag.key)
                grown = True
    return sorted(flags)
