"""The Discord platform end to end: the real discord.py client against the loopback fake Discord
(REST and gateway), with the whole app behind it. No network, no token."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from pydantic import SecretStr
from sqlmodel import select

import bot.platforms.discord as discord_platform
from bot.app import App
from bot.clock import Clock
from bot.config import ConfigError
from bot.platforms import DeliveryError, Target
from bot.platforms.discord import DMS_CLOSED, DiscordPlatform
from bot.ui import Channel, Message, ToChannel, ToMember
from storage.models import Identity, OutboxMessage, OutboxStatus
from tests.fakes.discord_server import (
    DEFERRED_MESSAGE,
    EPHEMERAL,
    MESSAGE,
    MODAL,
    UPDATE,
    FakeDiscord,
    Interaction,
)
from tests.harness import START, make_settings

if TYPE_CHECKING:
    from tests.conftest import TestDatabase

COACH_ROLE, COORDINATOR_ROLE = "50", "51"
ANNOUNCE, COORDINATORS = "60", "61"
MEMBER, COACH, COORDINATOR = "200", "300", "400"
NO_MENTIONS = {"parse": []}
T = TypeVar("T")


class DiscordBot:
    """A real App on the Discord platform, pointed at the fake; restartable on one database."""

    def __init__(self, db: TestDatabase, fake: FakeDiscord) -> None:
        self.settings = make_settings(
            db.url,
            discord={
                "token": "x",
                "application_id": fake.application_id,
                "guild_id": fake.guild_id,
                "api_base_url": fake.base_url,
                "gateway_url": fake.gateway_url,
                "announce_channel_id": ANNOUNCE,
                "coordinator_channel_id": COORDINATORS,
                "coach_role_id": COACH_ROLE,
                "coordinator_role_id": COORDINATOR_ROLE,
            },
        )
        assert not self.settings.console_enabled
        self.schema = db.schema
        self.clock = Clock.frozen(START)
        self.fake = fake
        self.app: App | None = None

    async def start(self) -> None:
        self.app = App(self.settings, clock=self.clock, db_schema=self.schema)
        await self.app.start()

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.stop()
            self.app = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    @property
    def platform(self) -> DiscordPlatform:
        assert self.app is not None
        platform = self.app.platforms["discord"]
        assert isinstance(platform, DiscordPlatform)
        return platform

    async def settle(self) -> None:
        """Run what is due and deliver every queued message (the outbox worker's job)."""
        assert self.app is not None
        await self.app.settle()

    async def identities(self) -> list[Identity]:
        assert self.app is not None
        async with self.app.database.session() as session:
            return list((await session.exec(select(Identity))).all())

    async def identity(self, user_id: str) -> Identity:
        assert self.app is not None
        async with self.app.database.session() as session:
            found = (
                await session.exec(
                    select(Identity).where(
                        Identity.platform == "discord", Identity.user_id == user_id
                    )
                )
            ).one()
            return found

    async def outbox(self) -> list[OutboxMessage]:
        assert self.app is not None
        async with self.app.database.session() as session:
            return list((await session.exec(select(OutboxMessage))).all())

    async def queue(self, to: ToMember | ToChannel, message: Message, key: str | None = None):
        """Queue a message through the outbox, as a feature would."""
        assert self.app is not None
        async with self.app.database.session() as session:
            await self.app.outbox.send(session, self.clock.now(), to, message, key=key)
            await session.commit()

    async def queue_edit(self, key: str, message: Message) -> None:
        assert self.app is not None
        async with self.app.database.session() as session:
            await self.app.outbox.edit(session, self.clock.now(), key, message)
            await session.commit()

    async def handled(self, event: Awaitable[T]) -> T:
        """Put an event on the gateway and wait until the bot has finished handling it, every
        follow-up included."""
        before = self.platform.handled
        result = await event
        for _ in range(500):
            if self.platform.handled > before:
                return result
            await asyncio.sleep(0.01)
        raise AssertionError("the bot never finished handling the event")

    async def run(self, user_id: str, name: str, *sub: str, **options: Any) -> Interaction:
        """A slash command, once its answer and every follow-up have arrived."""
        return await self.handled(self.fake.command(user_id, name, *sub, **options))

    async def press(self, user_id: str, message: dict[str, Any], label: str) -> Interaction:
        return await self.handled(self.fake.press(user_id, message, label))

    async def dm(self, user_id: str, text: str) -> None:
        await self.handled(self.fake.dm(user_id, text))


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    server.add_role(COACH_ROLE, "Coach")
    server.add_role(COORDINATOR_ROLE, "Coordinator")
    server.add_channel(ANNOUNCE, "announcements")
    server.add_channel(COORDINATORS, "coordinators")
    server.add_member(MEMBER, "alice")
    server.add_member(COACH, "carol", [COACH_ROLE])
    server.add_member(COORDINATOR, "dave", [COORDINATOR_ROLE])
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def bot(db: TestDatabase, fake: FakeDiscord, monkeypatch) -> AsyncIterator[DiscordBot]:
    # A loaded test machine can take longer than production's quick-answer window; the tests
    # of deferring set their own.
    monkeypatch.setattr(discord_platform, "ACK_WITHIN", 2.0)
    running = DiscordBot(db, fake)
    await running.start()
    yield running
    await running.stop()


def buttons(message: dict[str, Any]) -> list[str]:
    return [b["label"] for row in message["components"] for b in row["components"]]


def with_button(messages: list[dict[str, Any]], label: str) -> dict[str, Any]:
    return next(m for m in messages if any(label.lower() in b.lower() for b in buttons(m)))


def message_writes(fake: FakeDiscord) -> list[Any]:
    """Every request in which the bot wrote or rewrote a message's text."""
    writes = fake.sent("POST", r"/channels/\d+/messages") + fake.sent(
        "PATCH", r"/channels/\d+/messages/\d+"
    )
    writes += fake.sent("POST", r"/webhooks/\d+/[^/]+") + fake.sent(
        "PATCH", r"/webhooks/\d+/[^/]+/messages/[^/]+"
    )
    callbacks = [
        r
        for r in fake.sent("POST", r"/interactions/\d+/[^/]+/callback")
        if r.body["type"] in (MESSAGE, UPDATE)
    ]
    return [r.body for r in writes] + [r.body["data"] for r in callbacks]


# --- commands -------------------------------------------------------------------------------


async def test_commands_are_synced_to_the_server(bot: DiscordBot, fake: FakeDiscord):
    """Every command group is put on the configured server, bare /checkin as /checkin now."""
    assert fake.sent("PUT", r"/applications/1/guilds/2/commands")
    names = {c["name"] for c in fake.commands}
    assert {"checkin", "support", "coach", "events", "headsup"} <= names
    checkin = next(c for c in fake.commands if c["name"] == "checkin")
    assert {"now", "settings", "pause", "resume", "stop", "history"} <= {
        o["name"] for o in checkin["options"]
    }


async def test_support_has_one_optional_text_option(bot: DiscordBot, fake: FakeDiscord):
    """/support takes a single optional string option named text."""
    support = next(c for c in fake.commands if c["name"] == "support")
    assert [(o["name"], o["type"], o.get("required", False)) for o in support["options"]] == [
        ("text", 3, False)
    ]


async def test_options_are_typed_with_choices_and_autocomplete(bot: DiscordBot, fake: FakeDiscord):
    """/checkin settings offers the weekdays as choices and autocompletes the timezone."""
    checkin = next(c for c in fake.commands if c["name"] == "checkin")
    settings = next(o for o in checkin["options"] if o["name"] == "settings")
    day, at, zone = settings["options"]
    assert [c["value"] for c in day["choices"]][:2] == ["monday", "tuesday"]
    assert (at["name"], at["required"]) == ("at", True)
    assert (zone["name"], zone.get("autocomplete"), zone["required"]) == ("timezone", True, False)
    pause = next(o for o in checkin["options"] if o["name"] == "pause")
    assert pause["options"][0]["type"] == 4  # weeks: an integer


async def test_event_create_takes_the_form_fields_as_options(bot: DiscordBot, fake: FakeDiscord):
    """/event create has title, start, duration, link required and two optional fields."""
    event = next(c for c in fake.commands if c["name"] == "event")
    create = next(o for o in event["options"] if o["name"] == "create")
    assert [(o["name"], o["required"]) for o in create["options"]] == [
        ("title", True),
        ("start", True),
        ("duration", True),
        ("link", True),
        ("description", False),
        ("repeat_until", False),
    ]


async def test_timezone_autocomplete_suggests_matching_zones(bot: DiscordBot, fake: FakeDiscord):
    """Typing part of a timezone offers the IANA names that contain it."""
    interaction = await fake.autocomplete(MEMBER, "checkin", "settings", "timezone", "lond")
    await fake.answered(interaction)
    assert interaction.choices is not None
    assert "Europe/London" in [c["value"] for c in interaction.choices]


async def test_command_answer_is_ephemeral_and_direct(bot: DiscordBot, fake: FakeDiscord):
    """/checkin now answers at once, privately, with the consent buttons."""
    interaction = await bot.run(MEMBER, "checkin", "now")
    first = interaction.responses[0]
    assert first["type"] == MESSAGE
    assert first["data"]["flags"] & EPHEMERAL
    assert buttons(fake.replies_to(interaction)[0]) == ["Yes, check in with me weekly", "Not now"]


async def test_slow_core_defers_then_answers(
    bot: DiscordBot, fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch
):
    """When the core is slow to answer, the command is deferred and the answer follows."""
    monkeypatch.setattr(discord_platform, "ACK_WITHIN", 0.0)
    interaction = await bot.run(MEMBER, "headsup", "help")
    assert interaction.responses[0]["type"] == DEFERRED_MESSAGE
    reply = fake.replies_to(interaction)[0]
    assert reply["content"] and reply["flags"] & EPHEMERAL


async def test_member_is_refused_coach_on(bot: DiscordBot, fake: FakeDiscord):
    """A member without the coach role is told /coach on is only for coaches."""
    interaction = await bot.run(MEMBER, "coach", "on")
    (reply,) = fake.replies_to(interaction)
    assert "only for coaches" in reply["content"]
    assert reply["flags"] & EPHEMERAL


async def test_coach_role_lets_a_coach_go_on_duty(bot: DiscordBot, fake: FakeDiscord):
    """The coach role on the member's server roles makes them a coach."""
    interaction = await bot.run(COACH, "coach", "on")
    (reply,) = fake.replies_to(interaction)
    assert "only for coaches" not in reply["content"]
    assert "on duty" in reply["content"].lower()


# --- check-ins ------------------------------------------------------------------------------


async def test_checkin_answer_buttons_thank_the_member(bot: DiscordBot, fake: FakeDiscord):
    """Opting in, then tapping an answer, edits the prompt into a thank-you."""
    interaction = await bot.run(MEMBER, "checkin", "now")
    consent = fake.replies_to(interaction)[0]
    opted = await bot.press(MEMBER, consent, "Yes, check in")
    assert opted.responses[0]["type"] == UPDATE
    prompt = with_button(fake.replies_to(opted), "Okay")
    answered = await bot.press(MEMBER, prompt, "Okay")
    assert answered.responses[0]["type"] == UPDATE
    assert fake.messages[prompt["id"]]["content"].startswith("Thank you for checking in")


async def test_a_form_opens_as_a_modal_and_its_submission_is_saved(
    bot: DiscordBot, fake: FakeDiscord
):
    """*Add a note* opens a modal; submitting it reaches the core."""
    consent = fake.replies_to(await bot.run(MEMBER, "checkin", "now"))[0]
    prompt = with_button(fake.replies_to(await bot.press(MEMBER, consent, "Yes")), "Okay")
    answered = fake.messages[(await bot.press(MEMBER, prompt, "Okay")).message_id]
    opened = await bot.press(MEMBER, answered, "note")
    assert opened.responses[0]["type"] == MODAL
    assert opened.modal is not None and opened.modal["custom_id"].startswith("checkin.save_note:")
    submitted = await bot.handled(fake.submit(MEMBER, opened, {"note": "A long week."}))
    assert fake.replies_to(submitted)[0]["content"].startswith("Saved")


async def test_restart_keeps_old_buttons_working(bot: DiscordBot, fake: FakeDiscord):
    """A button sent before a restart still works when pressed on the new client."""
    consent = fake.replies_to(await bot.run(MEMBER, "checkin", "now"))[0]
    await bot.restart()
    assert len(fake.identifies) == 2
    opted = await bot.press(MEMBER, consent, "Yes, check in")
    assert fake.messages[consent["id"]]["content"].startswith("Thank you — you're in")
    assert opted.responses[0]["type"] == UPDATE


# --- support --------------------------------------------------------------------------------


async def test_support_signposting_is_the_direct_answer(bot: DiscordBot, fake: FakeDiscord):
    """/support answers first, never deferred, with the emergency line and helplines."""
    interaction = await bot.run(MEMBER, "support", text="It has been a hard term")
    first = interaction.responses[0]
    assert first["type"] == MESSAGE and first["data"]["flags"] & EPHEMERAL
    assert bot.settings.support.emergency in first["data"]["content"]
    replies = fake.replies_to(interaction)
    assert "Connect me with a coach" in buttons(replies[1])
    assert sum(bot.settings.support.emergency in m["content"] for m in replies) == 1


async def open_case(bot: DiscordBot, fake: FakeDiscord) -> dict[str, Any]:
    """Coach on duty, member asks for support and connects; returns the coach's DM offer."""
    await bot.run(COACH, "coach", "on")
    asked = await bot.run(MEMBER, "support", text="It has been a hard term")
    choice = with_button(fake.replies_to(asked), "Connect me")
    await bot.press(MEMBER, choice, "Connect me")
    await bot.settle()
    return with_button(fake.dms_to(COACH), "Accept")


async def test_connect_offers_the_case_to_the_coach_by_dm(bot: DiscordBot, fake: FakeDiscord):
    """*Connect me with a coach* sends the on-duty coach a DM offer with Accept and Pass."""
    offer = await open_case(bot, fake)
    assert {"Accept", "Pass"} <= set(buttons(offer))
    assert "It has been a hard term" in offer["content"]
    assert fake.sent("POST", r"/users/@me/channels")


async def test_accepted_case_relays_dms_both_ways(bot: DiscordBot, fake: FakeDiscord):
    """After Accept (pressed in a DM), each side's DMs reach the other through the bot."""
    offer = await open_case(bot, fake)
    await bot.press(COACH, offer, "Accept")
    await bot.settle()
    assert any("accepted" in m["content"].lower() for m in fake.dms_to(MEMBER))

    await bot.dm(MEMBER, "Thank you for picking this up")
    await bot.settle()
    assert any("Thank you for picking this up" in m["content"] for m in fake.dms_to(COACH))

    await bot.dm(COACH, "Happy to help")
    await bot.settle()
    assert any("Happy to help" in m["content"] for m in fake.dms_to(MEMBER))


async def test_a_dm_delivered_twice_after_a_resume_is_relayed_once(
    bot: DiscordBot, fake: FakeDiscord
):
    """Discord repeating a MESSAGE_CREATE (a resume) does not relay the message twice."""
    offer = await open_case(bot, fake)
    await bot.press(COACH, offer, "Accept")
    await bot.dm(MEMBER, "Only say this once")
    await bot.settle()
    await fake.redeliver_last()
    await asyncio.sleep(0.3)
    await bot.settle()
    relayed = [m for m in fake.dms_to(COACH) if "Only say this once" in m["content"]]
    assert len(relayed) == 1


async def test_someone_outside_the_server_is_turned_away_kindly(bot: DiscordBot, fake: FakeDiscord):
    """A DM from a Discord user who is not in the server gets a refusal with the emergency line,
    and nothing about them is stored."""
    fake.add_stranger("777", "mallory")
    await bot.dm("777", "let me see the cases")
    (answer,) = fake.dms_to("777")
    assert "only for members" in answer["content"] and "999" in answer["content"]
    assert all(i.user_id != "777" for i in await bot.identities())


async def test_dm_to_the_bot_gets_the_menu(bot: DiscordBot, fake: FakeDiscord):
    """A DM that is not part of a conversation is answered in the DM with the short menu."""
    await bot.dm(MEMBER, "hello")
    assert "Check in" in buttons(fake.dms_to(MEMBER)[0])


# --- delivery -------------------------------------------------------------------------------


async def member_id_of(bot: DiscordBot, user_id: str) -> int:
    return (await bot.identity(user_id)).member_id


async def test_first_dm_creates_the_channel_and_it_is_kept(bot: DiscordBot, fake: FakeDiscord):
    """The DM channel is opened once and its id stored for the next DM."""
    await bot.run(MEMBER, "headsup", "help")
    member_id = await member_id_of(bot, MEMBER)
    await bot.queue(ToMember(member_id), Message("One"))
    await bot.settle()
    await bot.queue(ToMember(member_id), Message("Two"))
    await bot.settle()
    assert len(fake.sent("POST", r"/users/@me/channels")) == 1
    assert (await bot.identity(MEMBER)).dm_channel_id == fake.dm_channels[MEMBER]
    assert [m["content"] for m in fake.dms_to(MEMBER)] == ["One", "Two"]


async def test_a_429_on_a_dm_is_waited_out(bot: DiscordBot, fake: FakeDiscord):
    """A rate-limited DM is sent once the Retry-After has passed, exactly once."""
    await bot.run(MEMBER, "headsup", "help")
    fake.fail_next("POST", r"/channels/\d+/messages", 429, retry_after=0.2)
    await bot.queue(ToMember(await member_id_of(bot, MEMBER)), Message("After the wait"))
    await bot.settle()
    assert len(fake.sent("POST", r"/channels/\d+/messages")) == 2
    assert [m["content"] for m in fake.dms_to(MEMBER)] == ["After the wait"]
    (row,) = await bot.outbox()
    assert row.status == OutboxStatus.SENT


async def test_a_server_error_is_retried_later(bot: DiscordBot, fake: FakeDiscord):
    """A 5xx leaves the message queued for a later attempt, not failed."""
    await bot.run(MEMBER, "headsup", "help")
    fake.fail_next("POST", r"/channels/\d+/messages", 503)
    await bot.queue(ToMember(await member_id_of(bot, MEMBER)), Message("Later"))
    await bot.settle()
    (row,) = await bot.outbox()
    assert (row.status, row.last_error) == (OutboxStatus.PENDING, "http_503")


async def test_closed_dms_mark_the_failure_and_the_member_is_told(
    bot: DiscordBot, fake: FakeDiscord
):
    """50007 fails the DM for good, and the member's next command carries a note, once."""
    await bot.run(MEMBER, "headsup", "help")
    fake.dms_closed.add(MEMBER)
    await bot.queue(ToMember(await member_id_of(bot, MEMBER)), Message("Your check-in"))
    await bot.settle()
    (row,) = await bot.outbox()
    assert (row.status, row.last_error) == (OutboxStatus.FAILED, "50007")
    assert (await bot.identity(MEMBER)).dm_failed_at is not None

    told = fake.replies_to(await bot.run(MEMBER, "headsup", "help"))
    assert told[-1]["content"] == DMS_CLOSED and told[-1]["flags"] & EPHEMERAL
    again = fake.replies_to(await bot.run(MEMBER, "headsup", "help"))
    assert all(m["content"] != DMS_CLOSED for m in again)


async def test_every_send_and_edit_allows_no_mentions(bot: DiscordBot, fake: FakeDiscord):
    """Channel posts, their edits and interaction answers all carry allowed_mentions none."""
    await bot.queue(ToChannel(Channel.ANNOUNCEMENTS), Message("@everyone come along"), key="a")
    await bot.settle()
    await bot.queue_edit("a", Message("@everyone moved to Friday"))
    await bot.settle()
    await bot.run(MEMBER, "checkin", "now")
    assert fake.texts_in(ANNOUNCE) == ["@everyone moved to Friday"]
    writes = message_writes(fake)
    assert len(writes) >= 3
    assert all(w.get("allowed_mentions") == NO_MENTIONS for w in writes)


async def test_channel_post_without_a_configured_channel_fails_for_good(
    bot: DiscordBot, fake: FakeDiscord
):
    """A shared channel the platform does not have is a permanent failure, not a retry loop."""
    with pytest.raises(DeliveryError) as failure:
        await bot.platform.send(discord_platform.Target("channel", "nowhere"), Message("Hello"))
    assert failure.value.permanent


# --- events ---------------------------------------------------------------------------------


async def test_event_create_options_create_and_announce_the_event(
    bot: DiscordBot, fake: FakeDiscord
):
    """A coordinator's /event create options fill the form; the event is announced."""
    interaction = await bot.run(
        COORDINATOR,
        "event",
        "create",
        title="Heads together",
        start="2026-01-13 19:00",
        duration="60",
        link="https://meet.example.org/heads",
    )
    assert all(r["type"] != MODAL for r in interaction.responses)
    await bot.settle()
    assert any("Heads together" in text for text in fake.texts_in(ANNOUNCE))
    assert re.search(r"E\d+", fake.replies_to(interaction)[0]["content"])


async def test_event_times_show_in_each_readers_own_timezone(bot: DiscordBot, fake: FakeDiscord):
    """The announcement gives the time as Discord timestamps, not in the network's zone."""
    await create_event(bot)
    await bot.settle()
    (post,) = [t for t in fake.texts_in(ANNOUNCE) if "Heads together" in t]
    assert "<t:1768330800:f>–<t:1768334400:t>" in post  # 19:00–20:00 on 13 January 2026, UTC
    assert "UK time" not in post


async def test_event_create_is_refused_for_a_member(bot: DiscordBot, fake: FakeDiscord):
    """A member's /event create is refused at once, and no form opens."""
    interaction = await bot.run(
        MEMBER,
        "event",
        "create",
        title="Mine",
        start="2026-01-13 19:00",
        duration="60",
        link="https://meet.example.org/x",
    )
    (reply,) = fake.replies_to(interaction)
    assert "only for coordinators" in reply["content"]
    assert all(r["type"] != MODAL for r in interaction.responses)


async def create_event(bot: DiscordBot, **extra: str) -> str:
    """A coordinator's event, created with options; returns its id (E…)."""
    interaction = await bot.run(
        COORDINATOR,
        "event",
        "create",
        title="Heads together",
        start="2026-01-13 19:00",
        duration="60",
        link="https://meet.example.org/heads",
        **extra,
    )
    found = re.search(r"E\d+", bot.fake.replies_to(interaction)[0]["content"])
    assert found is not None
    return found.group(0)


async def test_event_edit_without_options_opens_a_prefilled_modal(
    bot: DiscordBot, fake: FakeDiscord
):
    """/event edit ID opens the form prefilled, five inputs at most."""
    code = await create_event(bot)
    opened = await bot.run(COORDINATOR, "event", "edit", event_id=code)
    assert opened.modal is not None
    inputs = [c for row in opened.modal["components"] for c in row["components"]]
    assert [i["custom_id"] for i in inputs] == ["title", "start", "duration", "link", "description"]
    assert inputs[0]["value"] == "Heads together"


async def test_event_edit_modal_keeps_the_sixth_field(bot: DiscordBot, fake: FakeDiscord):
    """Submitting the five-input edit form keeps the weekly series it could not show."""
    code = await create_event(bot, repeat_until="2026-02-10")
    opened = await bot.run(COORDINATOR, "event", "edit", event_id=code)
    assert opened.modal is not None
    values = {
        c["custom_id"]: c.get("value", "")
        for row in opened.modal["components"]
        for c in row["components"]
    }
    submitted = await bot.handled(
        fake.submit(COORDINATOR, opened, {**values, "title": "Heads together (moved room)"})
    )
    question = with_button(fake.replies_to(submitted), "rest of the series")
    applied = await bot.press(COORDINATOR, question, "rest of the series")
    text = fake.messages[applied.message_id or ""]["content"]
    assert text.startswith("Saved")
    assert "cancel" not in text.lower()


async def test_event_edit_form_from_before_a_restart_asks_to_reopen(
    bot: DiscordBot, fake: FakeDiscord
):
    """A six-field form opened before a restart cannot be completed, and says so kindly."""
    code = await create_event(bot)
    opened = await bot.run(COORDINATOR, "event", "edit", event_id=code)
    await bot.restart()
    submitted = await bot.handled(fake.submit(COORDINATOR, opened, {"title": "Changed"}))
    (reply,) = fake.replies_to(submitted)
    assert reply["content"] == discord_platform.FORM_EXPIRED


# --- starting ---------------------------------------------------------------------------------


async def test_a_refused_token_is_one_clear_config_error(db: TestDatabase, fake: FakeDiscord):
    """Discord refusing the token stops start-up with a ConfigError naming discord.token."""
    running = DiscordBot(db, fake)
    running.settings.discord.token = SecretStr("wrong")
    with pytest.raises(ConfigError, match=r"^discord\.token: "):
        await running.start()
    await running.stop()


async def test_a_server_the_bot_cannot_reach_is_one_clear_config_error(
    db: TestDatabase, fake: FakeDiscord
):
    """Commands refused for the configured server stop start-up with a clear ConfigError."""
    running = DiscordBot(db, fake)
    running.settings.discord.guild_id = "3"
    with pytest.raises(ConfigError, match="is the bot in that server"):
        await running.start()
    await running.stop()


async def test_event_edit_options_change_the_event_directly(bot: DiscordBot, fake: FakeDiscord):
    """/event edit ID with options saves at once, keeping the fields not given."""
    code = await create_event(bot)
    await bot.settle()
    edited = await bot.run(COORDINATOR, "event", "edit", event_id=code, title="Heads apart")
    assert all(r["type"] != MODAL for r in edited.responses)
    assert fake.replies_to(edited)[0]["content"].startswith("Saved")
    await bot.settle()
    assert any("Heads apart" in text for text in fake.texts_in(ANNOUNCE))


@dataclass(frozen=True)
class NoncedTarget(Target):
    """A Target carrying the outbox row id, as the delivery worker is to pass it."""

    nonce: str | None = None


async def test_a_resend_with_the_same_nonce_returns_the_first_message(
    bot: DiscordBot, fake: FakeDiscord
):
    """Sending twice with one nonce posts once: Discord hands back the first message."""
    target = NoncedTarget("channel", Channel.ANNOUNCEMENTS.value, nonce="41")
    first = await bot.platform.send(target, Message("Once only"))
    again = await bot.platform.send(target, Message("Once only"))
    assert first == again
    assert fake.texts_in(ANNOUNCE) == ["Once only"]
    sent = fake.sent("POST", rf"/channels/{ANNOUNCE}/messages")
    assert [(r.body["nonce"], r.body["enforce_nonce"]) for r in sent] == [("41", True)] * 2


# --- native scheduled events ----------------------------------------------------------------


def only_scheduled_event(fake: FakeDiscord) -> dict[str, Any]:
    (event,) = fake.scheduled_events.values()
    return event


async def test_event_create_makes_a_native_scheduled_event(bot: DiscordBot, fake: FakeDiscord):
    """A new event is also a guild scheduled event (external), at its times, link kept back."""
    code = await create_event(bot)
    await bot.settle()
    event = only_scheduled_event(fake)
    assert event["name"] == "Heads together"
    assert event["entity_type"] == 3 and event["privacy_level"] == 2
    assert event["scheduled_start_time"].startswith("2026-01-13T19:00:00")
    assert event["scheduled_end_time"].startswith("2026-01-13T20:00:00")
    assert event["entity_metadata"]["location"].startswith("Video call")
    assert "meet.example.org" not in event["entity_metadata"]["location"]
    assert "meet.example.org" not in event["description"]
    assert code in event["description"]


async def test_showing_the_link_publicly_puts_it_in_the_location(
    bot: DiscordBot, fake: FakeDiscord
):
    """Once the coordinator shows the link publicly, the scheduled event's location is it."""
    interaction = await bot.run(
        COORDINATOR,
        "event",
        "create",
        title="Heads together",
        start="2026-01-13 19:00",
        duration="60",
        link="https://meet.example.org/heads",
    )
    await bot.press(COORDINATOR, with_button(fake.replies_to(interaction), "publicly"), "publicly")
    await bot.settle()
    event = only_scheduled_event(fake)
    assert event["entity_metadata"]["location"] == "https://meet.example.org/heads"


async def test_a_long_public_link_goes_in_the_description(bot: DiscordBot, fake: FakeDiscord):
    """A public link over 100 characters goes in the description, not the location."""
    long_link = "https://meet.example.org/" + "x" * 120
    interaction = await bot.run(
        COORDINATOR,
        "event",
        "create",
        title="Heads together",
        start="2026-01-13 19:00",
        duration="60",
        link=long_link,
    )
    await bot.press(COORDINATOR, with_button(fake.replies_to(interaction), "publicly"), "publicly")
    await bot.settle()
    event = only_scheduled_event(fake)
    assert len(event["entity_metadata"]["location"]) <= 100
    assert long_link not in event["entity_metadata"]["location"]
    assert long_link in event["description"]


async def test_event_edit_updates_the_scheduled_event(bot: DiscordBot, fake: FakeDiscord):
    """Editing an event edits its scheduled event in place (same id, new name)."""
    code = await create_event(bot)
    await bot.settle()
    before = only_scheduled_event(fake)["id"]
    await bot.run(COORDINATOR, "event", "edit", event_id=code, title="Heads apart")
    await bot.settle()
    event = only_scheduled_event(fake)
    assert (event["id"], event["name"]) == (before, "Heads apart")
    assert fake.sent("PATCH", rf"/guilds/{fake.guild_id}/scheduled-events/{before}")


async def test_event_cancel_cancels_the_scheduled_event(bot: DiscordBot, fake: FakeDiscord):
    """Cancelling an event sets its scheduled event's status to cancelled."""
    code = await create_event(bot)
    await bot.settle()
    asked = await bot.run(COORDINATOR, "event", "cancel", event_id=code)
    await bot.press(COORDINATOR, with_button(fake.replies_to(asked), "cancel it"), "cancel it")
    await bot.settle()
    assert only_scheduled_event(fake)["status"] == 4


async def test_a_refused_scheduled_event_does_not_block_the_announcement(
    bot: DiscordBot, fake: FakeDiscord
):
    """Discord refusing the scheduled event fails that row for good; the post still goes."""
    fake.fail_next("POST", r"/guilds/\d+/scheduled-events", status=400, code=30038)
    await create_event(bot)
    await bot.settle()
    assert any("Heads together" in text for text in fake.texts_in(ANNOUNCE))
    rows = [r for r in await bot.outbox() if r.kind == "calendar"]
    assert [(r.status, r.last_error) for r in rows] == [(OutboxStatus.FAILED, "400:30038")]
    assert fake.scheduled_events == {}


# --- privacy ----------------------------------------------------------------------------------


async def test_export_is_a_private_json_file(bot: DiscordBot, fake: FakeDiscord):
    """/headsup export answers ephemerally with the member's data as a JSON attachment."""
    interaction = await bot.run(MEMBER, "headsup", "export")
    (reply,) = [m for m in fake.replies_to(interaction) if m.get("attachments")]
    (attached,) = reply["attachments"]
    assert attached["filename"].startswith("headsup-export-")
    exported = json.loads(attached["_content"])
    assert any(i["user_id"] == MEMBER for i in exported["identities"])
    assert reply["flags"] & EPHEMERAL


async def test_forget_me_deletes_the_member_after_the_confirm(bot: DiscordBot, fake: FakeDiscord):
    """/headsup forget-me asks first; *Delete everything* removes the member's identity."""
    asked = await bot.run(MEMBER, "headsup", "forget-me")
    assert any(i.user_id == MEMBER for i in await bot.identities())
    confirm = with_button(fake.replies_to(asked), "Delete everything")
    await bot.press(MEMBER, confirm, "Delete everything")
    assert all(i.user_id != MEMBER for i in await bot.identities())
