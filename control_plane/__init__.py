"""Flagyard's control plane: the admin REST API over PostgreSQL.

Versions, audit, rollback, API and SDK keys, and a transactional outbox that hands every change to the
syncer. ``flagyard.control_plane.main.create_app(settings)`` builds the FastAPI app;
``flagyard.db.mapping`` is the one mapping between rows and rule-engine models;
``flagyard.control_plane.outbox`` documents the propagation contract.
"""

# The folder is the source layout; under a second name every module would be loaded a second time.
if not __name__.startswith("flagyard."):
    raise ImportError(f"import this package as 'flagyard.{__name__}', not '{__name__}'")
