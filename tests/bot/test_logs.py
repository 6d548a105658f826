"""Logs carry ids and events, never what anyone wrote, their names or the key.

Each flow runs through the console harness with the real log set-up (bot.logs, JSON lines, at
DEBUG) writing into a buffer, and the libraries' stdlib logging captured too; then no line may
hold a note, support words, a relayed message, an event's text, a display name or the key.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator

import pytest
import structlog

from bot import logs
from tests.harness import TEST_KEY, ConsoleBot

MEMBER = "wilhelmina-ashdown"
COACH = "bartholomew-quince"
COORDINATOR = "philippa-greenhalgh"
NOTE = "lavender-staffroom note"
WORDS = "thistledown governors worry"
TO_COACH = "marigold message to the coach"
TO_MEMBER = "juniper message to the member"
TITLE = "Cobblestone heads gathering"
DESCRIPTION = "Bring a quokka-shaped mug"
LINK = "https://meet.example/wisteria-room"
SECRETS = (MEMBER, COACH, COORDINATOR, NOTE, WORDS, TO_COACH, TO_MEMBER, TITLE, DESCRIPTION)
# The SQL drivers echo statements with their parameters when asked to (an operator's debugging
# switch); bot.logs keeps every library at WARNING, so they are captured at that level here.
SQL_LOGGERS = ("sqlalchemy", "aiosqlite", "asyncpg")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Everything structlog and stdlib logging write, while the test runs."""
    buffer = io.StringIO()
    real_stderr = sys.stderr
    sys.stderr = buffer  # bot.logs writes to the stderr of the moment it is configured
    logs.configure("DEBUG", json=True)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    quiet = {name: logging.getLogger(name).level for name in SQL_LOGGERS}
    for name in SQL_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield buffer
    finally:
        sys.stderr = real_stderr
        root.setLevel(level)
        for name, was in quiet.items():
            logging.getLogger(name).setLevel(was)
        logs.configure("INFO")


async def make(make_bot, **sections) -> ConsoleBot:
    return await make_bot(
        console={"user": MEMBER, "coaches": [COACH], "coordinators": [COORDINATOR]}, **sections
    )


async def checkin_with_a_note(bot: ConsoleBot) -> None:
    await bot.say("/checkin", ":click yes", ":click good", ":click add a note", NOTE, as_=MEMBER)
    await bot.say("/checkin history", as_=MEMBER)


async def support_relayed_and_closed(bot: ConsoleBot) -> None:
    await bot.say("/coach on", as_=COACH)
    await bot.say(f"/support {WORDS}", ":click share my name", ":click connect", as_=MEMBER)
    await bot.say(":click accept", TO_MEMBER, as_=COACH)
    await bot.say(TO_COACH, ":click close this conversation", ":click 4", as_=MEMBER)


async def event_created_and_answered(bot: ConsoleBot) -> None:
    await bot.say(
        f'/event create "{TITLE}" "2026-01-13 19:00" 60 {LINK} "{DESCRIPTION}"', as_=COORDINATOR
    )
    await bot.say(":click going", ":click get the link", "/events", as_=MEMBER)
    await bot.advance("8d")  # the reminders


async def exported(bot: ConsoleBot) -> None:
    await checkin_with_a_note(bot)
    await support_relayed_and_closed(bot)
    await bot.say("/headsup export", as_=MEMBER)


async def forgotten(bot: ConsoleBot) -> None:
    await checkin_with_a_note(bot)
    await support_relayed_and_closed(bot)
    await bot.say("/headsup forget-me", ":click delete everything", as_=MEMBER)


FLOWS: dict[str, tuple[Callable[[ConsoleBot], Awaitable[None]], str]] = {
    # flow → (what it does, an event its logs must show, so the capture is known to work)
    "checkin": (checkin_with_a_note, "checkin.note_saved"),
    "support": (support_relayed_and_closed, "support.relayed"),
    "events": (event_created_and_answered, "event.reminded"),
    "export": (exported, "privacy.exported"),
    "forget-me": (forgotten, "privacy.forgotten"),
}


@pytest.mark.parametrize("flow", sorted(FLOWS))
async def test_flow_logs_hold_no_text_names_or_key(make_bot, captured: io.StringIO, flow: str):
    """The flow's log lines name events and ids only: none of the words, names or the key."""
    bot = await make(make_bot, support={"keep_transcripts": True})
    run, expected_event = FLOWS[flow]
    await run(bot)
    lines = captured.getvalue()
    assert expected_event in lines
    for secret in (*SECRETS, LINK, TEST_KEY):
        assert secret not in lines, f"{secret!r} reached the logs in the {flow} flow"
    assert MEMBER in bot.transcript  # the names were really in play


def test_capture_sees_both_structlog_and_stdlib(captured: io.StringIO):
    """The capture itself works: a stray value under an unredacted key, or a library's warning,
    would be seen (so the flow tests can fail)."""
    structlog.get_logger("probe").info("probe", detail=NOTE, text=WORDS)
    logging.getLogger("probe.library").warning("library says %s", TO_COACH)
    lines = captured.getvalue()
    assert NOTE in lines and TO_COACH in lines
    assert WORDS not in lines  # `text` is one of the keys the redaction always hides


def test_a_logged_exception_shows_where_but_never_its_message(captured: io.StringIO):
    """An exception logged by the bot carries its type and frames, not its message, which can
    quote what a person wrote (a parsing error, a database statement)."""
    try:
        try:
            raise ValueError(f"could not read {WORDS}")
        except ValueError as exc:
            raise RuntimeError(NOTE) from exc
    except RuntimeError:
        structlog.get_logger("probe").exception("command.failed")
    lines = captured.getvalue()
    assert "builtins.ValueError" in lines and "builtins.RuntimeError" in lines
    assert "test_a_logged_exception_shows_where_but_never_its_message" in lines  # the frame
    assert WORDS not in lines and NOTE not in lines


def test_a_library_traceback_never_shows_its_message(captured: io.StringIO):
    """A library logging an exception through stdlib logging (discord.py, slack-bolt) gets the
    same safe traceback: type and frames only."""
    try:
        raise KeyError(TO_COACH)
    except KeyError:
        logging.getLogger("probe.library").exception("Ignoring exception in view")
    lines = captured.getvalue()
    assert "Ignoring exception in view" in lines and "builtins.KeyError" in lines
    assert TO_COACH not in lines


def test_a_platform_user_id_is_logged_as_a_pseudonym(captured: io.StringIO):
    """A platform user id never reaches a log line; a stable pseudonym stands in for it, so a
    log cannot say who asked for support."""
    structlog.get_logger("probe").info("slack.command", command="/support", user_id="U0ALICE")
    structlog.get_logger("probe").info("slack.command", command="/checkin", user_id="U0ALICE")
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert "U0ALICE" not in captured.getvalue()
    first, second = (line["user_id"] for line in lines)
    assert first == second and first.startswith("u-")


def test_a_channel_id_is_logged_as_a_pseudonym(captured: io.StringIO):
    """A channel id (a DM channel is one person's conversation) is logged as a pseudonym, on
    every platform alike."""
    structlog.get_logger("probe").info("discord.sent", channel_id="D0ALICEDM", message_id=7)
    line = json.loads(captured.getvalue())
    assert "D0ALICEDM" not in captured.getvalue() and line["channel_id"].startswith("u-")
    assert line["message_id"] == 7
