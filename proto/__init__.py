"""Flagyard's gRPC contract, ``flagyard.v1`` (source: ``proto/flagyard/v1/flagyard.proto``).

Import the generated modules from ``flagyard.proto.gen.flagyard.v1``::

    from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb, flagyard_pb2_grpc as pb_grpc

Regenerate them with ``proto/generate.sh`` after changing the .proto file (a test checks they are fresh).
"""

# The folder is the source layout; under a second name every module would be loaded a second time.
if not __name__.startswith("flagyard."):
    raise ImportError(f"import this package as 'flagyard.{__name__}', not '{__name__}'")
