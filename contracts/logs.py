"""The log format every Flagyard process writes: one JSON object per line on stdout (or console lines for a
terminal), with ``event`` names like ``flag.updated`` or ``stream.reconnected``, ``level`` and an ISO
``timestamp`` in UTC; stdlib logging (uvicorn, RQ, alembic) goes through the same level.

An operator's log pipeline parses all services alike, so the format is a shared contract, configured here
once from the settings every plane has (:class:`~flagyard.contracts.settings.CommonSettings`).
"""

from __future__ import annotations

import logging
import sys

import orjson
import structlog

from .settings import CommonSettings


def configure_logging(settings: CommonSettings) -> None:
    level = logging.getLevelNamesMapping()[settings.log_level]
    logging.basicConfig(level=level, stream=sys.stdout, format="%(message)s")
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(serializer=orjson.dumps)
        if settings.log_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.BytesLoggerFactory(sys.stdout.buffer)
        if settings.log_json
        else structlog.WriteLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
