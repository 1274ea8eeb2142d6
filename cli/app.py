"""The ``flagyard`` Typer application; each command group lives in its own module."""

from __future__ import annotations

import typer

from . import (
    admin_key_cmd,
    envs_cmd,
    flags_cmd,
    jobs_cmd,
    keys_cmd,
    projects_cmd,
    requests_cmd,
    schedules_cmd,
    segments_cmd,
    webhooks_cmd,
)
from .admin import ApiKeyOption, JsonOption, Target, UrlOption
from .eval_cmd import eval_command
from .insight_cmd import explain_command, preview_command
from .rest import DEFAULT_URL
from .transfer_cmd import export_command, import_command
from .up import up_command

app = typer.Typer(
    name="flagyard",
    help="Flagyard: feature flags and dynamic configuration.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("eval")(eval_command)
app.add_typer(projects_cmd.app, name="projects")
app.add_typer(envs_cmd.app, name="envs")
app.add_typer(flags_cmd.app, name="flags")
app.add_typer(segments_cmd.app, name="segments")
app.add_typer(schedules_cmd.app, name="schedule")
app.add_typer(requests_cmd.app, name="requests")
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(jobs_cmd.app, name="jobs")
app.add_typer(webhooks_cmd.app, name="webhooks")
app.command("import")(import_command)
app.command("export")(export_command)
app.command("explain")(explain_command)
app.command("preview")(preview_command)
app.command("up")(up_command)
app.add_typer(admin_key_cmd.app, name="admin-key")


@app.callback()
def _root(
    ctx: typer.Context,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Flagyard: feature flags and dynamic configuration."""
    ctx.obj = Target(url, api_key, json_output)
