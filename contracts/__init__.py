"""Contracts the planes share and no plane owns: the Redis keys, values, events and scripts the syncer
writes and the data plane and control plane read (:mod:`.redis`). A plane imports these, never another
plane (``tests/test_layers.py``)."""
