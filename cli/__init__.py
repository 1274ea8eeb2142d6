"""The ``flagyard`` command line."""

from __future__ import annotations

# The folder is the source layout; under a second name every module would be loaded a second time.
if not __name__.startswith("flagyard."):
    raise ImportError(f"import this package as 'flagyard.{__name__}', not '{__name__}'")

import sys


def main() -> None:
    """Entry point of the ``flagyard`` console script.

    The admin commands and ``up`` need the ``[cli]`` extra (Typer, Rich, httpx); ``eval`` is advertised
    as "no server at all" and so must work in the base install an app has: without the extra it runs on
    the standard library (:mod:`eval_core`), and every other command says which extra to install.
    """
    try:
        from .app import app
    except ImportError as exc:
        args = sys.argv[1:]
        if args[:1] == ["eval"]:
            from .eval_core import main as eval_main

            raise SystemExit(eval_main(args[1:])) from None
        command = args[0] if args and not args[0].startswith("-") else ""
        sys.stderr.write(
            f"flagyard{' ' + command if command else ''}: needs the command line extra: "
            f"pip install 'flagyard[cli]' (missing: {exc.name or exc}); "
            "'flagyard eval' works without it\n"
        )
        raise SystemExit(2) from exc
    app()
