"""The PostgreSQL schema shared by the planes that read it: the ORM models, the one mapping between rows
and rule-engine models, and the engine and session factory.

A neutral package so that the syncer, which reads committed changes, need not import the control plane,
which writes them. The control plane still owns the schema's evolution: its Alembic migrations
(``control_plane/migrations``) are written against these models.
"""

# The folder is the source layout; under a second name every module would be loaded a second time.
if not __name__.startswith("flagyard."):
    raise ImportError(f"import this package as 'flagyard.{__name__}', not '{__name__}'")
