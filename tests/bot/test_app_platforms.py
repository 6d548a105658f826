"""Slack and Discord served by one process, from one database: an announcement reaches both
servers and a reply on either updates both; a member on one platform reaches a coach on the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bot.app import App
from bot.clock import Clock
from bot.platforms import discord as discord_platform
from bot.platforms import slack as slack_platform
from tests.bot.platforms.test_discord import (
    ANNOUNCE,
    COACH_ROLE,
    COORDINATOR_ROLE,
    COORDINATORS,
    MEMBER,
)
from tests.bot.platforms.test_discord import new_fake as discord_fake
from tests.bot.platforms.test_slack import free_port
from tests.bot.platforms.test_slack import make_fake as make_slack_fake
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_server import FakeSlack
from tests.harness import START, make_settings

# Slack's people and channels
S_ANNOUNCE, S_COORDINATORS = "CANNOUNCE", "CCOORD"
S_MEMBER, S_COACH, S_COORDINATOR = "UALICE", "UCAROL", "UDAVE"
# Discord's: the server of the Discord adapter's own tests
D_ANNOUNCE, D_COORDINATORS, D_MEMBER = ANNOUNCE, COORDINATORS, MEMBER


@dataclass
class Both:
    app: App
    slack: FakeSlack
    discord: FakeDiscord

    async def settled(self, check: Callable[[], Any], within: float = 10.0) -> Any:
        """Deliver what is queued until `check()` holds (requests are handled concurrently)."""
        for _ in range(round(within / 0.05)):
            await self.app.settle()
            found = check()
            if found:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError("it never happened")


@pytest.fixture
async def both(db, monkeypatch) -> AsyncIterator[Both]:
    """One App with Slack (HTTP mode) and Discord configured, each against its fake."""
    monkeypatch.setattr(slack_platform, "ACK_WITHIN", 2.0)
    monkeypatch.setattr(discord_platform, "ACK_WITHIN", 2.0)
    slack = await make_slack_fake()
    discord = discord_fake()
    await discord.start()
    port = free_port()
    slack.mode, slack.bot_url = "http", f"http://127.0.0.1:{port}/slack/events"
    settings = make_settings(
        db.url,
        slack={
            "bot_token": slack.bot_token,
            "signing_secret": slack.signing_secret,
            "mode": "http",
            "http_port": port,
            "api_base_url": slack.api_url,
            "announce_channel": S_ANNOUNCE,
            "coordinator_channel": S_COORDINATORS,
            "coaches": [S_COACH],
            "coordinators": [S_COORDINATOR],
        },
        discord={
            "token": "x",
            "application_id": discord.application_id,
            "guild_id": discord.guild_id,
            "api_base_url": discord.base_url,
            "gateway_url": discord.gateway_url,
            "announce_channel_id": D_ANNOUNCE,
            "coordinator_channel_id": D_COORDINATORS,
            "coach_role_id": COACH_ROLE,
            "coordinator_role_id": COORDINATOR_ROLE,
        },
    )
    app = App(settings, clock=Clock.frozen(START), db_schema=db.schema)
    await app.start()
    try:
        yield Both(app, slack, discord)
    finally:
        await app.stop()
        await slack.close()
        await discord.close()


def discord_announcement(fake: FakeDiscord) -> dict[str, Any] | None:
    return next(
        (m for m in fake.messages.values() if m["channel_id"] == D_ANNOUNCE and m["components"]),
        None,
    )


def labels_on_discord(message: dict[str, Any]) -> list[str]:
    return [b["label"] for row in message["components"] for b in row["components"]]


def labels_on_slack(message: dict[str, Any]) -> list[str]:
    return [
        e["text"]["text"]
        for block in message.get("blocks") or []
        if block.get("type") == "actions"
        for e in block["elements"]
    ]


async def test_both_platforms_start_in_one_process(both: Both):
    """Both adapters are up, side by side, with one core and one database."""
    assert sorted(both.app.platforms) == ["discord", "slack"]
    await both.settled(lambda: all(p.connected for p in both.app.platforms.values()))


async def test_an_event_posted_on_slack_is_announced_on_both_and_counts_replies_from_either(
    both: Both,
):
    """A Slack coordinator's event appears in both announcement channels (and Discord's own
    event list); a Discord member's *Going* updates the count on both."""
    await both.slack.command(
        S_COORDINATOR,
        "/event",
        'create "Heads together" "2026-01-13 19:00" 60 https://meet.example/heads',
    )
    on_discord = await both.settled(lambda: discord_announcement(both.discord))
    on_slack = await both.settled(lambda: both.slack.in_channel(S_ANNOUNCE))
    assert "Heads together" in on_discord["content"]
    assert "Heads together" in on_slack[-1]["text"]
    assert both.discord.scheduled_events  # the server's own list of events

    await both.discord.press(D_MEMBER, on_discord, "Going")
    await both.settled(
        lambda: "Going (1)" in labels_on_slack(both.slack.in_channel(S_ANNOUNCE)[-1])
    )
    assert "Going (1)" in labels_on_discord(discord_announcement(both.discord) or {})


async def test_a_discord_member_reaches_a_slack_coach_and_they_talk(both: Both):
    """Support crosses platforms: a Discord member's request is offered to the coach on Slack,
    and once accepted their messages are relayed both ways."""
    await both.slack.command(S_COACH, "/coach", "on")
    asked = await both.discord.command(D_MEMBER, "support", text="It has been a hard term")
    await both.discord.answered(asked, 2)
    choice = next(m for m in both.discord.replies_to(asked) if m["components"])
    await both.discord.press(D_MEMBER, choice, "Connect me")
    offer = await both.settled(
        lambda: next((m for m in both.slack.dms_to(S_COACH) if "Accept" in str(m)), None)
    )
    assert "It has been a hard term" in offer["text"]
    await both.slack.press(S_COACH, offer, "Accept")
    await both.settled(lambda: len(both.discord.dms_to(D_MEMBER)) >= 1)
    await both.slack.dm(S_COACH, "I'm here. What's been happening?")
    await both.settled(
        lambda: any("I'm here" in m["content"] for m in both.discord.dms_to(D_MEMBER))
    )
    await both.discord.dm(D_MEMBER, "Thank you for coming")
    relayed = await both.settled(
        lambda: [m for m in both.slack.dms_to(S_COACH) if "Thank you for coming" in m["text"]]
    )
    assert relayed[-1]["text"] == "Member H-1001: Thank you for coming"
