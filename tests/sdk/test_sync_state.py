"""SyncState without a network: SyncFlags messages built by hand, applied in order; what it holds, the
position it resumes from and the flags each message may have changed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.rule_engine import FlagType
from flagyard.sdk._sync_state import SyncState
from flagyard.sdk.exceptions import ResyncError


def flag(key: str, variant: str = "off", **extra: Any) -> dict[str, Any]:
    return {
        "key": key,
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "default_variant": variant,
        **extra,
    }


def in_segment(key: str, segment: str) -> dict[str, Any]:
    return flag(
        key,
        rules=[{"id": "r", "variant": "on", "clauses": [{"operator": "segment_match", "values": [segment]}]}],
    )


def segment(key: str, *included: str) -> dict[str, Any]:
    return {"key": key, "included": list(included)}


def definition(kind: int, body: dict[str, Any]) -> pb.Definition:
    return pb.Definition(kind=kind, key=body["key"], version=1, json=json.dumps(body))


def flag_def(body: dict[str, Any]) -> pb.Definition:
    return definition(pb.DEFINITION_KIND_FLAG, body)


def segment_def(body: dict[str, Any]) -> pb.Definition:
    return definition(pb.DEFINITION_KIND_SEGMENT, body)


def snapshot(revision: int, *definitions: pb.Definition, more: bool = False) -> pb.SyncFlagsResponse:
    message = pb.SyncFlagsResponse(revision=revision, event_id=f"{revision}-0")
    message.snapshot.definitions.extend(definitions)
    message.snapshot.metadata["environment"] = "production"
    message.snapshot.more = more
    return message


def put(revision: int, d: pb.Definition) -> pb.SyncFlagsResponse:
    message = pb.SyncFlagsResponse(revision=revision, event_id=f"{revision}-0")
    message.change.operation = pb.OPERATION_PUT
    message.change.definition.CopyFrom(d)
    return message


def delete(revision: int, kind: int, key: str) -> pb.SyncFlagsResponse:
    message = pb.SyncFlagsResponse(revision=revision, event_id=f"{revision}-0")
    message.change.operation = pb.OPERATION_DELETE
    message.change.definition.CopyFrom(pb.Definition(kind=kind, key=key, version=2))
    return message


def heartbeat(revision: int) -> pb.SyncFlagsResponse:
    message = pb.SyncFlagsResponse(revision=revision, event_id=f"{revision}-0")
    message.heartbeat.SetInParent()
    return message


def value(state: SyncState, key: str, context: dict[str, Any] | None = None) -> Any:
    assert state.flagset is not None
    return state.flagset.evaluate(key, None, context or {}, FlagType.BOOLEAN).value


def test_fresh_state__holds_nothing_and_asks_for_a_snapshot() -> None:
    state = SyncState()
    assert state.flagset is None
    request = state.request()
    assert (request.HasField("revision"), request.event_id) == (False, "")


def test_first_snapshot__held_first_and_position_taken() -> None:
    state = SyncState()
    applied = state.apply(snapshot(3, flag_def(flag("a", "on")), segment_def(segment("beta", "u-1"))))

    assert applied is not None
    assert applied.first
    assert applied.changed == []
    assert applied.skipped == []
    assert value(state, "a") is True
    assert state.flagset is not None
    assert set(state.flagset.segments) == {"beta"}
    assert state.flagset.metadata == {"environment": "production"}
    request = state.request()
    assert (request.revision, request.event_id) == (3, "3-0")


def test_snapshot_in_chunks__nothing_replaced_until_the_last() -> None:
    state = SyncState()
    state.apply(snapshot(1, flag_def(flag("old"))))

    assert state.apply(snapshot(2, flag_def(flag("a")), more=True)) is None
    assert state.flagset is not None
    assert set(state.flagset.flags) == {"old"}
    assert state.revision == 1
    applied = state.apply(snapshot(2, flag_def(flag("b"))))

    assert applied is not None
    assert not applied.first
    assert set(state.flagset.flags) == {"a", "b"}
    assert applied.changed == ["a", "b", "old"]
    assert state.revision == 2


def test_stream_restarted__a_snapshot_cut_short_is_not_mixed_into_the_next() -> None:
    state = SyncState()
    state.apply(snapshot(2, flag_def(flag("partial")), more=True))
    state.restart_stream()
    state.apply(snapshot(2, flag_def(flag("whole"))))
    assert state.flagset is not None
    assert set(state.flagset.flags) == {"whole"}


def test_later_snapshot__changed_keys_are_only_those_that_differ() -> None:
    state = SyncState()
    state.apply(snapshot(1, flag_def(flag("same")), flag_def(flag("edited")), flag_def(flag("gone"))))
    applied = state.apply(
        snapshot(5, flag_def(flag("same")), flag_def(flag("edited", "on")), flag_def(flag("new")))
    )
    assert applied is not None
    assert applied.changed == ["edited", "gone", "new"]


def test_change__put_and_delete_of_a_flag__applied_with_its_key_and_position() -> None:
    state = SyncState()
    state.apply(snapshot(1, flag_def(flag("a")), flag_def(flag("b"))))

    applied = state.apply(put(2, flag_def(flag("a", "on"))))
    assert applied is not None
    assert applied.changed == ["a"]
    assert value(state, "a") is True
    applied = state.apply(delete(3, pb.DEFINITION_KIND_FLAG, "b"))
    assert applied is not None
    assert applied.changed == ["b"]
    assert state.flagset is not None
    assert "b" not in state.flagset.flags
    assert (state.revision, state.event_id) == (3, "3-0")


def test_change_of_a_segment__changes_the_flags_matching_it_and_their_dependants() -> None:
    state = SyncState()
    gated = flag("gated", "on", prerequisites=[{"flag": "uses-beta", "variant": "on"}])
    state.apply(
        snapshot(
            1,
            segment_def(segment("beta")),
            flag_def(in_segment("uses-beta", "beta")),
            flag_def(gated),
            flag_def(flag("other")),
        )
    )

    applied = state.apply(put(2, segment_def(segment("beta", "u-1"))))

    assert applied is not None
    assert applied.changed == ["gated", "uses-beta"]
    assert value(state, "uses-beta", {"targeting_key": "u-1"}) is True


def test_heartbeat__moves_the_position_changes_nothing() -> None:
    state = SyncState()
    state.apply(snapshot(1, flag_def(flag("a"))))
    held = state.flagset
    applied = state.apply(heartbeat(4))
    assert applied is not None
    assert applied.changed == []
    assert not applied.first
    assert state.flagset is held
    assert state.revision == 4


@pytest.mark.parametrize(
    "message", [put(1, flag_def(flag("a"))), delete(1, pb.DEFINITION_KIND_FLAG, "a"), heartbeat(1)]
)
def test_anything_but_a_snapshot_first__resync_error_and_position_unchanged(
    message: pb.SyncFlagsResponse,
) -> None:
    state = SyncState()
    with pytest.raises(ResyncError):
        state.apply(message)
    assert state.flagset is None
    assert state.revision is None


def test_bad_definition_in_a_snapshot__skipped_and_named_the_rest_held() -> None:
    state = SyncState()
    bad = pb.Definition(kind=pb.DEFINITION_KIND_FLAG, key="bad", version=1, json="{not json")
    applied = state.apply(snapshot(1, bad, flag_def(flag("good", "on"))))
    assert applied is not None
    assert [s.split(":")[0] for s in applied.skipped] == ["bad"]
    assert value(state, "good") is True


def test_bad_definition_in_a_change__raises_and_position_stays_for_a_resync() -> None:
    state = SyncState()
    state.apply(snapshot(1, flag_def(flag("a"))))
    with pytest.raises(ValueError):  # noqa: PT011 - whatever the decoder raises: the connector resyncs on any
        state.apply(put(2, pb.Definition(kind=pb.DEFINITION_KIND_FLAG, key="a", version=2, json="{")))
    assert state.revision == 1
    state.forget_position()
    request = state.request()
    assert (request.HasField("revision"), request.event_id) == (False, "")
    assert value(state, "a") is False  # the flags held keep being served until the snapshot
