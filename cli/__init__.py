"""The ``flagyard`` command line."""

from __future__ import annotations

import sys


def main() -> None:
    """Entry point of the ``flagyard`` console script."""
    try:
        from .app import app
    except ImportError as exc:  # the CLI's libraries come with the [cli] extra
        sys.stderr.write(f"flagyard: the command line needs `pip install 'flagyard[cli]'` ({exc})\n")
        raise SystemExit(2) from exc
    app()
