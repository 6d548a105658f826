"""Logs: one JSON object a line when serving a chat platform, readable lines on the console, and
never what anyone wrote."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from bot import logs
from bot.cli import app

DISCORD_ENV = {
    "HEADSUP_DISCORD__TOKEN": "discord-token-not-real",
    "HEADSUP_DISCORD__APPLICATION_ID": "1",
    "HEADSUP_DISCORD__GUILD_ID": "2",
}


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Each test may reconfigure logging; put back what the suite had. No HEADSUP_* variable
    leaks in, and nothing lands outside an empty directory."""
    for name in list(os.environ):
        if name.upper().startswith("HEADSUP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)


class FakeApp:
    """Stands in for the app in `headsup run`: logs what a starting bot logs, then ends."""

    def __init__(self, settings) -> None:
        self.settings = settings

    async def serve(self) -> None:
        log = structlog.get_logger("headsup.app")
        log.warning("app.started", platforms=["discord"], text="a member's words")


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_logs_are_one_object_a_line(monkeypatch: pytest.MonkeyPatch):
    """In JSON mode each event is one JSON object with its level, a UTC time and its ids."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logs.configure("INFO", json=True)
    structlog.get_logger("headsup.test").info("case.accepted", case_id=7, member_id=3)
    (entry,) = json_lines(stream.getvalue())
    assert entry["event"] == "case.accepted"
    assert (entry["level"], entry["case_id"], entry["member_id"]) == ("info", 7, 3)
    assert entry["timestamp"].endswith("Z")


def test_json_logs_never_carry_words_or_secrets(monkeypatch: pytest.MonkeyPatch):
    """Text, notes and tokens passed by mistake are replaced before the line is written."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logs.configure("INFO", json=True)
    structlog.get_logger("headsup.test").info(
        "relay", text="I can't cope", note="private", token="xoxb-secret", case_id=1
    )
    (entry,) = json_lines(stream.getvalue())
    assert entry["text"] == entry["note"] == entry["token"] == "[redacted]"
    assert "cope" not in stream.getvalue() and "xoxb" not in stream.getvalue()


def test_run_logs_json_when_serving_a_chat_platform(monkeypatch: pytest.MonkeyPatch):
    """`headsup run` with Discord configured writes its logs as JSON lines."""
    monkeypatch.setattr("bot.app.App", FakeApp)
    result = CliRunner().invoke(app, ["run"], env=DISCORD_ENV)
    assert result.exit_code == 0, result.output
    (entry,) = json_lines(result.stderr)
    assert entry["event"] == "app.started" and entry["platforms"] == ["discord"]
    assert entry["text"] == "[redacted]"
    assert result.stdout == ""


def test_run_logs_readable_lines_on_the_console(monkeypatch: pytest.MonkeyPatch):
    """`headsup run` on the console keeps readable log lines, not JSON."""
    monkeypatch.setattr("bot.app.App", FakeApp)
    result = CliRunner().invoke(app, ["run"])
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert "app.started" in line and "[warning" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
