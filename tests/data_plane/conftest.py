"""The data-plane fixtures, defined in dp_helpers.py (importable by the tests under a unique name)."""

from dp_helpers import client, plane, planes, prefix, rds, seeded

__all__ = ["client", "plane", "planes", "prefix", "rds", "seeded"]
