"""The Slack platform end to end: the real slack-bolt app against the loopback fake Slack (Web API,
signed HTTP requests and the Socket Mode websocket), with the whole app behind it. No network,
no token."""

from __future__ import annotations

import asyncio
import io
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

import pytest
import structlog
from sqlmodel import func, select

import bot.platforms.slack as slack_platform
from bot.app import App
from bot.clock import Clock
from bot.config import ConfigError
from bot.platforms import DeliveryError, Target
from bot.platforms.slack import SlackPlatform, escape, plain_text
from bot.text import moment
from bot.ui import Channel, Message, ToChannel, ToMember
from storage.models import Identity, Member, OutboxMessage, OutboxStatus
from storage.platform_events import PlatformEvent
from storage.support import CaseStatus, SupportCase
from tests.bot.test_logs import captured  # noqa: F401 (a fixture)
from tests.fakes.slack_server import FakeSlack, Interaction, buttons, shown_text
from tests.harness import START, make_settings

if TYPE_CHECKING:
    from tests.conftest import TestDatabase

ANNOUNCE, COORDINATORS = "CANNOUNCE", "CCOORD"
MEMBER, COACH, COORDINATOR = "UALICE", "UCAROL", "UDAVE"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SlackBot:
    """A real App on the Slack platform, pointed at the fake; restartable on one database."""

    def __init__(self, db: TestDatabase, fake: FakeSlack, mode: str = "http") -> None:
        section: dict[str, Any] = {
            "bot_token": fake.bot_token,
            "app_token": fake.app_token,
            "signing_secret": fake.signing_secret,
            "mode": mode,
            "api_base_url": fake.api_url,
            "announce_channel": ANNOUNCE,
            "coordinator_channel": COORDINATORS,
            "coaches": [COACH],
            "coordinators": [COORDINATOR],
        }
        if mode == "http":
            section["http_port"] = free_port()
            fake.bot_url = f"http://127.0.0.1:{section['http_port']}/slack/events"
        fake.mode = mode
        self.settings = make_settings(db.url, slack=section)
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

    @property
    def platform(self) -> SlackPlatform:
        assert self.app is not None
        platform = self.app.platforms["slack"]
        assert isinstance(platform, SlackPlatform)
        return platform

    async def settle(self) -> None:
        """Run what is due and deliver every queued message (the outbox worker's job)."""
        assert self.app is not None
        await self.app.settle()

    async def handled(self, event: Awaitable[T]) -> T:
        """Send a request and wait until the bot has finished handling it, every answer
        included."""
        before = self.platform.handled
        result = await event
        for _ in range(500):
            if self.platform.handled > before:
                return result
            await asyncio.sleep(0.01)
        raise AssertionError("the bot never finished handling the request")

    async def run(self, user_id: str, command: str, text: str = "") -> Interaction:
        return await self.handled(self.fake.command(user_id, command, text))

    async def press(self, user_id: str, message: dict[str, Any], label: str) -> Interaction:
        return await self.handled(self.fake.press(user_id, message, label))

    async def submit(self, user_id: str, opened: Interaction, values: dict[str, str]):
        return await self.handled(self.fake.submit(user_id, opened, values))

    async def dm(self, user_id: str, text: str, **kwargs: Any) -> Interaction:
        return await self.handled(self.fake.dm(user_id, text, **kwargs))

    async def identity(self, user_id: str) -> Identity:
        assert self.app is not None
        async with self.app.database.session() as session:
            return (
                await session.exec(
                    select(Identity).where(
                        Identity.platform == "slack", Identity.user_id == user_id
                    )
                )
            ).one()

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


async def make_fake() -> FakeSlack:
    server = FakeSlack()
    server.add_channel(ANNOUNCE, "announcements")
    server.add_channel(COORDINATORS, "coordinators")
    server.add_user(MEMBER, "alice", tz="Europe/Paris")
    server.add_user(COACH, "carol")
    server.add_user(COORDINATOR, "dave")
    await server.start()
    return server


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    server = await make_fake()
    yield server
    await server.close()


@pytest.fixture
async def bot(db: TestDatabase, fake: FakeSlack, monkeypatch) -> AsyncIterator[SlackBot]:
    """The bot in HTTP mode: every request is posted, signed, to its /slack/events."""
    # A loaded test machine can take longer than production's quick-answer window; the tests
    # of deferring set their own.
    monkeypatch.setattr(slack_platform, "ACK_WITHIN", 2.0)
    running = SlackBot(db, fake, "http")
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def socket_bot(db: TestDatabase, fake: FakeSlack, monkeypatch) -> AsyncIterator[SlackBot]:
    """The bot in Socket Mode: every request is an envelope on its websocket."""
    monkeypatch.setattr(slack_platform, "ACK_WITHIN", 2.0)
    running = SlackBot(db, fake, "socket")
    await running.start()
    yield running
    await running.stop()


def with_button(messages: list[dict[str, Any]], label: str) -> dict[str, Any]:
    return next(m for m in messages if any(label.lower() in b.lower() for b in buttons(m)))


def answers_text(interaction: Interaction) -> str:
    return "\n".join(m["text"] for m in interaction.answers)


# --- starting -------------------------------------------------------------------------------


async def test_start_checks_the_token_first(bot: SlackBot, fake: FakeSlack):
    """Starting calls auth.test with the bot token before anything else."""
    assert fake.calls[0].method == "auth.test"
    assert fake.calls[0].token == fake.bot_token
    assert bot.platform.bot_user_id == fake.bot_user_id


async def test_a_refused_bot_token_is_one_clear_config_error(db: TestDatabase, fake: FakeSlack):
    """Slack refusing the bot token stops start-up with a ConfigError naming slack.bot_token."""
    running = SlackBot(db, fake, "http")
    fake.bot_token = "xoxb-other"
    with pytest.raises(ConfigError, match=r"^slack\.bot_token: .*invalid_auth"):
        await running.start()
    await running.stop()


async def test_a_refused_app_token_is_one_clear_config_error(db: TestDatabase, fake: FakeSlack):
    """In Socket Mode, a refused app-level token names slack.app_token and connections:write."""
    running = SlackBot(db, fake, "socket")
    fake.app_token = "xapp-other"
    with pytest.raises(ConfigError, match=r"^slack\.app_token: .*connections:write"):
        await running.start()
    await running.stop()


async def test_socket_mode_connects_through_apps_connections_open(
    socket_bot: SlackBot, fake: FakeSlack
):
    """Socket Mode gets its websocket URL with the app token and connects once."""
    (opened,) = fake.sent("apps.connections.open")
    assert opened.token == fake.app_token
    assert fake.hellos == 1
    assert socket_bot.platform.connected


# --- signed requests ------------------------------------------------------------------------


def command_body(user_id: str, command: str, text: str = "") -> str:
    return urlencode(
        {
            "command": command,
            "text": text,
            "user_id": user_id,
            "user_name": "alice",
            "team_id": "T001",
            "channel_id": "CGENERAL",
            "response_url": "http://127.0.0.1:1/respond/none",
            "trigger_id": "1.T001.trigger",
        }
    )


async def members(bot: SlackBot) -> list[Identity]:
    assert bot.app is not None
    async with bot.app.database.session() as session:
        return list((await session.exec(select(Identity))).all())


async def test_a_user_from_another_workspace_is_turned_away_kindly(bot: SlackBot, fake: FakeSlack):
    """A Slack Connect user from another workspace is refused (with the emergency line) and
    nothing about them is stored."""
    fake.add_user("UEXT", "outsider", team_id="T999")
    answered = await bot.run("UEXT", "/checkin")
    assert "only for members" in answers_text(answered)
    assert "999" in answers_text(answered)
    assert all(i.user_id != "UEXT" for i in await members(bot))


async def member_count(bot: SlackBot) -> int:
    assert bot.app is not None
    async with bot.app.database.session() as session:
        return (await session.exec(select(func.count()).select_from(Member))).one()


async def test_a_stranger_opening_the_home_tab_is_turned_away_kindly(
    bot: SlackBot, fake: FakeSlack
):
    """A Slack Connect user opening the App Home tab sees the same kind refusal (with the
    emergency line) instead of the page — no events, no buttons — and nothing is stored."""
    await bot.run(
        COORDINATOR,
        "/event",
        'create "Heads together" "2026-01-13 19:00" 60 https://meet.example.org/heads',
    )
    before = await member_count(bot)
    fake.add_user("UEXT", "outsider", team_id="T999")
    await bot.handled(fake.open_home("UEXT"))
    view = fake.homes["UEXT"]
    assert "only for members" in home_texts(view) and "999" in home_texts(view)
    assert "Heads together" not in home_texts(view) and buttons(view) == []
    assert all(i.user_id != "UEXT" for i in await members(bot))
    assert await member_count(bot) == before


async def test_when_users_info_fails_the_requests_own_workspace_decides(
    bot: SlackBot, fake: FakeSlack
):
    """With users.info failing for someone never seen, the workspace the request itself names
    for them decides: a Slack Connect user is still turned away, and nothing is stored."""
    fake.add_user("UEXT", "outsider", team_id="T999")
    fake.fail_next("users.info", "internal_error", status=503)
    answered = await bot.run("UEXT", "/checkin")
    assert [c.args["user"] for c in fake.sent("users.info")] == ["UEXT"]
    assert "only for members" in answers_text(answered)
    assert all(i.user_id != "UEXT" for i in await members(bot))


async def test_with_no_word_of_their_workspace_a_person_is_taken_in_and_it_is_logged(
    bot: SlackBot, fake: FakeSlack
):
    """When neither users.info nor the request says which workspace someone is from, they are
    answered as a member (a Slack outage must not lock the network out), and that is logged."""
    fake.fail_next("users.info", "internal_error", status=503)
    with structlog.testing.capture_logs() as logs:
        await bot.handled(fake.open_home(MEMBER))  # app_home_opened names no workspace
    assert "slack.team_unknown" in {e["event"] for e in logs}
    assert "Welcome to HeadsUp" in home_texts(fake.homes[MEMBER])


async def test_a_bad_signature_is_refused_and_changes_nothing(bot: SlackBot, fake: FakeSlack):
    """A request signed with another secret gets 401, and the bot does nothing with it."""
    calls = len(fake.calls)
    status, _ = await fake.post_signed(
        command_body(MEMBER, "/checkin"), "application/x-www-form-urlencoded", secret="guess"
    )
    assert status == 401
    await asyncio.sleep(0.1)
    assert len(fake.calls) == calls
    assert await members(bot) == []


async def test_a_stale_timestamp_is_refused_and_changes_nothing(bot: SlackBot, fake: FakeSlack):
    """A correctly signed request more than five minutes old gets 401 (a replay), no effect."""
    calls = len(fake.calls)
    status, _ = await fake.post_signed(
        command_body(MEMBER, "/checkin"),
        "application/x-www-form-urlencoded",
        timestamp=int(time.time()) - 6 * 60,
    )
    assert status == 401
    await asyncio.sleep(0.1)
    assert len(fake.calls) == calls
    assert await members(bot) == []


async def test_a_missing_signature_is_refused(bot: SlackBot, fake: FakeSlack):
    """A request with no signature headers at all gets 401."""
    assert fake._session is not None
    async with fake._session.post(fake.bot_url, data=b"{}") as answer:
        assert answer.status == 401


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("payload=%7Bnot+json", "application/x-www-form-urlencoded"),
        ("{not json", "application/json"),
        ("payload=%5B1%2C2%5D", "application/x-www-form-urlencoded"),
        (json.dumps({"type": "block_actions", "user": {"id": MEMBER}, "actions": []}), ""),
        (urlencode({"command": "/checkin", "text": ""}), "application/x-www-form-urlencoded"),
        (json.dumps({"type": "event_callback", "event": "nothing"}), "application/json"),
    ],
    ids=["bad-json-payload", "bad-json", "not-an-object", "no-actions", "no-user", "no-event"],
)
async def test_malformed_requests_get_400_and_the_bot_carries_on(
    bot: SlackBot, fake: FakeSlack, body: str, content_type: str
):
    """Correctly signed but malformed requests get HTTP 400; the next command still works."""
    if not content_type:
        body = urlencode({"payload": body})
        content_type = "application/x-www-form-urlencoded"
    status, _ = await fake.post_signed(body, content_type)
    assert status == 400
    asked = await bot.run(MEMBER, "/headsup", "help")
    assert "Here's what you can do" in asked.ack["text"]


# --- commands -------------------------------------------------------------------------------


async def test_a_quick_answer_comes_in_the_acknowledgement(bot: SlackBot, fake: FakeSlack):
    """/checkin answers in the HTTP response itself, ephemeral, with the consent buttons."""
    asked = await bot.run(MEMBER, "/checkin")
    assert asked.status == 200
    assert asked.ack["response_type"] == "ephemeral"
    consent = asked.answers[0]
    assert buttons(consent) == ["Yes, check in with me weekly", "Not now"]
    assert consent["ephemeral_to"] == MEMBER


async def test_a_slow_answer_is_acknowledged_first_then_sent(
    bot: SlackBot, fake: FakeSlack, monkeypatch: pytest.MonkeyPatch
):
    """When the core is slow, the command is acknowledged empty and answered by response_url."""
    monkeypatch.setattr(slack_platform, "ACK_WITHIN", 0.0)
    asked = await bot.run(MEMBER, "/headsup", "help")
    assert not asked.ack.get("text")
    (answer,) = asked.answers
    assert answer["via"] == "url" and answer["ephemeral_to"] == MEMBER
    assert "Here's what you can do" in answer["text"]


async def test_roles_come_from_the_config(bot: SlackBot, fake: FakeSlack):
    """A member is refused /coach on; a user listed in slack.coaches goes on duty."""
    refused = await bot.run(MEMBER, "/coach", "on")
    assert "only for coaches" in refused.ack["text"]
    allowed = await bot.run(COACH, "/coach", "on")
    assert "on duty" in allowed.ack["text"]


async def test_timezone_and_name_come_from_users_info_once(bot: SlackBot, fake: FakeSlack):
    """The member's Slack timezone is their check-in default; users.info is asked once."""
    asked = await bot.run(MEMBER, "/checkin")
    assert "(Europe/Paris)" in asked.ack["text"]
    await bot.run(MEMBER, "/headsup", "help")
    assert [c.args["user"] for c in fake.sent("users.info")] == [MEMBER]
    assert (await bot.identity(MEMBER)).display_name == "alice"


async def test_command_text_arrives_as_plain_words(bot: SlackBot, fake: FakeSlack):
    """Slack's escaped command text is read as typed: &lt; is "<" for the core."""
    await bot.run(COACH, "/coach", "on")
    await bot.run(MEMBER, "/support", "governors &amp; staff &lt;3")
    case_words = await support_words(bot)
    assert case_words == "governors & staff <3"


async def support_words(bot: SlackBot) -> str:
    assert bot.app is not None
    async with bot.app.database.session() as session:
        case = (await session.exec(select(SupportCase))).one()
        assert case.words is not None
        return bot.app.cipher.decrypt(case.words)


# --- check-ins ------------------------------------------------------------------------------


async def test_checkin_answer_thanks_the_member(bot: SlackBot, fake: FakeSlack):
    """Opting in replaces the consent; tapping an answer replaces the prompt with thanks."""
    consent = (await bot.run(MEMBER, "/checkin")).answers[0]
    opted = await bot.press(MEMBER, consent, "Yes, check in")
    assert consent["text"].startswith("Thank you — you're in")
    assert consent["edits"] == 1
    prompt = with_button(opted.answers, "Okay")
    await bot.press(MEMBER, prompt, "Good")
    assert prompt["text"].startswith("Thank you for checking in — you said 🙂 Good")
    assert "Add a note" in buttons(prompt)


async def test_a_form_button_opens_a_modal_and_the_note_is_saved(bot: SlackBot, fake: FakeSlack):
    """*Add a note* opens a modal with the trigger_id; submitting it is answered privately."""
    consent = (await bot.run(MEMBER, "/checkin")).answers[0]
    prompt = with_button((await bot.press(MEMBER, consent, "Yes")).answers, "Okay")
    await bot.press(MEMBER, prompt, "Okay")
    opened = await bot.press(MEMBER, prompt, "note")
    assert opened.modal is not None
    assert opened.modal["title"]["text"] and len(opened.modal["title"]["text"]) <= 24
    assert json.loads(opened.modal["private_metadata"])["a"].startswith("checkin.save_note:")
    submitted = await bot.submit(MEMBER, opened, {"note": "A long week."})
    assert submitted.ack == {}
    saved = fake.ephemerals_to(MEMBER)[-1]
    assert saved["text"].startswith("Saved")


async def test_a_form_too_late_for_its_trigger_says_so(
    bot: SlackBot, fake: FakeSlack, monkeypatch: pytest.MonkeyPatch
):
    """If Slack says the trigger expired, the person is asked to try again, kindly."""
    import tests.fakes.slack_server as fake_module

    monkeypatch.setattr(fake_module, "TRIGGER_LIFETIME", -1.0)
    asked = await bot.run(COORDINATOR, "/event", "create")
    assert asked.modal is None
    assert slack_platform.FORM_TOO_LATE in answers_text(asked)


# --- support --------------------------------------------------------------------------------


async def test_support_signposting_is_the_acknowledgement(bot: SlackBot, fake: FakeSlack):
    """/support's first answer, in the acknowledgement itself, is the signposting; the choice
    follows by response_url, and the emergency line is shown once."""
    asked = await bot.run(MEMBER, "/support", "It has been a hard term")
    emergency = escape(bot.settings.support.emergency)
    assert asked.ack["response_type"] == "ephemeral"
    assert emergency in asked.ack["text"]
    first, choice = asked.answers
    assert first["via"] == "ack" and choice["via"] == "url"
    assert "Connect me with a coach" in buttons(choice)
    assert sum(emergency in m["text"] for m in fake.ephemerals_to(MEMBER)) == 1


async def open_case(bot: SlackBot, fake: FakeSlack) -> dict[str, Any]:
    """Coach on duty, member asks for support and connects; returns the coach's DM offer."""
    await bot.run(COACH, "/coach", "on")
    asked = await bot.run(MEMBER, "/support", "It has been a hard term")
    await bot.press(MEMBER, with_button(asked.answers, "Connect me"), "Connect me")
    await bot.settle()
    return with_button(fake.dms_to(COACH), "Accept")


async def accepted_case(bot: SlackBot, fake: FakeSlack) -> dict[str, Any]:
    offer = await open_case(bot, fake)
    await bot.press(COACH, offer, "Accept")
    await bot.settle()
    return offer


async def test_connect_offers_the_case_to_the_coach_by_dm(bot: SlackBot, fake: FakeSlack):
    """*Connect* sends the on-duty coach a DM offer (conversations.open) with Accept and Pass."""
    offer = await open_case(bot, fake)
    assert {"Accept", "Pass"} <= set(buttons(offer))
    assert "It has been a hard term" in offer["text"]
    assert [c.args["users"] for c in fake.sent("conversations.open")] == [COACH]
    assert (await bot.identity(COACH)).dm_channel_id == fake.dm_channel(COACH)


async def test_a_lapsed_offer_with_no_coach_left_goes_to_the_coordinator_channel(
    bot: SlackBot, fake: FakeSlack
):
    """When the only coach on duty lets the offer lapse, the case is posted in the configured
    coordinator channel (not the announcements) with *Take it*; a coordinator pressing it
    takes the case."""
    await open_case(bot, fake)
    assert bot.app is not None
    await bot.app.advance(timedelta(minutes=bot.settings.support.ack_minutes, seconds=1))
    (alert,) = fake.in_channel(COORDINATORS)
    assert "H-1001" in alert["text"] and "Take it" in buttons(alert)
    assert fake.in_channel(ANNOUNCE) == []

    await bot.press(COORDINATOR, alert, "Take it")
    await bot.settle()
    assert "has been taken" in alert["text"] and buttons(alert) == []
    assert any("a coach has accepted" in m["text"] for m in fake.dms_to(MEMBER))
    async with bot.app.database.session() as session:
        case = (await session.exec(select(SupportCase))).one()
    assert case.status == CaseStatus.ACTIVE
    assert case.coach_member_id == await member_id_of(bot, COORDINATOR)


async def test_accepted_case_relays_dms_both_ways(bot: SlackBot, fake: FakeSlack):
    """After Accept (in the DM, which updates the offer), each side's DMs reach the other."""
    offer = await accepted_case(bot, fake)
    assert offer["text"].startswith("You accepted H-1001")
    assert any("a coach has accepted" in m["text"] for m in fake.dms_to(MEMBER))

    await bot.dm(MEMBER, "Thank you for picking this up")
    await bot.settle()
    assert fake.dms_to(COACH)[-1]["text"].startswith("Member H-1001: Thank you for picking")

    await bot.dm(COACH, "Happy to help")
    await bot.settle()
    assert fake.dms_to(MEMBER)[-1]["text"] == "Coach: Happy to help"


async def test_a_thread_reply_goes_to_that_case(bot: SlackBot, fake: FakeSlack):
    """A coach's reply in the thread of one member's relayed message reaches that member,
    though the coach's current case (the one a plain DM goes to) is another member's."""
    await accepted_case(bot, fake)
    await bot.dm(MEMBER, "First words")
    await bot.settle()
    relayed = fake.dms_to(COACH)[-1]
    fake.add_user("UBOB", "bob")
    asked = await bot.run("UBOB", "/support", "Me too")
    await bot.press("UBOB", with_button(asked.answers, "Connect me"), "Connect me")
    await bot.settle()
    await bot.press(COACH, with_button(fake.dms_to(COACH), "Accept"), "Accept")
    await bot.settle()

    await bot.dm(COACH, "Plain message")
    await bot.dm(COACH, "In the thread", thread_ts=relayed["ts"])
    await bot.settle()
    assert fake.dms_to(MEMBER)[-1]["text"] == "Coach: In the thread"
    assert fake.dms_to("UBOB")[-1]["text"] == "Coach: Plain message"


async def test_a_thread_reply_under_someone_elses_message_goes_nowhere(
    bot: SlackBot, fake: FakeSlack
):
    """A thread reply naming a message the writer never received is no way into a case."""
    await accepted_case(bot, fake)
    await bot.dm(MEMBER, "First words")
    await bot.settle()
    relayed = fake.dms_to(COACH)[-1]
    fake.add_user("UEVE", "eve")
    await bot.dm("UEVE", "Let me in", thread_ts=relayed["ts"])
    await bot.settle()
    assert all("Let me in" not in m["text"] for m in fake.messages if m["channel"] != "DUEVE")
    assert "Check in" in buttons(fake.dms_to("UEVE")[-1])  # the menu


async def test_a_retried_event_is_relayed_once(bot: SlackBot, fake: FakeSlack):
    """Slack's retry of a DM event (same event_id, X-Slack-Retry-Num) is ignored."""
    await accepted_case(bot, fake)
    first = await bot.dm(MEMBER, "Only once, please")
    again = await bot.dm(MEMBER, "Only once, please", event_id=first.event_id, retry=1)
    assert (first.status, again.status) == (200, 200)
    await bot.settle()
    relayed = [m for m in fake.dms_to(COACH) if "Only once, please" in m["text"]]
    assert len(relayed) == 1
    assert bot.app is not None
    async with bot.app.database.session() as session:
        seen = (await session.exec(select(PlatformEvent.event_id))).all()
    assert first.event_id in seen


async def test_a_retry_reaching_another_instance_is_ignored_too(
    bot: SlackBot, db: TestDatabase, fake: FakeSlack
):
    """A second instance on the same database knows the event was handled by the first."""
    await accepted_case(bot, fake)
    first = await bot.dm(MEMBER, "Across instances")
    other = SlackBot(db, fake, "http")
    await other.start()
    try:
        await other.handled(fake.dm(MEMBER, "Across instances", event_id=first.event_id, retry=1))
        await bot.settle()
        await other.settle()
    finally:
        await other.stop()
    relayed = [m for m in fake.dms_to(COACH) if "Across instances" in m["text"]]
    assert len(relayed) == 1


async def test_dm_to_the_bot_gets_the_menu(bot: SlackBot, fake: FakeSlack):
    """A DM that is not part of a conversation is answered in the DM with the short menu."""
    await bot.dm(MEMBER, "hello")
    assert "Check in" in buttons(fake.dms_to(MEMBER)[0])


async def test_the_bots_own_messages_are_not_taken_as_dms(bot: SlackBot, fake: FakeSlack):
    """A message event from the bot itself (or any bot) is ignored."""
    posted = len(fake.messages)
    await fake.event(
        MEMBER,
        {
            "type": "message",
            "channel": fake.dm_channel(MEMBER),
            "user": fake.bot_user_id,
            "bot_id": "B001",
            "text": "echo",
            "ts": "1.000001",
            "channel_type": "im",
        },
    )
    await bot.dm(MEMBER, "hello")  # handled after the bot's own message was dropped
    assert [m["text"] for m in fake.messages[posted:]] == ["Hello — how can I help?"]


# --- events ---------------------------------------------------------------------------------


EVENT_VALUES = {
    "title": "Heads together",
    "start": "2026-01-13 19:00",
    "duration": "60",
    "link": "https://meet.example.org/heads",
}


async def test_event_create_opens_a_modal_and_announces_with_live_counts(
    bot: SlackBot, fake: FakeSlack
):
    """/event create opens a modal; submitting it announces the event with RSVP buttons, and a
    reply updates the announcement's counts through chat.update."""
    opened = await bot.run(COORDINATOR, "/event", "create")
    assert opened.modal is not None
    names = [b["block_id"] for b in opened.modal["blocks"]]
    assert names == ["title", "start", "duration", "link", "description", "repeat_until"]
    submitted = await bot.submit(COORDINATOR, opened, EVENT_VALUES)
    assert submitted.ack == {}
    done = fake.ephemerals_to(COORDINATOR)[-1]
    assert re.search(r"E\d+", done["text"]) and "Show the link publicly" in buttons(done)

    await bot.settle()
    (announcement,) = fake.in_channel(ANNOUNCE)
    assert "Heads together" in announcement["text"]
    assert buttons(announcement)[:3] == ["Going (0)", "Maybe (0)", "Can't go (0)"]

    going = await bot.press(MEMBER, announcement, "Going")
    assert "You're going to" in answers_text(going)
    await bot.settle()
    assert fake.sent("chat.update")[-1].args["ts"] == announcement["ts"]
    assert buttons(announcement)[:3] == ["Going (1)", "Maybe (0)", "Can't go (0)"]


async def test_a_bad_form_value_keeps_the_modal_open_with_the_problem_under_it(
    bot: SlackBot, fake: FakeSlack
):
    """A start that can't be read is answered in the acknowledgement with response_action
    errors under the start field: the modal stays open with what was typed, no message is
    sent and nothing is announced."""
    opened = await bot.run(COORDINATOR, "/event", "create")
    posted = len(fake.messages)
    submitted = await bot.submit(COORDINATOR, opened, {**EVENT_VALUES, "start": "tomorrow-ish"})
    assert submitted.ack is not None and submitted.ack["response_action"] == "errors"
    assert list(submitted.errors) == ["start"]
    assert "couldn't read the start 'tomorrow-ish'" in submitted.errors["start"]
    assert fake.modals[COORDINATOR] is opened.modal
    await bot.settle()
    assert len(fake.messages) == posted


async def test_a_corrected_form_then_goes_through(bot: SlackBot, fake: FakeSlack):
    """Submitting the modal kept open, its value corrected, creates and announces the event and
    closes the modal."""
    opened = await bot.run(COORDINATOR, "/event", "create")
    await bot.submit(COORDINATOR, opened, {**EVENT_VALUES, "start": "tomorrow-ish"})
    submitted = await bot.submit(COORDINATOR, opened, EVENT_VALUES)
    assert submitted.ack == {} and submitted.errors == {}
    assert COORDINATOR not in fake.modals
    assert re.search(r"E\d+", fake.ephemerals_to(COORDINATOR)[-1]["text"])
    await bot.settle()
    (announcement,) = fake.in_channel(ANNOUNCE)
    assert "Heads together" in announcement["text"]


async def test_a_form_problem_found_too_late_comes_as_a_message(
    bot: SlackBot, fake: FakeSlack, monkeypatch: pytest.MonkeyPatch
):
    """When the core's checks outlast the acknowledgement window, the modal closes and the
    problem is told privately instead."""
    monkeypatch.setattr(slack_platform, "FORM_CHECK_WITHIN", 0.0)
    opened = await bot.run(COORDINATOR, "/event", "create")
    submitted = await bot.submit(COORDINATOR, opened, {**EVENT_VALUES, "start": "tomorrow-ish"})
    assert submitted.ack == {} and COORDINATOR not in fake.modals
    assert "couldn't read the start" in fake.ephemerals_to(COORDINATOR)[-1]["text"]


async def test_buttons_keep_working_after_a_restart(bot: SlackBot, fake: FakeSlack):
    """*Going* on an announcement posted before the bot restarted is recorded, and the count is
    updated in place through chat.update: nothing about a button lives in memory."""
    opened = await bot.run(COORDINATOR, "/event", "create")
    await bot.submit(COORDINATOR, opened, EVENT_VALUES)
    await bot.settle()
    (announcement,) = fake.in_channel(ANNOUNCE)
    await bot.stop()
    await bot.start()

    going = await bot.press(MEMBER, announcement, "Going")
    assert "You're going to" in answers_text(going)
    await bot.settle()
    assert fake.sent("chat.update")[-1].args["ts"] == announcement["ts"]
    assert buttons(announcement)[:3] == ["Going (1)", "Maybe (0)", "Can't go (0)"]


async def test_event_times_show_in_each_readers_own_timezone(bot: SlackBot, fake: FakeSlack):
    """The announcement gives the time as Slack date markup, with the network's as fallback."""
    opened = await bot.run(COORDINATOR, "/event", "create")
    await bot.submit(COORDINATOR, opened, EVENT_VALUES)
    await bot.settle()
    (announcement,) = fake.in_channel(ANNOUNCE)
    shown = announcement["blocks"][0]["text"]["text"]
    assert "<!date^1768330800^{date_short_pretty}, {time}|" in shown  # 19:00 UTC, 13 Jan 2026
    assert "<!date^1768334400^{time}|20:00 UTC>" in shown
    assert "\ue000" not in shown and "\ue001" not in shown


async def test_event_create_with_text_creates_it_at_once(bot: SlackBot, fake: FakeSlack):
    """`/event create "TITLE" "YYYY-MM-DD HH:MM" DURATION LINK` needs no form."""
    asked = await bot.run(
        COORDINATOR,
        "/event",
        'create "Heads together" "2026-01-13 19:00" 60 https://meet.example.org/heads',
    )
    assert asked.modal is None
    assert not fake.sent("views.open")
    assert re.search(r"E\d+", asked.ack["text"])


async def test_event_create_is_refused_at_once_for_a_member(bot: SlackBot, fake: FakeSlack):
    """A member's /event create is refused in the acknowledgement, and no modal opens."""
    asked = await bot.run(MEMBER, "/event", "create")
    assert "only for coordinators" in asked.ack["text"]
    assert asked.modal is None
    assert not fake.sent("views.open")


async def test_calendar_files_go_through_files_upload_v2(bot: SlackBot, fake: FakeSlack):
    """/events' calendar file is uploaded (getUploadURLExternal → upload → complete) to the
    member's DM, since an ephemeral answer can't carry a file; the answer says where it is."""
    await bot.run(
        COORDINATOR,
        "/event",
        'create "Heads together" "2026-01-13 19:00" 60 https://meet.example.org/heads',
    )
    listed = await bot.run(MEMBER, "/events")
    assert [c.method for c in fake.calls if c.method.startswith("files.")] == [
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    ]
    (shared,) = fake.files
    assert shared["filename"] == "events.ics" and shared["channel"] == fake.dm_channel(MEMBER)
    assert shared["content"].startswith(b"BEGIN:VCALENDAR")
    assert "I've put events.ics in our direct messages" in answers_text(listed)
    assert any("Going (0)" in buttons(m) for m in listed.answers)


async def test_a_channel_post_with_a_file_shares_it_in_that_channel(bot: SlackBot, fake: FakeSlack):
    """A queued message with a file posts the text, then shares the file in the same channel."""
    from bot.ui import Attachment

    await bot.queue(
        ToChannel(Channel.ANNOUNCEMENTS),
        Message("Our calls", attachment=Attachment("events.ics", b"BEGIN:VCALENDAR\r\n")),
    )
    await bot.settle()
    (posted,) = fake.in_channel(ANNOUNCE)
    assert posted["text"] == "Our calls"
    (shared,) = fake.files
    assert shared["channel"] == ANNOUNCE and shared["content"] == b"BEGIN:VCALENDAR\r\n"


# --- delivery -------------------------------------------------------------------------------


async def member_id_of(bot: SlackBot, user_id: str) -> int:
    return (await bot.identity(user_id)).member_id


async def test_first_dm_opens_the_channel_and_it_is_kept(bot: SlackBot, fake: FakeSlack):
    """The DM channel is opened once (conversations.open) and its id stored for the next DM."""
    await bot.run(MEMBER, "/headsup", "help")
    member_id = await member_id_of(bot, MEMBER)
    await bot.queue(ToMember(member_id), Message("One"))
    await bot.settle()
    await bot.queue(ToMember(member_id), Message("Two"))
    await bot.settle()
    assert len(fake.sent("conversations.open")) == 1
    assert (await bot.identity(MEMBER)).dm_channel_id == fake.dm_channel(MEMBER)
    assert [m["text"] for m in fake.dms_to(MEMBER)] == ["One", "Two"]


async def test_a_429_on_a_dm_is_waited_out(bot: SlackBot, fake: FakeSlack):
    """A rate-limited DM is sent once Slack's Retry-After has passed, exactly once."""
    await bot.run(MEMBER, "/headsup", "help")
    fake.fail_next("chat.postMessage", "ratelimited", retry_after=1)
    await bot.queue(ToMember(await member_id_of(bot, MEMBER)), Message("After the wait"))
    started = time.monotonic()
    await bot.settle()
    assert time.monotonic() - started >= 1.0
    assert len(fake.sent("chat.postMessage")) == 2
    assert [m["text"] for m in fake.dms_to(MEMBER)] == ["After the wait"]
    (row,) = await bot.outbox()
    assert row.status == OutboxStatus.SENT


async def test_a_long_429_goes_back_to_the_outbox(bot: SlackBot, fake: FakeSlack):
    """A 429 asking for a long wait leaves the row queued until then, not failed."""
    await bot.run(MEMBER, "/headsup", "help")
    fake.fail_next("chat.postMessage", "ratelimited", retry_after=120)
    await bot.queue(ToMember(await member_id_of(bot, MEMBER)), Message("Later"))
    await bot.settle()
    (row,) = await bot.outbox()
    assert (row.status, row.last_error) == (OutboxStatus.PENDING, "429")
    assert row.next_attempt_at == START + timedelta(seconds=120)


async def test_a_server_error_is_retried_later(bot: SlackBot, fake: FakeSlack):
    """A 5xx from Slack leaves the message queued for a later attempt."""
    await bot.run(MEMBER, "/headsup", "help")
    fake.fail_next("chat.postMessage", "internal_error", status=503)
    await bot.queue(ToMember(await member_id_of(bot, MEMBER)), Message("Later"))
    await bot.settle()
    (row,) = await bot.outbox()
    assert (row.status, row.last_error) == (OutboxStatus.PENDING, "http_503")


async def test_a_dm_slack_will_never_take_fails_for_good(bot: SlackBot, fake: FakeSlack):
    """A permanent refusal (the member turned off the app's messages) fails the row and marks
    the member's DMs as failing."""
    await bot.run(MEMBER, "/headsup", "help")
    fake.fail_next("chat.postMessage", "messages_tab_disabled")
    await bot.queue(ToMember(await member_id_of(bot, MEMBER)), Message("Your check-in"))
    await bot.settle()
    (row,) = await bot.outbox()
    assert (row.status, row.last_error) == (OutboxStatus.FAILED, "messages_tab_disabled")
    assert (await bot.identity(MEMBER)).dm_failed_at is not None


async def test_edits_go_through_chat_update(bot: SlackBot, fake: FakeSlack):
    """An edit of a channel post replaces its text and buttons in place."""
    from bot.ui import Button

    await bot.queue(
        ToChannel(Channel.ANNOUNCEMENTS), Message("Before", (Button("Go", "x:1"),)), key="a"
    )
    await bot.settle()
    await bot.queue_edit("a", Message("After"))
    await bot.settle()
    (posted,) = fake.in_channel(ANNOUNCE)
    assert (posted["text"], buttons(posted), posted["edits"]) == ("After", [], 1)
    (update,) = fake.sent("chat.update")
    assert update.args["channel"] == ANNOUNCE and update.args["ts"] == posted["ts"]


async def test_a_channel_that_is_not_configured_fails_for_good(bot: SlackBot, fake: FakeSlack):
    """A shared channel the platform does not have is a permanent failure, not a retry loop."""
    with pytest.raises(DeliveryError) as failure:
        await bot.platform.send(Target("channel", "nowhere"), Message("Hello"))
    assert failure.value.permanent


# --- mentions -------------------------------------------------------------------------------


MENTIONS = ("<!everyone>", "<!channel>", "<!here>", "<@", "<!subteam")


def mentions_in(text: str) -> list[str]:
    return [m for m in MENTIONS if m in text]


async def test_user_text_can_never_mention_anyone(bot: SlackBot, fake: FakeSlack):
    """Text with Slack's mention syntax is posted escaped, and link_names is never set."""
    hostile = "<!everyone> <!channel> <!here> <@U999> <!subteam^S1|@heads> & @here"
    await bot.queue(ToChannel(Channel.ANNOUNCEMENTS), Message(hostile), key="a")
    await bot.settle()
    await bot.queue_edit("a", Message(hostile))
    await bot.settle()
    (posted,) = fake.in_channel(ANNOUNCE)
    assert mentions_in(posted["text"]) == [] and mentions_in(shown_text(posted)) == []
    assert "&lt;!everyone&gt;" in posted["text"] and "&amp; @here" in posted["text"]
    writes = fake.sent("chat.postMessage") + fake.sent("chat.update")
    assert len(writes) == 2
    assert all("link_names" not in c.args and "parse" not in c.args for c in writes)


async def test_a_typed_here_is_relayed_harmlessly(bot: SlackBot, fake: FakeSlack):
    """@here typed in a DM (which Slack sends as <!here>) reaches the coach as inert text."""
    await accepted_case(bot, fake)
    await bot.dm(MEMBER, "<!here> and <@UCAROL|carol> please <https://x.example|look>")
    await bot.settle()
    relayed = fake.dms_to(COACH)[-1]
    assert mentions_in(relayed["text"]) == [] and mentions_in(shown_text(relayed)) == []
    assert "here" in relayed["text"] and "carol" in relayed["text"]


def test_plain_text_reads_slack_markup_as_typed():
    """Slack's markup in incoming text becomes the words the person typed."""
    assert plain_text("<!here> &lt;b&gt; &amp; <@U1|ann> <@U2>") == "@here <b> & @ann @U2"
    assert plain_text("<#C1|general> <https://a.example|the link> <https://b.example>") == (
        "#general the link (https://a.example) https://b.example"
    )
    assert plain_text("<!subteam^S1|@heads> <!date^1|Monday>") == "@heads Monday"


def test_escape_leaves_nothing_slack_would_parse():
    """Escaping turns every &, < and > into an entity, and nothing else."""
    assert escape("a < b & c > d <!here>") == "a &lt; b &amp; c &gt; d &lt;!here&gt;"


def test_long_text_is_split_into_sections_without_breaking_an_entity():
    """Text over a section's limit is cut into several sections, never inside &amp; or the like."""
    text = ("x" * 2998) + "&" + ("y" * 10)
    blocks = slack_platform.blocks_for(Message(text))
    sections = [b["text"]["text"] for b in blocks]
    assert len(sections) == 2
    assert all(len(s) <= slack_platform.MAX_SECTION for s in sections)
    assert "".join(sections) == escape(text)


def whole_markup(text: str) -> bool:
    """No piece of Slack markup in `text` is cut: every < has its >, and nothing is left over."""
    return not re.search(r"[<>]", re.sub(r"<[^<>]*>", "", text))


def test_long_text_is_never_cut_inside_slack_markup():
    """Wherever a section's or the notification's limit falls in a long list of events, each
    date markup (<!date^…|…>) stays whole, in one piece or the next, and nothing is lost."""
    start = datetime(2026, 1, 13, 19, 0, tzinfo=UTC)
    line = " · ".join(
        f"E{n} Heads together, {moment(start + timedelta(days=7 * n), 'Tue 19:00 UK')}"
        for n in range(1, 60)
    )
    for pad in range(120):  # every place a date can fall on the limit
        text = "x" * pad + line
        sections = [b["text"]["text"] for b in slack_platform.blocks_for(Message(text))]
        assert len(sections) > 1 and all(whole_markup(s) for s in sections), pad
        assert "".join(sections) == slack_platform.slack_text(text)
        fallback = slack_platform.message_body(Message(text))["text"]
        assert len(fallback) <= slack_platform.MAX_FALLBACK and whole_markup(fallback), pad


# --- the App Home tab -----------------------------------------------------------------------


def home_texts(view: dict[str, Any]) -> str:
    return shown_text(view)


async def test_opening_the_home_tab_publishes_the_home_page(bot: SlackBot, fake: FakeSlack):
    """app_home_opened publishes the member's page with views.publish: welcome, check-ins,
    events with RSVP buttons."""
    await bot.run(
        COORDINATOR,
        "/event",
        'create "Heads together" "2026-01-13 19:00" 60 https://meet.example.org/heads',
    )
    await bot.handled(fake.open_home(MEMBER))
    (published,) = fake.sent("views.publish")
    assert published.args["user_id"] == MEMBER
    view = fake.homes[MEMBER]
    assert view["type"] == "home" and len(view["blocks"]) <= slack_platform.MAX_HOME_BLOCKS
    text = home_texts(view)
    assert "Welcome to HeadsUp" in text and "Weekly check-ins* are off" in text
    assert "Heads together" in text
    assert "Going (0)" in buttons(view)


async def test_a_home_tab_button_works_and_the_page_is_refreshed(bot: SlackBot, fake: FakeSlack):
    """Pressing Going on the home tab records the reply, answers in the DM and republishes."""
    await bot.run(
        COORDINATOR,
        "/event",
        'create "Heads together" "2026-01-13 19:00" 60 https://meet.example.org/heads',
    )
    await bot.handled(fake.open_home(MEMBER))
    await bot.handled(fake.press_home(MEMBER, "Going"))
    assert "You're going to" in fake.dms_to(MEMBER)[-1]["text"]
    assert len(fake.sent("views.publish")) == 2
    assert "You replied: Going." in home_texts(fake.homes[MEMBER])


async def test_a_coach_sees_their_open_case_on_the_home_tab(bot: SlackBot, fake: FakeSlack):
    """A coach's home page lists their case anonymously, with a Reply button."""
    await accepted_case(bot, fake)
    await bot.handled(fake.open_home(COACH))
    view = fake.homes[COACH]
    assert "H-1001 with Member H-1001" in home_texts(view)
    assert "alice" not in home_texts(view)
    assert "Reply to H-1001" in buttons(view)


async def test_a_retried_home_event_publishes_once(bot: SlackBot, fake: FakeSlack):
    """A resent app_home_opened (same event_id) is not published again."""
    first = await bot.handled(fake.open_home(MEMBER))
    ts = str(time.time())
    repeat = {"type": "app_home_opened", "user": MEMBER, "tab": "home", "event_ts": ts}
    await bot.handled(fake.event(MEMBER, repeat, event_id=first.event_id, retry=1))
    assert len(fake.sent("views.publish")) == 1


# --- Socket Mode ----------------------------------------------------------------------------


async def test_support_flow_over_socket_mode(socket_bot: SlackBot, fake: FakeSlack):
    """The same /support flow over the websocket: signposting in the envelope's acknowledgement,
    Connect, the coach's offer, Accept, and relays both ways."""
    bot = socket_bot
    await bot.run(COACH, "/coach", "on")
    asked = await bot.run(MEMBER, "/support", "It has been a hard term")
    assert escape(bot.settings.support.emergency) in asked.ack["text"]
    assert "Connect me with a coach" in buttons(asked.answers[1])
    await bot.press(MEMBER, asked.answers[1], "Connect me")
    await bot.settle()
    offer = with_button(fake.dms_to(COACH), "Accept")
    await bot.press(COACH, offer, "Accept")
    await bot.settle()
    await bot.dm(MEMBER, "Thank you")
    await bot.dm(COACH, "You're welcome")
    await bot.settle()
    assert fake.dms_to(COACH)[-1]["text"] == "Member H-1001: Thank you"
    assert fake.dms_to(MEMBER)[-1]["text"] == "Coach: You're welcome"


async def test_a_retried_socket_event_is_relayed_once(socket_bot: SlackBot, fake: FakeSlack):
    """An envelope resent with retry_attempt and the same event_id is relayed once."""
    bot = socket_bot
    await accepted_case(bot, fake)
    first = await bot.dm(MEMBER, "Just the once")
    await bot.dm(MEMBER, "Just the once", event_id=first.event_id, retry=1)
    await bot.settle()
    assert sum("Just the once" in m["text"] for m in fake.dms_to(COACH)) == 1


async def test_a_malformed_socket_envelope_is_acknowledged_and_dropped(
    socket_bot: SlackBot, fake: FakeSlack
):
    """An interactive envelope without actions is acknowledged (no resend) and does nothing:
    no Web API call comes of it."""
    calls = len(fake.calls)
    interaction = Interaction("press", MEMBER)
    await fake._envelope(
        interaction, "interactive", {"type": "block_actions", "user": {"id": MEMBER}}
    )
    assert interaction.ack == {}
    await asyncio.sleep(0.2)  # long enough for anything it started to reach the fake
    assert [c.method for c in fake.calls[calls:] if c.method != "auth.test"] == []
    asked = await socket_bot.run(MEMBER, "/headsup", "help")
    assert "Here's what you can do" in asked.ack["text"]


# --- privacy ----------------------------------------------------------------------------------


async def test_export_arrives_as_a_json_file_in_the_members_dm(bot: SlackBot, fake: FakeSlack):
    """/headsup export uploads the member's data file to their DM and says so privately."""
    await bot.run(MEMBER, "/support", "Nobody else should see this")
    answered = await bot.run(MEMBER, "/headsup", "export")
    (shared,) = fake.files
    assert shared["channel"] == fake.dm_channel(MEMBER)
    assert shared["filename"].startswith("headsup-export-")
    exported = json.loads(shared["content"])
    assert any(i["user_id"] == MEMBER for i in exported["identities"])
    assert "direct messages" in answers_text(answered)


WORDS = "thistledown governors worry"
TO_COACH = "marigold message to the coach"
TO_MEMBER = "juniper message to the member"


async def test_logs_hold_no_tokens_words_or_slack_user_ids(
    captured: io.StringIO,  # noqa: F811 (the fixture, from tests/bot/test_logs.py)
    bot: SlackBot,
    fake: FakeSlack,
):
    """Through a whole support flow on Slack — /support with its words, Connect, Accept and
    relays both ways — the logs (JSON, at DEBUG) carry none of the tokens or the signing
    secret, none of what was written, and no Slack user id: people appear as pseudonyms."""
    await bot.run(COACH, "/coach", "on")
    asked = await bot.run(MEMBER, "/support", WORDS)
    await bot.press(MEMBER, with_button(asked.answers, "Connect me"), "Connect me")
    await bot.settle()
    await bot.press(COACH, with_button(fake.dms_to(COACH), "Accept"), "Accept")
    await bot.dm(MEMBER, TO_COACH)
    await bot.dm(COACH, TO_MEMBER)
    await bot.settle()
    assert fake.dms_to(MEMBER)[-1]["text"] == f"Coach: {TO_MEMBER}"  # the flow really ran
    lines = captured.getvalue()
    assert "support.relayed" in lines and '"user_id": "u-' in lines
    secrets = (fake.bot_token, fake.app_token, fake.signing_secret, WORDS, TO_COACH, TO_MEMBER)
    for secret in (*secrets, MEMBER, COACH):
        assert secret not in lines, f"{secret!r} reached the logs"


async def test_forget_me_deletes_the_member_after_the_confirm(bot: SlackBot, fake: FakeSlack):
    """/headsup forget-me asks first; *Delete everything* removes the member's identity."""
    asked = await bot.run(MEMBER, "/headsup", "forget-me")
    assert any(i.user_id == MEMBER for i in await members(bot))
    await bot.press(MEMBER, with_button(asked.answers, "Delete everything"), "Delete everything")
    assert all(i.user_id != MEMBER for i in await members(bot))
