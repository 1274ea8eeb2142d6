"""Contracts the planes share and no plane owns: the Redis keys, values, events and scripts the syncer
writes and the data plane and control plane read (:mod:`.redis`). A plane imports these, never another
plane (``tests/test_layers.py``)."""

# The folder is the source layout; under a second name every module would be loaded a second time.
if not __name__.startswith("flagyard."):
    raise ImportError(f"import this package as 'flagyard.{__name__}', not '{__name__}'")
