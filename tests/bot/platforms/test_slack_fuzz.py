"""Bad input, fuzzed through the Slack adapter in HTTP mode: signed requests that are not what
Slack sends (not form-encoded, a payload that is not JSON, JSON of the wrong shape, no type, huge
bodies), requests unsigned or badly signed, and Slack's own kinds of request carrying any
content — all through slack-bolt against the loopback fake Slack.

An unsigned or badly signed request gets 401, a malformed one a 4xx (never a 500), and neither
has any effect; Slack's own kinds of request are answered privately and kindly, and reach no one
else. One bot is started for the module; each example comes from a Slack user of its own.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import structlog
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from sqlmodel import func, select

import commands
from bot.core import SORRY as CORE_SORRY
from bot.platforms.slack import FORM_CALLBACK, SORRY, plain_text
from storage.models import Identity
from tests.bot.platforms.test_slack import SlackBot, make_fake
from tests.conftest import TestDatabase as Database
from tests.fakes.slack_server import FakeSlack, Interaction

REGISTRY = commands.load()
FORM_ACTIONS = sorted(name for name, spec in REGISTRY.actions.items() if spec.form)
FIELD_NAMES = [
    "title",
    "start",
    "duration",
    "link",
    "description",
    "repeat_until",
    "note",
    "message",
]
# How the adapter logs a failure of its own: a request Slack could send must never end in one.
ADAPTER_FAILURES = {
    "slack.command_failed",
    "slack.press_failed",
    "slack.submit_failed",
    "slack.dm_failed",
    "slack.home_failed",
    "slack.listener_error",
}
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def tally(outcome: str) -> None:
    """Count an outcome for ``--hypothesis-show-statistics`` (inside a property only)."""
    if currently_in_test_context():
        event(outcome)


# --- the rig ----------------------------------------------------------------------------------


class Rig:
    """The fake Slack and a bot on it in HTTP mode, driven from sync tests through one loop."""

    def __init__(self, runner: asyncio.Runner, fake: FakeSlack, bot: SlackBot) -> None:
        self.runner = runner
        self.fake = fake
        self.bot = bot
        self._users = itertools.count(1)

    def __repr__(self) -> str:
        return "Rig()"

    def run(self, coro: Awaitable[Any]) -> Any:
        return self.runner.run(coro)  # type: ignore[arg-type]

    def new_user(self) -> str:
        """A workspace member never seen before."""
        user_id = f"UFUZZ{next(self._users):05d}"
        self.fake.add_user(user_id, user_id.lower())
        return user_id


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """The fake Slack and one bot on a fresh SQLite file, for the whole module."""
    path = tmp_path_factory.mktemp("slack-fuzz") / "headsup.db"
    with asyncio.Runner() as runner:
        fake = runner.run(make_fake())
        bot = SlackBot(Database(f"sqlite:///{path}", None, "sqlite"), fake, "http")
        try:
            runner.run(bot.start())
            yield Rig(runner, fake, bot)
        finally:
            runner.run(bot.stop())
            runner.run(fake.close())


async def footprint(rig: Rig) -> tuple[int, int]:
    """What the bot has done so far: Web API calls made on someone's behalf (bolt's own
    auth.test, made once on its first request, is not one), and people stored."""
    assert rig.bot.app is not None
    async with rig.bot.app.database.session() as session:
        people = (await session.exec(select(func.count()).select_from(Identity))).one()
    return len([c for c in rig.fake.calls if c.method != "auth.test"]), people


async def settled(rig: Rig) -> None:
    """Wait until the bot has finished every request in hand (follow-ups included)."""
    assert rig.bot.app is not None
    platform = rig.bot.app.platforms["slack"]
    for _ in range(500):
        if not platform._inflight:
            return
        await asyncio.sleep(0.01)


async def post(rig: Rig, body: str, content_type: str, **signing: Any) -> tuple[int, str]:
    """POST a raw body to the bot's /slack/events, signed (or not) as `signing` says; check it
    had no effect unless it was accepted."""
    await settled(rig)  # what an earlier, accepted request started is not counted against this
    before = await footprint(rig)
    status, text = await rig.fake.post_signed(body, content_type, **signing)
    if status != 200:
        await asyncio.sleep(0)  # anything it started would have begun by now
        assert await footprint(rig) == before, f"HTTP {status}, yet the bot acted on it"
    return status, text


# --- strategies -------------------------------------------------------------------------------

SPECIALS = [
    '"',
    "“quoted”",
    "<!here>",
    "<!channel>",
    "<!everyone>",
    "<@UALICE|alice>",
    "<#CANNOUNCE|announcements>",
    "<https://example.org|a link>",
    "&lt;b&gt;",
    "&amp;",
    "*bold*",
    "```",
    "\u202eRTL",
    "مرحبا",
    "👩🏽‍🏫",
    "\x00",
    "\n",
    "E1",
    "-1",
    "9" * 40,
    "monday",
    "25:99",
    "none",
    "{network}",
    "%s",
]
text = st.one_of(
    st.sampled_from(SPECIALS),
    st.lists(st.sampled_from(SPECIALS), max_size=6).map(" ".join),
    st.text(max_size=80),
    st.builds(
        lambda piece, n: (piece * n)[:8000], st.text(min_size=1, max_size=5), st.integers(1, 8000)
    ),
)
json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
json_any = st.recursive(
    json_scalar,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=15,
)
NOT_A_KIND = st.text(max_size=20).filter(
    lambda s: (
        s
        not in {
            "block_actions",
            "view_submission",
            "view_closed",
            "event_callback",
            "url_verification",
        }
    )
)
# A JSON object Slack would never send: no type, or one no listener is for, and no command.
wrong_shape = st.one_of(
    st.dictionaries(
        st.text(max_size=10).filter(lambda k: k not in ("type", "command", "ssl_check")),
        json_any,
        max_size=5,
    ),
    st.fixed_dictionaries({"type": st.one_of(NOT_A_KIND, json_scalar)}, optional={"x": json_any}),
)
not_an_object = json_any.filter(lambda v: not isinstance(v, dict))


@st.composite
def garbage_requests(draw: st.DrawFn) -> tuple[str, str]:
    """A body and content type that are not a request Slack sends."""
    kind = draw(st.integers(0, 6))
    if kind == 0:  # not form-encoded at all
        return draw(st.text(max_size=300)), draw(st.sampled_from([FORM, "text/plain", ""]))
    if kind == 1:  # payload= that is not JSON
        not_json = st.text(max_size=200).filter(lambda s: not _is_json(s))
        return urlencode({"payload": draw(not_json)}), FORM
    if kind == 2:  # payload= JSON that is not an object, or an object of the wrong shape
        return urlencode({"payload": json.dumps(draw(st.one_of(not_an_object, wrong_shape)))}), FORM
    if kind == 3:  # a JSON body of the wrong shape, or not JSON
        body = draw(
            st.one_of(
                st.builds(json.dumps, st.one_of(not_an_object, wrong_shape)),
                st.text(max_size=200).filter(lambda s: not _is_json(s)),
            )
        )
        return body, JSON
    if kind == 4:  # form fields, but no command and no payload
        fields = draw(
            st.dictionaries(
                st.text(min_size=1, max_size=10).filter(
                    lambda k: k not in ("command", "payload", "ssl_check", "type")
                ),
                st.text(max_size=50),
                max_size=5,
            )
        )
        return urlencode(fields), FORM
    if kind == 5:  # a command without the user it is from
        return urlencode({"command": "/checkin", "text": draw(text)}), FORM
    # a large body (under the size limit)
    return urlencode({"payload": "x" * draw(st.integers(100_000, 900_000))}), FORM


def _is_json(candidate: str) -> bool:
    try:
        json.loads(candidate)
    except ValueError:
        return False
    return True


HEADER_TEXT = st.characters(min_codepoint=0x20, max_codepoint=0x7E)

# --- signatures -------------------------------------------------------------------------------


@SETTINGS
@given(
    request=st.one_of(
        garbage_requests(),
        st.tuples(
            st.text(max_size=200).map(
                lambda t: urlencode({"command": "/checkin", "text": t, "user_id": "UALICE"})
            ),
            st.just(FORM),
        ),
    ),
    signing=st.one_of(
        st.fixed_dictionaries(
            {"secret": st.text(min_size=1, max_size=20).filter(lambda s: s != "shhh")}
        ),
        # Any header value a client could send (printable ASCII).
        st.fixed_dictionaries({"signature": st.text(HEADER_TEXT, min_size=1, max_size=80)}),
        # Signed right, but more than five minutes from now (seconds off, when sent).
        st.fixed_dictionaries(
            {"age": st.one_of(st.integers(-(2**40), -360), st.integers(360, 2**40))}
        ),
    ),
)
@example(
    request=(urlencode({"command": "/checkin", "user_id": "UALICE"}), FORM),
    signing={"signature": "v0=" + "0" * 64},
)
def test_an_unsigned_or_badly_signed_request_is_refused(
    rig: Rig, request: tuple[str, str], signing: dict[str, Any]
):
    """Whatever it carries, a request not signed with our secret within five minutes gets 401
    and has no effect."""
    body, content_type = request
    if "age" in signing:
        signing = {"timestamp": max(0, int(time.time()) + signing["age"])}
    status, _ = rig.run(post(rig, body, content_type, **signing))
    assert status == 401


def test_a_request_without_signature_headers_is_refused(rig: Rig):
    """No signature headers at all: 401, no effect."""

    async def unsigned() -> int:
        session = rig.fake._session
        assert session is not None
        before = await footprint(rig)
        body = urlencode({"command": "/checkin", "user_id": "UALICE"})
        headers = {"Content-Type": FORM}
        async with session.post(rig.fake.bot_url, data=body, headers=headers) as answer:
            assert await footprint(rig) == before
            return answer.status

    assert rig.run(unsigned()) == 401


# --- malformed, but signed --------------------------------------------------------------------


@SETTINGS
@given(request=garbage_requests())
@example(request=("hello", "text/plain"))
@example(request=("payload=hello", FORM))
@example(request=(urlencode({"payload": "[1, 2]"}), FORM))
@example(request=('{"no": "type"}', JSON))
@example(request=("", ""))
def test_a_signed_request_slack_would_not_send_gets_a_client_error(
    rig: Rig, request: tuple[str, str]
):
    """Not form-encoded, a payload that is not JSON, JSON of the wrong shape, no type, no user,
    a large body: a 4xx answer (400 where the adapter can tell what is wrong; 404 where no part
    of the bot handles that kind of request) — never a 500 — and no effect."""
    body, content_type = request
    with structlog.testing.capture_logs() as logs:
        status, _ = rig.run(post(rig, body, content_type))
    tally(f"HTTP {status}")
    assert status in (400, 404), status
    assert not {e["event"] for e in logs} & ADAPTER_FAILURES


def test_a_body_over_the_size_limit_is_refused(rig: Rig):
    """A body over a megabyte gets 413 before anything reads it, and has no effect."""
    status, _ = rig.run(post(rig, urlencode({"payload": "x" * 1_100_000}), FORM))
    assert status == 413


# Fields Slack puts at the top of an interactive request, which bolt reads before any listener.
TOP_LEVEL = ["team", "channel", "enterprise", "container", "message", "event", "authorizations"]


@st.composite
def slack_kinds_of_anything(draw: st.DrawFn) -> dict[str, Any]:
    """One of Slack's kinds of interactive request, with a user, and anything else at all."""
    kind = draw(st.sampled_from(["block_actions", "view_submission", "view_closed"]))
    body: dict[str, Any] = {"type": kind, "user": {"id": "UALICE"}}
    body.update(draw(st.dictionaries(st.sampled_from(TOP_LEVEL), json_any, max_size=2)))
    if kind == "block_actions":
        body["actions"] = [
            draw(
                st.dictionaries(
                    st.sampled_from(["action_id", "value", "block_id", "type"]),
                    json_scalar,
                    max_size=4,
                )
            )
        ]
    else:
        body["view"] = draw(
            st.dictionaries(
                st.sampled_from(["callback_id", "private_metadata", "state", "id", "type"]),
                st.one_of(st.sampled_from(["modal", "workflow_step"]), json_any),
                max_size=5,
            )
        )
    return body


@SETTINGS
@given(body=slack_kinds_of_anything())
@example(body={"type": "block_actions", "user": {"id": "UALICE"}, "actions": [{}]})
@example(body={"type": "block_actions", "user": {"id": "UALICE"}, "actions": [{"action_id": 5}]})
@example(body={"type": "view_submission", "user": {"id": "UALICE"}, "view": {"callback_id": ""}})
# bolt itself fails on a view without its type, or any request with an "event" that is no object.
@example(body={"type": "view_submission", "user": {"id": "UALICE"}, "view": {"callback_id": "0"}})
@example(
    body={
        "type": "block_actions",
        "user": {"id": "UALICE"},
        "actions": [{"action_id": "x"}],
        "event": None,
    }
)
def test_slacks_own_kinds_with_any_content_are_never_a_server_error(rig: Rig, body: dict):
    """A block action or a view of any content gets an answer below 500."""
    status, _ = rig.run(post(rig, urlencode({"payload": json.dumps(body)}), FORM))
    assert status < 500


# --- Slack's own requests, any content ----------------------------------------------------------


async def done(rig: Rig, start: Awaitable[Interaction]) -> tuple[Interaction, set[str]]:
    """Send a request through the fake and wait until the bot has finished with it."""
    with structlog.testing.capture_logs() as logs:
        interaction = await rig.bot.handled(start)
    return interaction, {e["event"] for e in logs}


def assert_private_and_kind(rig: Rig, user: str, interaction: Interaction, since: int) -> None:
    """Answered (in the acknowledgement, through the response_url, by replacing the message the
    button is on, in the DM, or under a field of the submitted modal), kindly, and only to
    `user`."""
    assert interaction.status in (None, 200), interaction.status
    new = rig.fake.messages[since:]
    for message in new:
        private = message["ephemeral_to"] == user or message["channel"] == f"D{user}"
        assert private, f"a message in {message['channel']} for {message['ephemeral_to']}"
    shown = [m["text"] for m in new]
    shown += [m["text"] for m in interaction.answers if not any(m is n for n in new)]
    shown += list(interaction.errors.values())
    assert shown, "no answer"
    tally("answer: " + shown[-1][:40])
    for answer in shown:
        assert answer.strip()
        assert answer not in (CORE_SORRY, SORRY), answer
        assert "<!" not in answer.replace("<!date^", ""), "a mention made by the bot"


@st.composite
def slash_commands(draw: st.DrawFn) -> tuple[str, str]:
    """A slash command and its text: mostly one of ours, often with a real subcommand first."""
    if draw(st.integers(0, 5)) == 0:
        return "/" + draw(st.text(min_size=1, max_size=20)).strip().replace(" ", ""), draw(text)
    path = draw(st.sampled_from(sorted(REGISTRY.commands)))
    return "/" + path[0], " ".join([*path[1:], draw(text)])


@SETTINGS
@given(typed=slash_commands())
@example(typed=("/support", "<!channel> please help &amp; <@UCAROL|carol>"))
@example(typed=("/checkin", "settings “mon” 09:00 \x00"))
@example(typed=("/event", "create"))
@example(typed=("/", ""))
def test_any_command_text_is_answered_privately_and_kindly(rig: Rig, typed: tuple[str, str]):
    """Any slash command with any text (Slack's markup and entities included) is answered to
    the person alone, kindly, with no mention."""
    command, words = typed
    user = rig.new_user()
    since = len(rig.fake.messages)
    interaction, events = rig.run(done(rig, rig.fake.command(user, command, words)))
    assert not events & ADAPTER_FAILURES, events
    assert_private_and_kind(rig, user, interaction, since)


def button_message(user: str, action_id: str, value: str | None) -> dict[str, Any]:
    """An ephemeral message shown to `user` with one button."""
    element: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": "Press"},
        "action_id": action_id,
    }
    if value is not None:
        element["value"] = value
    return {
        "type": "message",
        "ts": "1767600000.000001",
        "channel": "CANNOUNCE",
        "text": "A message with a button",
        "blocks": [{"type": "actions", "elements": [element]}],
        "ephemeral_to": user,
        "edits": 0,
    }


forged_action = st.one_of(
    st.builds(
        lambda name, parts: ":".join([name, *parts]),
        st.sampled_from(sorted(REGISTRY.actions)),
        st.lists(
            st.one_of(st.integers(-(2**70), 2**70).map(str), st.text(max_size=10)), max_size=4
        ),
    ),
    st.text(max_size=300),
)


@SETTINGS
@given(
    action_id=st.text(min_size=1, max_size=255),
    value=st.one_of(st.none(), forged_action),
)
@example(action_id="x", value="checkin.skip:" + "9" * 30)
@example(action_id="cmd:coach", value=None)
@example(action_id="x", value="")
def test_any_button_is_answered_privately_and_kindly(rig: Rig, action_id: str, value: str | None):
    """A button with any action id and value, forged or stale, is answered to the person alone,
    kindly."""
    user = rig.new_user()
    message = button_message(user, action_id, value)
    since = len(rig.fake.messages)
    interaction, events = rig.run(done(rig, rig.fake.press(user, message, "Press")))
    assert not events & ADAPTER_FAILURES, events
    assert_private_and_kind(rig, user, interaction, since)


metadata = st.one_of(
    st.builds(
        lambda action, parts: json.dumps({"a": ":".join([action, *parts])}),
        st.sampled_from(FORM_ACTIONS),
        st.lists(st.integers(-(2**40), 2**40).map(str), max_size=2),
    ),
    st.builds(lambda a: json.dumps({"a": a}), st.one_of(st.text(max_size=50), json_scalar)),
)


@SETTINGS
@given(
    private_metadata=metadata,
    fields=st.lists(
        st.tuples(st.one_of(st.sampled_from(FIELD_NAMES), st.text(min_size=1, max_size=30)), text),
        max_size=6,
    ),
)
@example(private_metadata=json.dumps({"a": "support.send:1"}), fields=[("message", "hi")])
@example(private_metadata=json.dumps({"a": "event.create"}), fields=[("title", "x" * 8000)])
def test_any_form_submission_is_answered_privately_and_kindly(
    rig: Rig, private_metadata: str, fields: list[tuple[str, str]]
):
    """A submitted modal naming any form action (or odd metadata) with any fields and values
    is answered to the person alone, kindly."""
    user = rig.new_user()
    opened = Interaction("opened", user)
    opened.modal = {
        "type": "modal",
        "callback_id": FORM_CALLBACK,
        "private_metadata": private_metadata,
        "blocks": [
            {
                "type": "input",
                "block_id": name,
                "element": {"type": "plain_text_input", "action_id": name},
            }
            for name, _ in fields
        ],
    }
    since = len(rig.fake.messages)
    interaction, events = rig.run(done(rig, rig.fake.submit(user, opened, dict(fields))))
    assert not events & ADAPTER_FAILURES, events
    action = json.loads(private_metadata).get("a")
    if not action:
        # No form named: nothing to run; the adapter apologises (below, it is let through).
        assert [m["text"] for m in rig.fake.messages[since:]] == [SORRY]
        return
    assert_private_and_kind(rig, user, interaction, since)


@SETTINGS
@given(typed=text.filter(lambda t: t.strip()), in_thread=st.booleans())
@example(typed="<!here> and <@UCAROL|carol> &lt;script&gt;", in_thread=False)
def test_any_direct_message_is_answered_in_the_dm(rig: Rig, typed: str, in_thread: bool):
    """Any DM text, in a thread or not, gets a kind answer in that DM and nothing elsewhere."""
    user = rig.new_user()
    since = len(rig.fake.messages)
    thread = "1767600000.000009" if in_thread else None
    interaction, events = rig.run(done(rig, rig.fake.dm(user, typed, thread_ts=thread)))
    assert not events & ADAPTER_FAILURES, events
    if not plain_text(typed).strip():
        return  # only markup that stands for nothing (as Slack would send it): nothing to answer
    assert_private_and_kind(rig, user, interaction, since)


@SETTINGS
@given(
    extra=st.dictionaries(
        st.sampled_from(["subtype", "bot_id", "thread_ts", "tab", "text", "files", "edited"]),
        json_any,
        max_size=3,
    ),
    kind=st.sampled_from(["message", "app_home_opened", "reaction_added", "team_join"]),
)
def test_any_event_is_taken_without_failing(rig: Rig, extra: dict[str, Any], kind: str):
    """An event of any kind with odd fields is acknowledged with 200 and handled (or ignored)
    without an error, and posts nothing for anyone else."""
    user = rig.new_user()
    since = len(rig.fake.messages)
    fields = {"type": kind, "user": user, "channel": f"D{user}", "channel_type": "im", **extra}
    fields["ts"] = "1767600000.000010"
    platform = rig.bot.platform

    async def send() -> Interaction:
        before = platform.handled
        interaction = await rig.fake.event(user, fields)
        for _ in range(300):
            ignored = any(e["event"] == "slack.event_ignored" for e in logs)
            if platform.handled > before or ignored:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the bot never finished with the event")
        return interaction

    with structlog.testing.capture_logs() as logs:
        interaction = rig.run(send())
    assert interaction.status == 200
    assert not {e["event"] for e in logs} & ADAPTER_FAILURES, logs
    for message in rig.fake.messages[since:]:
        assert message["channel"] == f"D{user}" or message["ephemeral_to"] == user


def test_the_bot_is_still_up_after_the_fuzzing(rig: Rig):
    """After all of the above, a plain command is answered as usual."""
    interaction, _ = rig.run(done(rig, rig.fake.command("UALICE", "/headsup", "help")))
    assert interaction.ack is not None and "Here's what you can do" in interaction.ack["text"]
