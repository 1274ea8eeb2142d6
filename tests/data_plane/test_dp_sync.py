"""SyncFlags: a snapshot, then changes, resumable from a revision; over real gRPC and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import orjson
import pytest
import redis
from dp_helpers import ENV, FLAGS, SDK_KEY, SEGMENTS, Client, Plane, settings_for, wait_until

from flagyard.contracts.redis import Change, EnvKeys, apply_change, apply_changes
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb


class Stream:
    def __init__(self, client: Client, request: pb.SyncFlagsRequest) -> None:
        self.call = client.sync.SyncFlags(request, metadata=client.metadata, timeout=15)
        self._it: Iterator[pb.SyncFlagsResponse] = iter(self.call)

    def next(self) -> pb.SyncFlagsResponse:
        return next(self._it)

    def snapshot(self) -> tuple[pb.SyncFlagsResponse, list[pb.Definition]]:
        """Read a whole (possibly chunked) snapshot."""
        definitions: list[pb.Definition] = []
        while True:
            message = self.next()
            assert message.WhichOneof("payload") == "snapshot", message
            definitions += message.snapshot.definitions
            if not message.snapshot.more:
                return message, definitions

    def close(self) -> None:
        self.call.cancel()


@pytest.fixture
def open_stream(client: Client) -> Iterator[Any]:
    streams: list[Stream] = []

    def open_(revision: int | None = None, event_id: str = "", c: Client | None = None) -> Stream:
        request = pb.SyncFlagsRequest(event_id=event_id)
        if revision is not None:
            request.revision = revision
        stream = Stream(c or client, request)
        streams.append(stream)
        return stream

    yield open_
    for stream in streams:
        stream.close()


def banner(variant: str) -> dict[str, Any]:
    return {**FLAGS["banner"], "default_variant": variant}


def revision_of(plane: Plane) -> int:
    return int(plane.call(lambda: plane.plane.follower.envs[ENV].revision))  # type: ignore[union-attr]


def test_sync_flags__no_revision__snapshot_then_deltas(
    rds: redis.Redis, seeded: str, open_stream: Any
) -> None:
    stream = open_stream()

    first, definitions = stream.snapshot()
    assert first.revision == len(FLAGS) + len(SEGMENTS)
    assert first.event_id
    assert dict(first.snapshot.metadata) == {"project": "shop", "environment": "production"}
    flags = {d.key: d for d in definitions if d.kind == pb.DEFINITION_KIND_FLAG}
    assert set(flags) == set(FLAGS)
    assert orjson.loads(flags["banner"].json) == {**FLAGS["banner"], "version": 1}
    assert [d.key for d in definitions if d.kind == pb.DEFINITION_KIND_SEGMENT] == ["beta"]

    apply_change(rds, seeded, ENV, "flag", "banner", 2, banner("b"))
    apply_change(rds, seeded, ENV, "segment", "beta", 2, None)

    put, delete = stream.next(), stream.next()
    assert put.revision == first.revision + 1
    assert put.change.operation == pb.OPERATION_PUT
    assert put.change.definition.key == "banner"
    assert put.change.definition.version == 2
    assert orjson.loads(put.change.definition.json)["default_variant"] == "b"
    assert delete.revision == first.revision + 2
    assert delete.change.operation == pb.OPERATION_DELETE
    assert (delete.change.definition.kind, delete.change.definition.key) == (
        pb.DEFINITION_KIND_SEGMENT,
        "beta",
    )
    assert delete.change.definition.version == 2
    assert delete.change.definition.json == ""


def test_sync_flags__resume_from_revision__exactly_the_missed_changes(
    rds: redis.Redis, seeded: str, plane: Plane, open_stream: Any
) -> None:
    first = open_stream()
    snapshot, _ = first.snapshot()
    first.close()
    for version, variant in ((2, "b"), (3, "a"), (4, "b")):
        apply_change(rds, seeded, ENV, "flag", "banner", version, banner(variant))
    wait_until(lambda: revision_of(plane) == snapshot.revision + 3)

    resumed = open_stream(snapshot.revision, snapshot.event_id)
    missed = [resumed.next() for _ in range(3)]
    apply_change(rds, seeded, ENV, "flag", "ratio", 2, FLAGS["ratio"])
    live = resumed.next()

    assert [m.revision for m in missed] == [
        snapshot.revision + 1,
        snapshot.revision + 2,
        snapshot.revision + 3,
    ]
    # Each change carries the value current when the data plane handled it: never older than the event's.
    versions = [m.change.definition.version for m in missed]
    assert versions == sorted(versions)
    assert versions[0] >= 2
    assert versions[-1] == 4
    assert (live.revision, live.change.definition.key) == (snapshot.revision + 4, "ratio")


def test_sync_flags__resume_when_current__heartbeat_then_changes(
    rds: redis.Redis, seeded: str, open_stream: Any
) -> None:
    snapshot, _ = open_stream().snapshot()

    resumed = open_stream(snapshot.revision, snapshot.event_id)
    beat = resumed.next()
    apply_change(rds, seeded, ENV, "flag", "banner", 2, banner("b"))
    change = resumed.next()

    assert beat.WhichOneof("payload") == "heartbeat"
    assert beat.revision == snapshot.revision
    assert change.revision == snapshot.revision + 1


def test_sync_flags__revision_older_than_history__snapshot(
    rds: redis.Redis, seeded: str, planes: list[Plane], open_stream: Any
) -> None:
    plane = Plane(settings_for(seeded, sync_history=2)).start()
    planes.append(plane)
    client = Client(plane.port, SDK_KEY)
    try:
        snapshot, _ = open_stream(c=client).snapshot()
        for version in (2, 3, 4, 5):
            apply_change(rds, seeded, ENV, "flag", "banner", version, banner("b"))
        wait_until(lambda: revision_of(plane) == snapshot.revision + 4)

        message, definitions = open_stream(snapshot.revision, snapshot.event_id, c=client).snapshot()

        assert message.revision == snapshot.revision + 4
        assert next(d for d in definitions if d.key == "banner").version == 5
    finally:
        client.close()


@pytest.mark.parametrize(("revision_delta", "event_id"), [(0, "1-0"), (-1, "0-1"), (1000, "")])
def test_sync_flags__position_unknown_to_this_history__snapshot(
    seeded: str, planes: list[Plane], open_stream: Any, revision_delta: int, event_id: str
) -> None:
    plane = Plane(settings_for(seeded, sync_resume_wait_seconds=0.2)).start()
    planes.append(plane)
    client = Client(plane.port, SDK_KEY)
    try:
        snapshot, _ = open_stream(c=client).snapshot()

        message, _ = open_stream(snapshot.revision + revision_delta, event_id, c=client).snapshot()

        assert (message.revision, message.event_id) == (snapshot.revision, snapshot.event_id)
    finally:
        client.close()


def test_sync_flags__large_environment__snapshot_in_chunks(
    rds: redis.Redis, seeded: str, open_stream: Any
) -> None:
    padding = "x" * 2000
    apply_changes(
        rds,
        seeded,
        ENV,
        [
            Change(
                "flag", f"bulk-{i}", 1, {**FLAGS["banner"], "key": f"bulk-{i}", "metadata": {"pad": padding}}
            )
            for i in range(800)
        ],
    )

    def snapshot_size() -> int:
        _message, definitions = open_stream().snapshot()
        return len(definitions)

    assert wait_until(lambda: snapshot_size() == len(FLAGS) + len(SEGMENTS) + 800, timeout=10)


def test_sync_flags__bad_key__unauthenticated(client: Client) -> None:
    call = client.sync.SyncFlags(
        pb.SyncFlagsRequest(), metadata=(("authorization", "Bearer nope"),), timeout=5
    )

    with pytest.raises(grpc.RpcError) as caught:
        next(iter(call))

    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_sync_flags__environment_reloaded_mid_stream__new_snapshot(
    rds: redis.Redis, seeded: str, open_stream: Any
) -> None:
    stream = open_stream()
    first, _ = stream.snapshot()
    keys = EnvKeys(seeded, ENV)
    rds.incr(keys.rev)  # a revision without its event: the data plane must reload
    apply_change(rds, seeded, ENV, "flag", "banner", 2, banner("b"))

    message, definitions = stream.snapshot()

    assert message.revision == first.revision + 2
    assert next(d for d in definitions if d.key == "banner").version == 2
