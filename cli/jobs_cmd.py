"""``flagyard jobs failed``: sync jobs whose retries are exhausted, listed and put back on the queue."""

from __future__ import annotations

from typing import Annotated

import typer

from .admin import connect, group

app = group("Background jobs of the control plane.")
failed = group("Sync jobs whose retries are exhausted (needs a global admin key).")
app.add_typer(failed, name="failed")

COLUMNS = ["id", "description", "ended_at", "error"]


@failed.command("list")
def list_failed(ctx: typer.Context) -> None:
    """List the failed sync jobs with their last error."""
    with connect(ctx) as (rest, out):
        out.table(rest.pages("/jobs/failed"), COLUMNS)


@failed.command("requeue")
def requeue(
    ctx: typer.Context,
    job_ids: Annotated[
        list[str] | None, typer.Argument(help="Job ids (default: every failed job).", show_default=False)
    ] = None,
) -> None:
    """Put failed sync jobs back on the queue."""
    with connect(ctx) as (rest, out):
        result = rest.post("/jobs/failed/requeue", {"job_ids": job_ids or None})
        if out.json_mode:
            out.data(result)
        else:
            ids = result["requeued"]
            out.note(f"requeued {len(ids)} job(s)" + (": " + " ".join(ids) if ids else ""))
