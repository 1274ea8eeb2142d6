"""The admin CLI fixtures, defined in admin_cli_stack.py (importable by the tests under a unique name)."""

from admin_cli_stack import cli, cp, project

__all__ = ["cli", "cp", "project"]
