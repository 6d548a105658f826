"""Structured logs to standard error: ids and events, never message text, notes or secrets."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import sys
import traceback
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


# Keys whose values can point at one person: their platform id, or a channel id (a DM channel
# is one person's conversation with the bot). Logged as a keyed pseudonym, never as the id, so
# a log line cannot say who used /support, and after forget-me cannot be tied to anyone.
PSEUDONYMISED_KEYS = frozenset({"user_id", "channel_id"})
_pseudonym_key = os.urandom(32)  # until the app sets one derived from the encryption key


def set_pseudonym_key(key: bytes) -> None:
    """Use `key` for pseudonyms, so every instance sharing the key logs the same person alike."""
    global _pseudonym_key
    _pseudonym_key = key


def pseudonym(value: object) -> str:
    """``u-`` and 12 hex characters: the same for the same id, telling nothing about it."""
    digest = hmac.new(_pseudonym_key, str(value).encode(), hashlib.sha256).hexdigest()
    return f"u-{digest[:12]}"


def redact(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Replace the value of any key that could carry what a person wrote, or a secret, and
    turn platform user ids into pseudonyms."""
    for key in list(event):
        if key.lower() in REDACTED_KEYS:
            event[key] = "[redacted]"
        elif key.lower() in PSEUDONYMISED_KEYS and event[key] is not None:
            event[key] = pseudonym(event[key])
    return event


def safe_traceback(exc: BaseException) -> str:
    """A traceback with each exception's type and where it was raised, never its message.

    An exception's message can carry what a person wrote: a database error quotes its
    statement, a parsing error the input. The frames and types are what an operator needs.
    """
    return "".join(_describe(traceback.TracebackException.from_exception(exc), set()))


def _describe(te: traceback.TracebackException, seen: set[int]) -> list[str]:
    if id(te) in seen:
        return []
    seen.add(id(te))
    lines: list[str] = []
    if te.__cause__ is not None:
        lines += _describe(te.__cause__, seen)
        lines.append("\nThe above exception was the direct cause of the following exception:\n\n")
    elif te.__context__ is not None and not te.__suppress_context__:
        lines += _describe(te.__context__, seen)
        lines.append("\nDuring handling of the above exception, another exception occurred:\n\n")
    lines.append("Traceback (most recent call last):\n")
    lines += te.stack.format()  # file, line, function and the project's own source line
    exc_type = te.exc_type
    lines.append(f"{exc_type.__module__}.{exc_type.__qualname__}\n" if exc_type else "?\n")
    for index, inner in enumerate(te.exceptions or [], start=1):
        lines.append(f"-- sub-exception {index} --\n")
        lines += _describe(inner, seen)
    return lines


def safe_exc_info(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog's format_exc_info, without any exception message."""
    exc_info = event.pop("exc_info", None)
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        elif isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        if exc_info[1] is not None:
            event["exception"] = safe_traceback(exc_info[1])
    return event


class SafeFormatter(logging.Formatter):
    """The libraries' own log lines (discord.py, slack-bolt, SQLAlchemy): tracebacks without
    exception messages, as for the bot's own."""

    def formatException(self, ei) -> str:
        return safe_traceback(ei[1]).rstrip("\n") if ei and ei[1] is not None else ""


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
            safe_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(logging.BASIC_FORMAT))
    logging.basicConfig(handlers=[handler], level=max(numeric, logging.WARNING), force=True)
