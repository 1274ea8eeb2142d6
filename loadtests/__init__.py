"""Flagyard's load tests: locust scenarios and ``python -m loadtests.run``, which runs them against a stack
it starts itself (see README.md)."""
