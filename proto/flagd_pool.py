"""The descriptor pool flagd's generated code (``gen/flagd``) registers in, instead of protobuf's default one.

flagd's messages are published by others too: the PyPI flagd provider (``openfeature-provider-flagd``, a test
dependency) registers the same symbols (``flagd.evaluation.v2.AnyFlag``, …) under another file name, and the
default pool refuses a symbol twice. With a pool of their own both load in one process (the data plane in a
test's thread and the stock provider beside it). The wire format is the same; only the Python classes differ
(``google.protobuf.Struct`` fields here are this pool's Struct, read with ``flagyard.proto.values``).
"""

from __future__ import annotations

from google.protobuf import descriptor_pool, struct_pb2

POOL = descriptor_pool.DescriptorPool()
POOL.AddSerializedFile(struct_pb2.DESCRIPTOR.serialized_pb)
