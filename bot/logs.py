"""Structured logs to standard error: ids and events, never message text, notes or secrets."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

# Keys whose values must never reach a log line, whatever a caller passes by mistake.
REDACTED_KEYS = frozenset(
    {
        "text",
        "note",
        "words",
        "message",
        "content",
        "token",
        "secret",
        "password",
        "payload",
        "values",
        "body",
    }
)


def redact(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Replace the value of any key that could carry what a person wrote, or a secret."""
    for key in list(event):
        if key.lower() in REDACTED_KEYS:
            event[key] = "[redacted]"
    return event


def configure(level: str | None = None, *, json: bool = False) -> None:
    """Send structlog (and the libraries' stdlib logging) to stderr at `level`."""
    name = (level or os.environ.get("HEADSUP_LOG_LEVEL") or "INFO").upper()
    numeric = logging.getLevelNamesMapping().get(name, logging.INFO)
    renderer = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(stream=sys.stderr, level=max(numeric, logging.WARNING), force=True)
