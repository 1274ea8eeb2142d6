"""The suites' shared root. Being here puts ``tests/`` on the import path (pytest's default ``prepend``
import mode), so every suite imports ``polling_helpers`` and the other helpers of this folder by name.

The repository root is deliberately not on the import path: there ``import sdk`` would find the bare
source folder. ``benchmarks`` and ``loadtests`` are not installed, so their tests run them as children in
the repository root (``python -m benchmarks.x``), as their users do; ``stack_processes`` loads the one
file of ``loadtests`` the ``flagyard up`` suites share."""
