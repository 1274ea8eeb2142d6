"""``python -m flagyard.data_plane``: serve with the settings of the ``FLAGYARD_*`` environment.

With ``FLAGYARD_DATA_PLANE_PROCESSES`` (or ``--processes``) above 1 this process supervises that many
workers sharing the port (see :mod:`.supervisor`); ``--worker`` is how it starts them.
"""

from __future__ import annotations

import argparse
import sys

from flagyard.contracts.logs import configure_logging

from .exceptions import ConfigurationError
from .server import run
from .settings import DataPlaneSettings
from .supervisor import supervise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flagyard.data_plane", description=__doc__)
    parser.add_argument("--processes", type=int, help="overrides FLAGYARD_DATA_PLANE_PROCESSES")
    parser.add_argument("--port", type=int, help="overrides FLAGYARD_GRPC_PORT")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    overrides: dict[str, int] = {}
    if args.processes is not None:
        overrides["data_plane_processes"] = args.processes
    if args.port is not None:
        overrides["grpc_port"] = args.port
    try:
        settings = DataPlaneSettings.from_env(**overrides)
    except ConfigurationError as exc:
        print(f"flagyard.data_plane: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    if args.worker:
        run(settings, serve_metrics=False)
        return 0
    if settings.data_plane_processes > 1:
        return supervise(settings)
    run(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
