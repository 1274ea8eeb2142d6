"""A fleet of SyncFlags streams in one process, for the fan-out tests and benchmark (run as a script).

``python fanout_client.py PORT SDK_KEY STREAMS CHANGES SECONDS`` opens STREAMS grpc.aio SyncFlags streams
(one connection per CONNECTION_STREAMS, as app instances would hold), prints ``ready`` once each has its
snapshot, then reads until each has CHANGES change messages or SECONDS pass, and prints one JSON line:
``{"changes": [per stream], "codes": {status: n}}``.
"""

from __future__ import annotations

import asyncio
import collections
import sys

import grpc
import grpc.aio
import orjson

from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2_grpc as pb_grpc

CONNECTION_STREAMS = 50


async def main(port: int, key: str, streams: int, changes: int, seconds: float) -> None:
    metadata = (("authorization", f"Bearer {key}"),)
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range((streams + CONNECTION_STREAMS - 1) // CONNECTION_STREAMS)
    ]
    counts = [0] * streams
    codes: collections.Counter[str] = collections.Counter()
    ready = 0
    all_ready = asyncio.Event()

    async def one(i: int) -> None:
        nonlocal ready
        stub = pb_grpc.SyncServiceStub(channels[i // CONNECTION_STREAMS])
        call = stub.SyncFlags(pb.SyncFlagsRequest(), metadata=metadata)
        try:
            async for message in call:
                kind = message.WhichOneof("payload")
                if kind == "snapshot" and not message.snapshot.more:
                    ready += 1
                    if ready == streams:
                        all_ready.set()
                elif kind == "change":
                    counts[i] += 1
                    if counts[i] >= changes:
                        break
            codes["OK"] += 1
        except grpc.aio.AioRpcError as exc:
            codes[exc.code().name] += 1
        finally:
            call.cancel()

    tasks = [asyncio.create_task(one(i)) for i in range(streams)]
    await asyncio.wait_for(all_ready.wait(), seconds)
    print("ready", flush=True)
    await asyncio.wait(tasks, timeout=seconds)
    for task in tasks:
        task.cancel()
    print(orjson.dumps({"changes": counts, "codes": codes}).decode(), flush=True)
    for channel in channels:
        await channel.close()


if __name__ == "__main__":
    port, key, n, changes, seconds = sys.argv[1:6]
    asyncio.run(main(int(port), key, int(n), int(changes), float(seconds)))
