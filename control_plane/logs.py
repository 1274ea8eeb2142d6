"""Structured logging: one JSON object per line, event names like ``flag.updated``, with the request id."""

from __future__ import annotations

import logging
import sys

import orjson
import structlog

from flagyard.control_plane.settings import Settings


def configure_logging(settings: Settings) -> None:
    """Configure structlog (and route stdlib logging through the same level)."""
    level = getattr(logging, settings.log_level)
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
