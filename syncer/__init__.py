"""Flagyard's syncer: RQ workers that read a committed change, validate and compile it, and write it to
Redis behind the version guard (:mod:`.core`; run with ``python -m flagyard.syncer worker``)."""

# The folder is the source layout; under a second name every module would be loaded a second time.
if not __name__.startswith("flagyard."):
    raise ImportError(f"import this package as 'flagyard.{__name__}', not '{__name__}'")
