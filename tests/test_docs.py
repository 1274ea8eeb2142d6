"""The docs and the Taskfile stay true: every setting is in the README, the Taskfile parses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from flagyard.cli.up_setup import UpSettings
from flagyard.control_plane.settings import Settings
from flagyard.data_plane.settings import DataPlaneSettings
from flagyard.syncer.settings import SyncerSettings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize(
    "settings", [Settings, SyncerSettings, DataPlaneSettings, UpSettings], ids=lambda s: s.__name__
)
def test_readme__configuration_table__documents_every_setting(settings: type[BaseSettings]) -> None:
    documented = set(re.findall(r"`(FLAGYARD_[A-Z0-9_]+)`", README))
    missing = {f"FLAGYARD_{name.upper()}" for name in settings.model_fields} - documented
    assert missing == set()


@pytest.mark.parametrize("doc", ["README.md", "ARCHITECTURE.md"])
def test_docs__every_image__is_a_committed_png_a_person_can_see(doc: str) -> None:
    images = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", (ROOT / doc).read_text())
    for alt, target in images:
        path = ROOT / target
        assert alt.strip(), f"{target}: an image needs alt text"
        assert path.is_file(), f"{doc} shows {target}, which is missing"
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{target} is not a PNG"
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width >= 800, f"{target} is {width} pixels wide: too small to read"
        assert height >= 500, f"{target} is {height} pixels high: too small to read"
        assert len(data) < 400_000, f"{target} is {len(data)} bytes: keep README images small"


def test_taskfile__parsed_by_task__lists_the_documented_targets() -> None:
    task = Path(sys.executable).parent / "task"
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("FORCE_COLOR", None)
    proc = subprocess.run(
        [str(task), "--list"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    listing = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)
    for target in (
        "test",
        "lint",
        "typecheck",
        "bench",
        "proto",
        "compose:validate",
        "up",
        "k8s:validate",
        "loadtest",
    ):
        assert f"* {target}:" in listing


def _doc_number(text: str) -> int:
    units = {"KiB": 1024, "MiB": 1024 * 1024}
    number, _, unit = text.replace(",", "").partition(" ")
    return int(number) * units.get(unit, 1)


def test_architecture__limits_table__equals_rule_engine_limits() -> None:
    from flagyard.rule_engine import limits

    text = (ROOT / "ARCHITECTURE.md").read_text()
    documented = {
        name: _doc_number(value)
        for name, value in re.findall(r"^\| `([A-Z_]+)` \| ([0-9,]+(?: [KM]iB)?) \|", text, re.M)
    }
    declared = {
        name: value
        for name, value in vars(limits).items()
        if name.isupper() and name not in {"KiB", "MiB"} and isinstance(value, int)
    }
    assert documented == declared


def test_limits__largest_definition_plus_a_chunk__fits_one_grpc_message() -> None:
    from flagyard.rule_engine import limits

    largest = max(limits.MAX_FLAG_BYTES, limits.MAX_SEGMENT_BYTES)
    assert limits.SYNC_CHUNK_BYTES + largest <= limits.MAX_GRPC_MESSAGE_BYTES


def _default(function: object, name: str) -> object:
    import inspect

    return inspect.signature(function).parameters[name].default


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _every(seconds: object) -> str:
    return "a minute" if seconds == 60 else f"every {seconds:g} s"


def _architecture_figures() -> list[tuple[str, str]]:
    """Each figure ARCHITECTURE.md states about a tuning constant, rendered from the code that holds it.

    ARCHITECTURE.md states contracts; where a contract names a tuned value (a batch size, an interval, a
    TTL), the value lives in the code and this table renders the sentence from it, so a retuned constant
    fails here until the document says the new value.
    """
    from flagyard.cli.supervisor import BACKOFF_INITIAL, BACKOFF_MAX, GROUP_GRACE, WATCHDOG_GRACE, Supervisor
    from flagyard.contracts.redis import SERVED_STALE_SECONDS
    from flagyard.control_plane import outbox, scheduler
    from flagyard.control_plane.api.deps import IdempotencyPruner
    from flagyard.control_plane.metrics import STALE_GAUGE_MAX_AGE_SECONDS
    from flagyard.control_plane.services import change_requests, lifecycle, propagation, schedules, sessions
    from flagyard.control_plane.services import webhooks as webhook_service
    from flagyard.control_plane.webhooks import EXCERPT_BYTES, LOG_KEEP_PER_SUBSCRIPTION
    from flagyard.data_plane.settings import DataPlaneSettings
    from flagyard.syncer import worker

    dp = DataPlaneSettings.model_fields
    retries = ", ".join(str(seconds) for seconds in outbox.JOB_RETRY_INTERVALS)
    return [
        ("outbox job size", f"up to {outbox.JOB_BATCH} changes a job"),
        ("outbox mark delay", f"UPDATE every {_seconds(outbox.MARK_DELAY)} (`outbox.MARK_DELAY`"),
        (
            "relay batch",
            f"`FOR UPDATE SKIP LOCKED`), {_default(outbox.relay_once, 'batch_size')} at a\ntime.",
        ),
        ("job retries", f"Failing jobs are retried ({retries} s; set at enqueue)"),
        (
            "idempotency prune batch",
            f"at most {_default(IdempotencyPruner, 'batch')} at a time (`SKIP LOCKED`)",
        ),
        (
            "idempotency prune interval",
            f"at most once {_every(_default(IdempotencyPruner, 'interval'))} per process",
        ),
        ("maintenance interval", f"one maintenance thread\n(every {_seconds(worker.MAINTENANCE_INTERVAL)})"),
        ("liveness TTL", f"`P:syncer:alive:{{worker}}` (TTL {_seconds(worker.ALIVE_TTL)})"),
        ("maintenance lock TTL", f"`P:syncer:maintenance:{{queue}}` (TTL {_seconds(worker.LOCK_TTL)})"),
        ("stuck jobs", f"every job left over {_seconds(worker.STUCK_SECONDS)} in RQ's intermediate list"),
        ("reconcile retry", f"(a\nfailed pass is retried after {_seconds(worker.RECONCILE_RETRY_SECONDS)})"),
        ("outage backoff", f"pings Redis with a backoff of at most {_seconds(worker.OUTAGE_BACKOFF_MAX)}"),
        ("group grace", f"(SIGKILL after {_seconds(GROUP_GRACE)})"),
        ("watchdog grace", f"(SIGTERM, SIGKILL after {_seconds(WATCHDOG_GRACE)})"),
        ("restart backoff", f"restarted after {_seconds(BACKOFF_INITIAL)}, doubling"),
        ("restart cap", f"at most {_seconds(BACKOFF_MAX)} (the streak ends once it has run"),
        (
            "crash loop",
            f"exits more than {_default(Supervisor, 'max_restarts')} times within "
            f"{_seconds(_default(Supervisor, 'restart_window'))}",
        ),
        ("key cache", f"(data plane: {_seconds(dp['sdk_key_cache_seconds'].default)})"),
        ("resume history", f"older than its last ~{dp['sync_history'].default} changes"),
        (
            "sessions per key",
            f"At most `MAX_SESSIONS_PER_KEY` ({sessions.MAX_SESSIONS_PER_KEY}) live sessions per key",
        ),
        ("session prune", f"each sign-in deletes up to {sessions.PRUNE_BATCH} ended sessions"),
        ("served reports", f"reports of `P:env:{{env}}:served` younger than {SERVED_STALE_SECONDS:g} s"),
        ("data planes listed", f"sorted by id, at most {propagation.MAX_DATA_PLANES} listed"),
        (
            "pending schedules",
            f"at most `MAX_PENDING_PER_ENVIRONMENT` ({schedules.MAX_PENDING_PER_ENVIRONMENT}) pending per "
            f"environment with at most {schedules.MAX_PENDING_BYTES_PER_ENVIRONMENT // 2**20} MiB of\nbodies",
        ),
        (
            "schedule window",
            f"at most {schedules.CLOCK_SKEW.total_seconds():g} s in the past and {schedules.MAX_LEAD.days} days\nahead",
        ),
        (
            "stale report days",
            f"(1 to {lifecycle.MAX_STALE_DAYS}, default {lifecycle.DEFAULT_STALE_DAYS}, paged)",
        ),
        (
            "stale gauge",
            f"computed on a scrape at most once {_every(STALE_GAUGE_MAX_AGE_SECONDS)} per process",
        ),
        (
            "webhooks per project",
            f"at most `MAX_WEBHOOKS_PER_PROJECT` ({webhook_service.MAX_WEBHOOKS_PER_PROJECT})",
        ),
        ("webhook excerpt", f"at most {EXCERPT_BYTES // 1024} KiB of the answer read"),
        ("webhook log", f"at most {LOG_KEEP_PER_SUBSCRIPTION:,} per subscription"),
        (
            "open requests",
            f"At most `MAX_OPEN_PER_ENVIRONMENT` ({change_requests.MAX_OPEN_PER_ENVIRONMENT}) open",
        ),
        ("request events", f"`MAX_EVENTS_PER_REQUEST` ({change_requests.MAX_EVENTS_PER_REQUEST}) comments"),
        ("scheduler batch", f"(up to {scheduler.BATCH} changes a pass, repeated while full)"),
    ]


@pytest.mark.parametrize("figure", _architecture_figures(), ids=lambda figure: figure[0])
def test_architecture__tuning_figures__equal_the_code(figure: tuple[str, str]) -> None:
    text = " ".join((ROOT / "ARCHITECTURE.md").read_text().split())
    assert " ".join(figure[1].split()) in text
