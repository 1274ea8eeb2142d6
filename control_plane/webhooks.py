"""Webhook delivery: workers take due rows of ``webhook_deliveries`` (the webhook outbox) and POST them,
signed, to their subscription's URL.

Contract:

* A change inserts its delivery rows in its own transaction (:meth:`.services.common.Tx.audit`), so a
  delivery exists exactly when the change committed; nothing is sent from the request, which never waits
  for, nor fails because of, a receiver.
* A worker claims due rows with ``FOR UPDATE SKIP LOCKED`` and a lease (``leased_until``): any number of
  processes (each control plane runs one, ``python -m flagyard.control_plane.webhooks`` runs more) never
  send a row twice at once, and a row whose worker died is taken again when its lease ends. The attempt
  is counted when claimed, so a receiver that crashes its worker cannot be retried forever.
* Each attempt has one deadline for everything (DNS, connect, send, status line, capped body):
  ``FLAGYARD_WEBHOOK_TIMEOUT_SECONDS``. At most ``FLAGYARD_WEBHOOK_CONCURRENCY`` attempts run at once per
  process, and at most ``FLAGYARD_WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION`` of one subscription (counted across
  processes, up to a race between simultaneous claims), so a hanging receiver holds a few slots, never the
  worker. Redirects are not followed; at most
  :data:`EXCERPT_BYTES` of the answer are read. The destination is resolved first and refused (not
  retried) if any address is loopback, private, link-local, multicast or reserved, unless
  ``FLAGYARD_WEBHOOK_ALLOW_PRIVATE``; the connection then goes to the address checked (no second lookup a
  hostile DNS could answer differently).
* Signing follows Standard Webhooks: ``webhook-id`` (stable across retries), ``webhook-timestamp`` (the
  attempt's Unix time, for the receiver's replay window) and ``webhook-signature: v1,<base64 HMAC-SHA256 of
  "{id}.{timestamp}.{body}">`` with the subscription's secret.
* A 2xx answer delivers. Anything else is a failed attempt: retried after an exponential backoff with
  jitter up to ``FLAGYARD_WEBHOOK_MAX_ATTEMPTS``, then failed. ``FLAGYARD_WEBHOOK_DISABLE_AFTER_FAILURES``
  consecutive failed attempts of one subscription disable it (audited; its pending deliveries fail).
* Delivery is at least once: a receiver deduplicates by ``webhook-id``. Order is not guaranteed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import ipaddress
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session, sessionmaker

from flagyard.contracts.logs import configure_logging
from flagyard.control_plane.exceptions import ConfigurationError, RefusedDestinationError
from flagyard.control_plane.metrics import Metrics
from flagyard.control_plane.services.diff import json_diff
from flagyard.control_plane.services.webhooks import is_public
from flagyard.control_plane.settings import Settings
from flagyard.control_plane.webhook_events import TEST_EVENT
from flagyard.control_plane.webhook_secrets import SecretBox, sign
from flagyard.db.engine import make_engine, make_sessionmaker

EXCERPT_BYTES = 4096
"""Bytes of a receiver's answer read and kept in the delivery log; the rest is never read."""
ERROR_CHARS = 500
"""Characters of an attempt's error kept in the delivery log."""
LOG_KEEP_PER_SUBSCRIPTION = 1000
"""Finished deliveries kept per subscription (beside the retention time)."""
PRUNE_BATCH = 1000
PRUNE_INTERVAL_SECONDS = 60.0
MIN_CLAIM_GAP_SECONDS = 0.05
"""Claims of one worker loop are at least this far apart, however often it is woken."""
USER_AGENT = "Flagyard-Webhooks/1"

log = structlog.get_logger("flagyard.webhooks")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a worker holds (its lease) for one attempt."""

    id: int
    subscription_id: int
    event: str
    payload: str
    attempts: int
    url: str
    secret_encrypted: bytes


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    retry: bool = True
    http_status: int | None = None
    latency_ms: int | None = None
    excerpt: str | None = None
    error: str | None = None


_CLAIM = sa.text(
    """
    WITH in_flight AS (
        SELECT subscription_id, count(*) AS n FROM webhook_deliveries
        WHERE status = 'pending' AND leased_until > :now
        GROUP BY subscription_id
    ), ranked AS (
        SELECT d.id, d.next_attempt_at,
               coalesce(f.n, 0)
               + row_number() OVER (PARTITION BY d.subscription_id ORDER BY d.next_attempt_at, d.id) AS slot
        FROM webhook_deliveries d
        JOIN webhook_subscriptions s ON s.id = d.subscription_id
        LEFT JOIN in_flight f ON f.subscription_id = d.subscription_id
        WHERE d.status = 'pending' AND d.next_attempt_at <= :now
          AND (d.leased_until IS NULL OR d.leased_until <= :now)
          AND (s.enabled OR d.event = :test_event)
    ), due AS (
        SELECT d.id FROM webhook_deliveries d
        JOIN ranked r ON r.id = d.id
        WHERE r.slot <= :per_subscription AND d.status = 'pending'
          AND (d.leased_until IS NULL OR d.leased_until <= :now)
        ORDER BY r.next_attempt_at
        LIMIT :n
        FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE webhook_deliveries d
    SET leased_until = :lease_until, attempts = d.attempts + 1, last_attempt_at = :now
    FROM due, webhook_subscriptions s
    WHERE d.id = due.id AND s.id = d.subscription_id
    RETURNING d.id, d.subscription_id, d.event, d.payload, d.attempts, s.url, s.secret_encrypted
    """
)

_FINISH = sa.text(
    """
    UPDATE webhook_deliveries
    SET status = :status, http_status = :http_status, latency_ms = :latency_ms,
        response_excerpt = :excerpt, error = :error, leased_until = NULL,
        next_attempt_at = :next_attempt_at, completed_at = :completed_at
    WHERE id = :id
    """
)

_SUCCEEDED = sa.text(
    "UPDATE webhook_subscriptions SET consecutive_failures = 0, failing_since = NULL"
    " WHERE id = :id AND consecutive_failures <> 0"
)

_LOCK_SUBSCRIPTION = sa.text(
    "SELECT enabled, consecutive_failures, failing_since, project_id FROM webhook_subscriptions"
    " WHERE id = :id FOR UPDATE"
)

_FAILED = sa.text(
    """
    UPDATE webhook_subscriptions
    SET consecutive_failures = :failures, failing_since = :failing_since, enabled = :enabled,
        disabled_reason = CASE WHEN :disable THEN :reason ELSE disabled_reason END,
        updated_at = CASE WHEN :disable THEN now() ELSE updated_at END
    WHERE id = :id
    """
)

_FAIL_PENDING = sa.text(
    """
    UPDATE webhook_deliveries SET status = 'failed', error = :error, completed_at = :now, leased_until = NULL
    WHERE subscription_id = :id AND status = 'pending' AND id <> :delivery_id
    """
)

_AUDIT_DISABLED = sa.text(
    """
    INSERT INTO audit_log (project_id, project_key, actor_key_id, actor_key_prefix, resource_type,
                           resource_key, environment_key, action, version, diff, comment, request_id)
    SELECT p.id, p.key, NULL, NULL, 'webhook', :key, NULL, 'disabled', NULL, CAST(:diff AS json),
           :comment, NULL
    FROM projects p WHERE p.id = :project_id
    """
)

_PRUNE_OLD = sa.text(
    """
    DELETE FROM webhook_deliveries WHERE id IN (
        SELECT id FROM webhook_deliveries
        WHERE status <> 'pending' AND created_at < :before
        ORDER BY created_at LIMIT :batch FOR UPDATE SKIP LOCKED)
    """
)

_PRUNE_EXCESS = sa.text(
    """
    DELETE FROM webhook_deliveries WHERE id IN (
        SELECT id FROM (
            SELECT id, row_number() OVER (PARTITION BY subscription_id ORDER BY id DESC) AS n
            FROM webhook_deliveries WHERE status <> 'pending') ranked
        WHERE n > :keep LIMIT :batch)
    """
)

_PENDING = sa.text("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")


def backoff_seconds(
    attempts: int, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Delay after the ``attempts``-th failed attempt: ``base * 2^(attempts-1)``, at most ``cap``, scaled
    by a random factor in [0.5, 1) so receivers that failed together are not retried together."""
    delay = min(cap, base * 2.0 ** min(attempts - 1, 40))
    return delay * (0.5 + rand() / 2)


def _clean(text: str, limit: int) -> str:
    return text.replace("\x00", "\ufffd")[:limit]


class Worker:
    """Sends due webhook deliveries: :meth:`run_once` (tests, ``--once``) or a loop in a thread
    (:meth:`start`/:meth:`stop`)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        metrics: Metrics | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.metrics = metrics
        self.clock = clock or (lambda: datetime.now(UTC))
        key = settings.webhook_key()
        self.box = SecretBox(key) if key is not None else None
        self.timeout = settings.webhook_timeout_seconds
        self.concurrency = settings.webhook_concurrency
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._next_prune = 0.0
        self._db = ThreadPoolExecutor(max_workers=2, thread_name_prefix="flagyard-webhooks-db")
        """The database calls' own threads: DNS lookups (the loop's default executor) that hang until the
        resolver gives up never delay recording outcomes or claiming."""

    # --- the database side (worker threads) ----------------------------------------------------------

    def claim(self, n: int, now: datetime) -> list[Claimed]:
        """Lease up to ``n`` due deliveries, at most ``FLAGYARD_WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION`` of one
        subscription in flight (counting those other workers hold), so a slow or hostile receiver holds
        that many slots at most, never the whole worker."""
        lease = timedelta(seconds=self.timeout * 2 + 30)
        with self.sessions() as session, session.begin():
            rows = session.execute(
                _CLAIM,
                {
                    "now": now,
                    "lease_until": now + lease,
                    "n": n,
                    "per_subscription": self.settings.webhook_concurrency_per_subscription,
                    "test_event": TEST_EVENT,
                },
            ).all()
        return [Claimed(*row) for row in rows]

    def record(self, claimed: Claimed, outcome: Outcome, now: datetime) -> str:
        """Store an attempt's outcome; what became of the delivery: delivered, retrying or failed.

        The subscription's row is updated (so locked) first, then the delivery's: every recording
        transaction takes its locks in that order, so concurrent outcomes of one subscription never
        deadlock when one of them disables it and fails the others' pending deliveries.
        """
        settings = self.settings
        with self.sessions() as session, session.begin():
            if outcome.ok:
                session.execute(_SUCCEEDED, {"id": claimed.subscription_id})
                status, next_at, completed, error = "delivered", now, now, outcome.error
            else:
                enabled = self._count_failure(session, claimed, now)
                error = outcome.error
                if (
                    outcome.retry
                    and claimed.attempts < settings.webhook_max_attempts
                    and (enabled or claimed.event == TEST_EVENT)
                ):
                    delay = backoff_seconds(
                        claimed.attempts,
                        settings.webhook_backoff_base_seconds,
                        settings.webhook_backoff_max_seconds,
                    )
                    status, next_at, completed = "pending", now + timedelta(seconds=delay), None
                else:
                    status, next_at, completed = "failed", now, now
            session.execute(
                _FINISH,
                {
                    "id": claimed.id,
                    "status": status,
                    "http_status": outcome.http_status,
                    "latency_ms": outcome.latency_ms,
                    "excerpt": outcome.excerpt,
                    "error": error,
                    "next_attempt_at": next_at,
                    "completed_at": completed,
                },
            )
        return "retrying" if status == "pending" else status

    def _count_failure(self, session: Session, claimed: Claimed, now: datetime) -> bool:
        """Count a failed attempt against the subscription, disabling it (audited, its other pending
        deliveries failed) at the limit; whether it is still enabled."""
        limit = self.settings.webhook_disable_after_failures
        reason = (
            f"disabled after {limit} consecutive failed delivery attempts over at least "
            f"{self.settings.webhook_disable_after_seconds:g} s"
        )
        row = session.execute(_LOCK_SUBSCRIPTION, {"id": claimed.subscription_id}).first()
        if row is None:
            return False
        failures = row.consecutive_failures + 1
        # The earliest failure of the streak, whichever order concurrent outcomes are recorded in.
        failing_since = min(row.failing_since or now, now)
        sustained = now - failing_since >= timedelta(seconds=self.settings.webhook_disable_after_seconds)
        disable = bool(row.enabled) and failures >= limit and sustained
        enabled = bool(row.enabled) and not disable
        session.execute(
            _FAILED,
            {
                "id": claimed.subscription_id,
                "failures": failures,
                "failing_since": failing_since,
                "enabled": enabled,
                "disable": disable,
                "reason": reason,
            },
        )
        if not disable:
            return enabled
        session.execute(
            _FAIL_PENDING,
            {
                "id": claimed.subscription_id,
                "delivery_id": claimed.id,
                "now": now,
                "error": "the subscription was disabled after sustained failures",
            },
        )
        diff = json_diff({"enabled": True}, {"enabled": False})
        session.execute(
            _AUDIT_DISABLED,
            {
                "key": str(claimed.subscription_id),
                "diff": orjson.dumps(diff).decode(),
                "comment": reason,
                "project_id": row.project_id,
            },
        )
        log.warning("webhook.disabled", subscription_id=claimed.subscription_id, failures=limit)
        return False

    def prune(self, now: datetime) -> int:
        """Drop finished deliveries past the retention time or beyond the per-subscription count."""
        before = now - timedelta(hours=self.settings.webhook_retention_hours)
        with self.sessions() as session, session.begin():
            old = session.execute(_PRUNE_OLD, {"before": before, "batch": PRUNE_BATCH})
            excess = session.execute(_PRUNE_EXCESS, {"keep": LOG_KEEP_PER_SUBSCRIPTION, "batch": PRUNE_BATCH})
        return int(getattr(old, "rowcount", 0) or 0) + int(getattr(excess, "rowcount", 0) or 0)

    def pending(self) -> int:
        with self.sessions() as session:
            return int(session.scalar(_PENDING) or 0)

    async def _in_db_thread(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, functools.partial(function, *args))

    # --- the network side (the event loop) -----------------------------------------------------------

    async def _resolve(self, host: str, port: int) -> str:
        """The address to connect to: every address ``host`` resolves to must be allowed."""
        try:
            literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise httpx.ConnectError(f"cannot resolve {host}: {exc}") from None
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
            if not addresses:
                raise httpx.ConnectError(f"cannot resolve {host}")
        if not self.settings.webhook_allow_private:
            for address in addresses:
                if not is_public(address):
                    raise RefusedDestinationError(
                        f"refused: {host} resolves to {address}, a loopback, private, link-local, "
                        "multicast or reserved address (FLAGYARD_WEBHOOK_ALLOW_PRIVATE=true allows it)"
                    )
        return str(addresses[0])

    async def attempt(self, client: httpx.AsyncClient, claimed: Claimed) -> Outcome:
        """One POST of the delivery, within one deadline; never raises."""
        started = time.monotonic()

        def elapsed() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            async with asyncio.timeout(self.timeout):
                return await self._post(client, claimed, elapsed)
        except RefusedDestinationError as exc:
            return Outcome(False, retry=False, latency_ms=elapsed(), error=_clean(str(exc), ERROR_CHARS))
        except TimeoutError:
            return Outcome(False, latency_ms=elapsed(), error=f"timed out after {self.timeout:g} s")
        except httpx.HTTPError as exc:
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return Outcome(False, latency_ms=elapsed(), error=_clean(message, ERROR_CHARS))
        except OSError as exc:
            return Outcome(
                False, latency_ms=elapsed(), error=_clean(f"{type(exc).__name__}: {exc}", ERROR_CHARS)
            )
        except ConfigurationError as exc:  # the secret cannot be decrypted with this process's key
            return Outcome(False, retry=False, latency_ms=elapsed(), error=_clean(str(exc), ERROR_CHARS))
        except Exception as exc:  # a receiver must never break the worker: record whatever went wrong
            log.exception("webhook.attempt_error", delivery_id=claimed.id)
            return Outcome(
                False, latency_ms=elapsed(), error=_clean(f"unexpected {type(exc).__name__}", ERROR_CHARS)
            )

    async def _post(self, client: httpx.AsyncClient, claimed: Claimed, elapsed: Callable[[], int]) -> Outcome:
        if self.box is None:
            return Outcome(False, retry=False, error="FLAGYARD_WEBHOOK_SECRET_KEY is not set: cannot sign")
        parts = urlsplit(claimed.url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = await self._resolve(host, port)
        netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        body = claimed.payload.encode()
        message_id = f"msg_{claimed.id}"
        timestamp = int(time.time())
        secret = self.box.open(claimed.secret_encrypted)
        headers = {
            "host": parts.netloc.rsplit("@", 1)[-1],
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "accept-encoding": "identity",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, message_id, timestamp, body),
        }
        extensions: dict[str, Any] = {}
        if parts.scheme == "https" and host != address:
            extensions["sni_hostname"] = host
        request = client.build_request("POST", target, content=body, headers=headers, extensions=extensions)
        response = await client.send(request, stream=True, follow_redirects=False)
        try:
            excerpt = bytearray()
            async for chunk in response.aiter_raw():
                excerpt += chunk
                if len(excerpt) >= EXCERPT_BYTES:
                    break
        finally:
            await response.aclose()
        text = _clean(bytes(excerpt[:EXCERPT_BYTES]).decode("utf-8", "replace"), EXCERPT_BYTES)
        status = response.status_code
        if 200 <= status < 300:
            return Outcome(True, http_status=status, latency_ms=elapsed(), excerpt=text)
        if 300 <= status < 400:
            location = _clean(response.headers.get("location", ""), 200)
            error = f"HTTP {status}: redirects are not followed (to {location or 'nowhere'})"
        else:
            error = f"HTTP {status}"
        return Outcome(False, http_status=status, latency_ms=elapsed(), excerpt=text, error=error)

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout),
            follow_redirects=False,
            # No proxy or .netrc from the environment: the destination checked is the one connected to.
            trust_env=False,
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=0),
        )

    async def _deliver(self, client: httpx.AsyncClient, claimed: Claimed, now: datetime | None) -> str:
        outcome = await self.attempt(client, claimed)
        try:
            result = await self._in_db_thread(self.record, claimed, outcome, now or self.clock())
        except sa.exc.SQLAlchemyError as exc:
            # The lease ends and the delivery is attempted again (the attempt stays counted).
            log.warning("webhook.record_failed", delivery_id=claimed.id, error=str(exc).splitlines()[0][:200])
            return "unrecorded"
        if self.metrics is not None:
            self.metrics.webhook_deliveries.labels(result).inc()
            if outcome.latency_ms is not None:
                self.metrics.webhook_latency.observe(outcome.latency_ms / 1000)
        log.info(
            "webhook.attempt",
            delivery_id=claimed.id,
            subscription_id=claimed.subscription_id,
            webhook_event=claimed.event,
            attempt=claimed.attempts,
            result=result,
            http_status=outcome.http_status,
            latency_ms=outcome.latency_ms,
            error=outcome.error,
        )
        return result

    async def run_once_async(self, now: datetime | None = None) -> list[str]:
        """Claim what is due (at ``now``, default the clock) up to the concurrency, send it all
        concurrently, record every outcome; the outcomes in claim order."""
        at = now or self.clock()
        claimed = await self._in_db_thread(self.claim, self.concurrency, at)
        if not claimed:
            return []
        async with self._client() as client:
            return list(await asyncio.gather(*(self._deliver(client, c, now) for c in claimed)))

    def run_once(self, now: datetime | None = None) -> list[str]:
        return asyncio.run(self.run_once_async(now))

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll (a change just committed some); safe
        from any thread, a no-op unless the loop runs."""
        loop, event = self._loop, self._wake
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop has just ended
                loop.call_soon_threadsafe(event.set)

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: keep every free slot busy with a due delivery. It looks when woken (a commit
        wrote deliveries, an attempt ended and freed its slot) and at least every poll interval, but at
        most every :data:`MIN_CLAIM_GAP_SECONDS`, so a burst of writes costs a few claims, not one each."""
        interval = self.settings.webhook_poll_interval_seconds or 1.0
        wake = self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        inflight: set[asyncio.Task[str]] = set()

        def finished(task: asyncio.Task[str]) -> None:
            inflight.discard(task)
            wake.set()

        async def stop_wakes() -> None:
            await stop.wait()
            wake.set()

        stopping = asyncio.create_task(stop_wakes())
        last_claim = 0.0
        async with self._client() as client:
            while not stop.is_set():
                gap = last_claim + MIN_CLAIM_GAP_SECONDS - time.monotonic()
                if gap > 0:
                    await asyncio.sleep(gap)
                    if stop.is_set():
                        break  # stop's wake may have come during the sleep: the clear below would lose it
                wake.clear()  # before claiming: a wake during the claim is kept for the next round
                last_claim = time.monotonic()
                claimed: Sequence[Claimed] = []
                free = self.concurrency - len(inflight)
                try:
                    if free > 0:
                        claimed = await self._in_db_thread(self.claim, free, self.clock())
                    if time.monotonic() >= self._next_prune:
                        self._next_prune = time.monotonic() + PRUNE_INTERVAL_SECONDS
                        await self._in_db_thread(self.prune, self.clock())
                except sa.exc.SQLAlchemyError as exc:
                    log.warning("webhook.poll_failed", error=str(exc).splitlines()[0][:200])
                for c in claimed:
                    task = asyncio.create_task(self._deliver(client, c, None))
                    inflight.add(task)
                    task.add_done_callback(finished)
                if not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), timeout=interval)
            for task in list(inflight):
                task.cancel()  # its lease ends and another attempt takes the row
            await asyncio.gather(*inflight, return_exceptions=True)
        stopping.cancel()
        self._wake = None

    def start(self) -> None:
        """Run the loop in a daemon thread with its own event loop."""
        ready = threading.Event()

        def main() -> None:
            async def body() -> None:
                self._loop = asyncio.get_running_loop()
                self._stop = asyncio.Event()
                ready.set()
                await self.run(self._stop)

            asyncio.run(body())

        self._thread = threading.Thread(target=main, name="flagyard-webhooks", daemon=True)
        self._thread.start()
        ready.wait(5)

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
        self._db.shutdown(wait=False)


def main(argv: list[str] | None = None) -> None:
    """``python -m flagyard.control_plane.webhooks``: a delivery worker outside the API processes."""
    parser = argparse.ArgumentParser(description="Flagyard webhook delivery worker")
    parser.add_argument("--once", action="store_true", help="send what is due once, then exit")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging(settings)
    engine = make_engine(settings)
    worker = Worker(make_sessionmaker(engine), settings)
    try:
        if args.once:
            worker.run_once()
            return
        stop = asyncio.Event()

        async def run() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            log.info("webhooks.worker_started", concurrency=worker.concurrency)
            await worker.run(stop)

        asyncio.run(run())
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
