"""``python -m flagyard.syncer``: run workers, reconcile once, or inspect and requeue failed jobs."""

from __future__ import annotations

import argparse
import sys

from .exceptions import ConfigurationError, StoreUnavailableError
from .settings import SyncerSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flagyard.syncer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run RQ workers for the sync queue")
    worker.add_argument("--processes", type=int, default=None, help="default: FLAGYARD_SYNCER_WORKERS")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    commands.add_parser("reconcile", help="compare PostgreSQL and Redis once and repair every difference")
    failed = commands.add_parser("failed", help="jobs whose retries are exhausted")
    failed_commands = failed.add_subparsers(dest="action", required=True)
    failed_commands.add_parser("list")
    requeue = failed_commands.add_parser("requeue")
    requeue.add_argument("job_ids", nargs="*", help="default: every failed job")
    args = parser.parse_args(argv)

    try:
        settings = SyncerSettings.from_env()
    except ConfigurationError as exc:
        print(f"flagyard.syncer: {exc}", file=sys.stderr)
        return 2
    if args.command == "worker":
        from .worker import run_workers

        run_workers(settings, args.processes or settings.syncer_workers, burst=args.burst)
        return 0
    if args.command == "reconcile":
        from .jobs import build_syncer

        try:
            print(f"repairs: {build_syncer(settings).reconcile()}")
        except StoreUnavailableError as exc:
            print(f"reconcile failed: {exc}", file=sys.stderr)
            return 1
        return 0
    from .worker import failed_jobs, requeue_failed

    if args.action == "list":
        for job in failed_jobs(settings):
            result = job.latest_result()
            lines = (result.exc_string or "").strip().splitlines() if result is not None else []
            print(f"{job.id}\t{job.description}\t{lines[-1] if lines else ''}")
        return 0
    print(f"requeued: {requeue_failed(settings, args.job_ids or None)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
