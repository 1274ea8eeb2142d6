"""The control-plane application: ``create_app(settings)``.

Run it with ``uvicorn --factory flagyard.control_plane.main:app_from_env``.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
import structlog
import swagger_ui_bundle  # type: ignore[import-untyped]
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from flagyard.contracts.logs import configure_logging
from flagyard.contracts.redis_connect import async_redis_client, redis_client
from flagyard.control_plane.api import errors
from flagyard.control_plane.api.deps import IdempotencyPruner, declare_bearer_scheme
from flagyard.control_plane.api.middleware import RequestContextMiddleware
from flagyard.control_plane.api.routes import (
    api_keys,
    audit,
    change_requests,
    environments,
    flags,
    health,
    insight,
    jobs,
    projects,
    schedules,
    sdk_keys,
    segments,
    sessions,
    transfer,
    webhooks,
)
from flagyard.control_plane.console import install_console
from flagyard.control_plane.db.reads import make_read_pool
from flagyard.control_plane.metrics import Metrics
from flagyard.control_plane.outbox import Dispatcher, Relay, backlog
from flagyard.control_plane.ratelimit import RateLimiter
from flagyard.control_plane.scheduler import Scheduler
from flagyard.control_plane.services.change_requests import counts as change_request_counts
from flagyard.control_plane.services.keys import KeyCache, ensure_bootstrap_key
from flagyard.control_plane.services.lifecycle import stale_counts
from flagyard.control_plane.services.schedules import backlog as schedule_backlog
from flagyard.control_plane.settings import Settings
from flagyard.control_plane.state import AppState
from flagyard.control_plane.webhooks import Worker
from flagyard.db.engine import make_engine, make_sessionmaker

log = structlog.get_logger("flagyard.control_plane")


def build_state(settings: Settings) -> AppState:
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    autocommit_sessions = make_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"))
    connection = redis_client(
        settings.redis_url.get_secret_value(),
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
    )
    reads = make_read_pool(settings)
    metrics = Metrics()
    metrics.watch_pool(engine, reads)

    def outbox_backlog() -> tuple[int, float]:
        with sessions() as session:
            return backlog(session)

    metrics.watch_outbox(outbox_backlog)

    def scheduled_backlog() -> tuple[int, int]:
        with sessions() as session:
            return schedule_backlog(session, datetime.now(UTC))

    metrics.watch_schedules(scheduled_backlog)

    def change_requests() -> Mapping[str, int]:
        with sessions() as session:
            return change_request_counts(session)

    metrics.watch_change_requests(change_requests)

    def stale_flags() -> Mapping[str, int]:
        with sessions() as session:
            return stale_counts(session, connection, settings.redis_prefix)

    metrics.watch_stale_flags(stale_flags)
    dispatcher = Dispatcher(
        autocommit_sessions,  # marking rows enqueued is one UPDATE: no transaction round trips
        connection,
        settings.sync_queue,
        background=settings.outbox_dispatch == "background",
        metrics=metrics,
    )
    limiter = RateLimiter(
        connection,
        settings.rate_limit_requests,
        settings.rate_limit_window_seconds,
        settings.redis_prefix,
        async_connection=lambda: async_redis_client(
            settings.redis_url.get_secret_value(),
            socket_timeout=settings.redis_timeout_seconds,
            socket_connect_timeout=settings.redis_timeout_seconds,
        ),
        auth_failure_limit=settings.auth_failure_limit,
        auth_failure_window=settings.auth_failure_window_seconds,
    )
    relay = None
    if settings.outbox_relay_interval_seconds > 0:
        relay = Relay(
            sessions,
            connection,
            settings.sync_queue,
            interval=settings.outbox_relay_interval_seconds,
            grace_seconds=settings.outbox_grace_seconds,
            retention_hours=settings.outbox_retention_hours,
            metrics=metrics,
        )
    scheduler = None
    if settings.scheduler_interval_seconds > 0:
        scheduler = Scheduler(
            sessions, dispatcher, interval=settings.scheduler_interval_seconds, metrics=metrics
        )
    key_cache = KeyCache(settings.auth_cache_seconds)
    worker = Worker(sessions, settings, metrics)

    def webhook_pending() -> int:
        return worker.pending()

    metrics.watch_webhooks(webhook_pending)
    return AppState(
        settings,
        engine,
        sessions,
        autocommit_sessions,
        reads,
        connection,
        dispatcher,
        limiter,
        metrics,
        key_cache,
        relay,
        scheduler,
        worker if settings.webhook_poll_interval_seconds > 0 else None,
    )


def bootstrap(state: AppState) -> None:
    """Insert the bootstrap admin key on first start; a database outage only logs (readyz reports it)."""
    key = state.settings.bootstrap_admin_key
    if key is None:
        return
    try:
        with state.sessions() as session, session.begin():
            if ensure_bootstrap_key(session, key.get_secret_value()):
                log.info("api_key.bootstrapped")
    except sa.exc.SQLAlchemyError as exc:
        log.error("api_key.bootstrap_failed", error=str(exc).splitlines()[0])


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    configure_logging(settings)
    state = build_state(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        bootstrap(state)
        await state.reads.open()
        # Start-up objects live as long as the process: keep them out of the cyclic collector's full passes.
        gc.freeze()
        if state.relay is not None:
            state.relay.start()
        if state.scheduler is not None:
            state.scheduler.start()
        if state.webhooks is not None:
            state.webhooks.start()
        log.info("control_plane.started", mode=settings.mode)
        try:
            yield
        finally:
            if state.scheduler is not None:
                state.scheduler.stop()
            if state.relay is not None:
                state.relay.stop()
            if state.webhooks is not None:
                state.webhooks.stop()
            state.dispatcher.close()
            await state.reads.close()
            await state.limiter.aclose()
            state.engine.dispose()
            state.redis.close()

    app = FastAPI(
        title="Flagyard control plane",
        version="1.0.0",
        summary="The admin API: projects, environments, flags, segments, versions, audit and keys.",
        lifespan=lifespan,
        # Metrics are Prometheus's (/metrics); FastAPI's own OpenTelemetry hooks would cost every request.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        docs_url=None,  # served by install_docs, from local files
        redoc_url=None,  # ReDoc comes only from a CDN
    )
    app.state.flagyard = state
    app.state.idempotency_pruner = IdempotencyPruner(settings.idempotency_ttl_seconds)
    errors.install(app)
    # Routers are matched in turn: probes first (the cheapest answer), then the hottest resources.
    # Each router carries the full /api/v1 prefix itself, so route templates (metrics labels) are complete.
    modules = (
        health,
        flags,
        insight,
        projects,
        environments,
        segments,
        schedules,
        change_requests,
        audit,
        api_keys,
        sdk_keys,
        transfer,
        jobs,
        sessions,
        webhooks,
    )
    routers = [module.router for module in modules]
    for router in routers:
        app.include_router(router)
    declare_bearer_scheme(app)
    install_docs(app)
    install_console(app)
    errors.index_methods(app, routers)
    app.add_middleware(RequestContextMiddleware, metrics=state.metrics, access_log=settings.access_log)
    return app


DOCS_ASSETS = "/docs/assets"


def install_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` with its script, style and icon served by this process (from the
    ``swagger-ui-bundle-v2`` package) instead of FastAPI's default CDN, so the docs work offline and on
    networks that block CDNs. Swagger UI 5 is needed for FastAPI's OpenAPI 3.1 documents."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon-32x32.png",
            oauth2_redirect_url=None,
        )


def app_from_env() -> FastAPI:
    """The uvicorn factory: settings from ``FLAGYARD_*`` environment variables (a bad one is reported by
    name, never with its value)."""
    return create_app(Settings.from_env())
