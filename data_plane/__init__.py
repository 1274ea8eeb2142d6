"""Flagyard's data plane: gRPC evaluation from an in-process L1 of compiled flags, kept current from Redis.

Run it with ``python -m flagyard.data_plane`` (settings from ``FLAGYARD_*`` environment variables, see
:mod:`.settings`). The pieces: :mod:`.l1` (``CachedEnvironment``: one environment's compiled flags and
stream position, no I/O), :mod:`.follower` (``Follower``: the L1 cache, hydration, the Redis stream
follower and its ``FollowerStatus``), :mod:`.auth` (SDK keys), :mod:`.service` (the gRPC handlers),
:mod:`.server` (one process), :mod:`.supervisor` (several processes on one port).
"""

# The folder is the source layout; under a second name every module would be loaded a second time.
if not __name__.startswith("flagyard."):
    raise ImportError(f"import this package as 'flagyard.{__name__}', not '{__name__}'")
