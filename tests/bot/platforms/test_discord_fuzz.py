"""Bad input, fuzzed through the Discord adapter: slash commands with odd, missing or mistyped
options, buttons with any custom_id, modal submissions with any fields, DMs with any text, and
malformed gateway events — all through the real discord.py client and the loopback fake Discord.

Whatever arrives, the bot stays up, answers the person privately with a kind line where Discord
expects an answer (never the apology for an unexpected error), and sends nothing to anyone else.
The adapter's pure helpers are fuzzed directly too.

One bot is started for the module; each example comes from a Discord user of its own, so no
example can build on another's (a support draft, a subscription).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from sqlmodel import func, select

import commands
from bot.core import SORRY as CORE_SORRY
from bot.core import split_words
from bot.platforms.discord import (
    MAX_MODAL_INPUTS,
    SORRY,
    Invocation,
    _clip,
    command_text,
    invocations,
    message_kwargs,
    modal_custom_id,
    point_discord_py_at,
    read_modal_custom_id,
    submitted_values,
)
from bot.ui import Button, Form, FormField, Message
from storage.models import OutboxMessage
from tests.bot.platforms.test_discord import (
    ANNOUNCE,
    COACH,
    COACH_ROLE,
    COORDINATOR,
    COORDINATOR_ROLE,
    COORDINATORS,
    MEMBER,
    DiscordBot,
)
from tests.conftest import TestDatabase as Database
from tests.fakes.discord_server import (
    DEFERRED_MESSAGE,
    DEFERRED_UPDATE,
    EPHEMERAL,
    MESSAGE,
    MODAL,
    UPDATE,
    FakeDiscord,
    Interaction,
)

REGISTRY = commands.load()
TREE = invocations(REGISTRY.commands)
FORM_ACTIONS = sorted(name for name, spec in REGISTRY.actions.items() if spec.form)
FIELD_NAMES = ["title", "start", "duration", "link", "description", "repeat_until", "note",
               "message"]  # fmt: skip
NO_MENTIONS = {"parse": []}
# Every way the adapter logs a failure of its own (an exception in on_command, on_press,
# on_modal): a fuzzed but well-formed event must never end in one of these.
ADAPTER_FAILURES = {"discord.command_failed", "discord.press_failed", "discord.submit_failed"}

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def tally(outcome: str) -> None:
    """Count an outcome for ``--hypothesis-show-statistics`` (inside a property only)."""
    if currently_in_test_context():
        event(outcome)


# --- the rig ----------------------------------------------------------------------------------


def new_fake() -> FakeDiscord:
    fake = FakeDiscord()
    fake.add_role(COACH_ROLE, "Coach")
    fake.add_role(COORDINATOR_ROLE, "Coordinator")
    fake.add_channel(ANNOUNCE, "announcements")
    fake.add_channel(COORDINATORS, "coordinators")
    fake.add_member(MEMBER, "alice")
    fake.add_member(COACH, "carol", [COACH_ROLE])
    fake.add_member(COORDINATOR, "dave", [COORDINATOR_ROLE])
    return fake


class Rig:
    """The fake Discord and a bot on it, driven from sync tests through one event loop."""

    def __init__(self, runner: asyncio.Runner, fake: FakeDiscord, bot: DiscordBot) -> None:
        self.runner = runner
        self.fake = fake
        self.bot = bot
        self._ids = itertools.count(700_000)

    def __repr__(self) -> str:
        return "Rig()"

    def run(self, coro: Awaitable[Any]) -> Any:
        # discord.py keeps its REST base and gateway process-wide: aim them at this fake again,
        # in case a test with a Discord of its own moved them.
        point_discord_py_at(self.bot.settings.discord)
        return self.runner.run(coro)  # type: ignore[arg-type]

    def new_id(self) -> str:
        return str(next(self._ids))

    def new_user(self) -> str:
        """A server member never seen before."""
        user_id = self.new_id()
        self.fake.add_member(user_id, f"member{user_id}")
        return user_id

    def new_button_message(self, custom_id: str) -> dict[str, Any]:
        """A bot message with one button, as the fake keeps those the bot posted."""
        message = button_message(custom_id)
        message["id"] = self.new_id()
        self.fake.messages[message["id"]] = message
        return message

    def command_id(self, name: str) -> str:
        found = next((c for c in self.fake.commands if c["name"] == name), None)
        return found["id"] if found else "1"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """The fake Discord and one bot on a fresh SQLite file, for the whole module."""
    path = tmp_path_factory.mktemp("discord-fuzz") / "headsup.db"
    with asyncio.Runner() as runner:
        fake = new_fake()
        runner.run(fake.start())
        bot = DiscordBot(Database(f"sqlite:///{path}", None, "sqlite"), fake)
        try:
            runner.run(bot.start())
            yield Rig(runner, fake, bot)
        finally:
            runner.run(bot.stop())
            runner.run(fake.close())


class Outcome:
    """What one event led to: the interaction as the fake saw it, and the adapter's log."""

    def __init__(self, interaction: Interaction | None, logs: list[dict[str, Any]]) -> None:
        self.interaction = interaction
        self.logs = logs

    @property
    def events(self) -> set[str]:
        return {entry["event"] for entry in self.logs}


async def outbox_not_to(bot: DiscordBot, user_id: str) -> int:
    """Messages queued for anyone but `user_id` (channel posts included)."""
    assert bot.app is not None
    async with bot.app.database.session() as session:
        query = select(func.count()).select_from(OutboxMessage)
        query = query.where(OutboxMessage.recipient != user_id)
        return (await session.exec(query)).one()


def interact(
    fake: FakeDiscord, kind: int, user_id: str, data: Any, message: dict | None = None
) -> Awaitable[Interaction]:
    """An interaction of `kind` carrying `data` just as given, in the announcements channel (the
    fake's own builder: its public calls only make well-formed ones)."""
    return fake._interact(kind, user_id, ANNOUNCE, data, message=message)


def channel_posts(fake: FakeDiscord) -> int:
    return len(fake.sent("POST", r"/channels/\d+/messages"))


async def exchange(rig: Rig, user_id: str, start: Awaitable[Interaction]) -> Outcome:
    """Put an interaction on the gateway and wait until the bot is done with it: its handler
    finished, or discord.py itself answered it (a command Discord and the bot disagree on)."""
    platform = rig.bot.platform
    before = platform.handled
    posts, queued = channel_posts(rig.fake), await outbox_not_to(rig.bot, user_id)
    with structlog.testing.capture_logs() as logs:
        interaction = await start
        for _ in range(300):
            rejected = "discord.command_error" in {e["event"] for e in logs}
            if platform.handled > before or (rejected and interaction.responses):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the bot never finished with the interaction")
    assert channel_posts(rig.fake) == posts, "the bot posted in a channel"
    assert await outbox_not_to(rig.bot, user_id) == queued, "the bot queued a message for others"
    return Outcome(interaction, list(logs))


def answers(fake: FakeDiscord, interaction: Interaction) -> list[dict[str, Any]]:
    """The message bodies the bot answered with: callbacks with content, then follow-ups."""
    bodies = [r.get("data") or {} for r in interaction.responses if r["type"] in (MESSAGE, UPDATE)]
    bodies += [fake.messages[m] for m in interaction.followups if m in fake.messages]
    return bodies


def assert_answered_kindly(fake: FakeDiscord, outcome: Outcome, *, tolerate_rejection: bool):
    """Answered, privately and without mentions, with text that is not an error apology — except
    the adapter's apology when discord.py itself turned the command down, if tolerated."""
    interaction = outcome.interaction
    assert interaction is not None and interaction.responses, "Discord expected an answer"
    first = interaction.responses[0]
    assert first["type"] in (MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE, MODAL), first
    if first["type"] in (MESSAGE, DEFERRED_MESSAGE):
        assert first["data"].get("flags", 0) & EPHEMERAL, "an answer visible to the channel"
    assert not outcome.events & ADAPTER_FAILURES, outcome.logs
    if first["type"] == MODAL:
        tally("answer: a form")
        return
    bodies = answers(fake, interaction)
    assert bodies, interaction.responses
    tally("answer: " + (bodies[-1].get("content") or "")[:40])
    for body in bodies:
        text = body.get("content") or ""
        assert text.strip(), body
        assert text != CORE_SORRY, "the core met an unexpected exception"
        assert body.get("allowed_mentions") == NO_MENTIONS, body
        if text == SORRY:
            assert tolerate_rejection and "discord.command_error" in outcome.events, outcome.logs
    for message_id in interaction.followups:
        message = fake.messages.get(message_id)
        assert message is None or message["flags"] & EPHEMERAL, "a follow-up seen by everyone"


def assert_still_up(rig: Rig) -> None:
    """A plain command afterwards is answered as usual."""
    outcome = rig.run(exchange(rig, MEMBER, rig.fake.command(MEMBER, "headsup", "help")))
    assert outcome.interaction is not None
    assert "what you can do" in answers(rig.fake, outcome.interaction)[0]["content"]


# --- strategies -------------------------------------------------------------------------------

SPECIALS = [
    '"',
    "“quoted”",
    '"unbalanced',
    "@everyone",
    "@here",
    "<@123456789>",
    "<@&50>",
    "**bold**",
    "```",
    "\u202eRTL",
    "مرحبا",
    "👩🏽‍🏫",
    "\x00",
    "\n",
    "E1",
    "-1",
    "2147483648",
    "9" * 40,
    "²",
    "monday",
    "25:99",
    "09:00-17:00",
    "Europe/London",
    "none",
    "{network}",
]
text = st.one_of(
    st.sampled_from(SPECIALS),
    st.text(max_size=60),
    st.builds(
        lambda piece, n: (piece * n)[:6000], st.text(min_size=1, max_size=5), st.integers(1, 6000)
    ),
)
json_value = st.one_of(
    text,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
OPTION_TYPES = {str: 3, int: 4}
# Discord's option types and values of each: string, integer (Discord's range), boolean, number.
TYPED_VALUES = {
    3: text,
    4: st.integers(min_value=-(2**53), max_value=2**53),
    5: st.booleans(),
    10: st.floats(min_value=-(2**53), max_value=2**53, allow_nan=False),
}


def leaves() -> list[tuple[str, str | None, Invocation]]:
    """Every command Discord knows: (name, subcommand or None, invocation)."""
    found: list[tuple[str, str | None, Invocation]] = []
    for name, node in sorted(TREE.items()):
        if isinstance(node, Invocation):
            found.append((name, None, node))
        else:
            found += [(name, sub, inv) for sub, inv in sorted(node.items())]
    return found


LEAVES = leaves()


@st.composite
def command_payloads(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A slash command's name and its options: real options with any value of any type, some
    left out, unknown ones added — or a command Discord and the bot disagree on."""
    if draw(st.integers(0, 9)) == 0:
        name = draw(st.one_of(st.text(min_size=1, max_size=32), st.sampled_from(list(TREE))))
        sub = draw(st.one_of(st.none(), st.text(min_size=1, max_size=32)))
        options: list[dict[str, Any]] = []
    else:
        name, sub, invocation = draw(st.sampled_from(LEAVES))
        options = []
        for option in invocation.options:
            if not draw(st.booleans()):
                continue
            # The right type for the option, or another (a command Discord still shows in an
            # older shape); the value always of the type declared, as Discord checks that.
            right = OPTION_TYPES.get(option.annotation, 3)
            kind = draw(st.one_of(st.just(right), st.sampled_from(sorted(TYPED_VALUES))))
            value = draw(TYPED_VALUES[kind])
            options.append({"name": option.name, "type": kind, "value": value})
        if draw(st.integers(0, 4)) == 0:
            options.append({"name": draw(st.text(max_size=10)), "type": 3, "value": draw(text)})
    if sub is not None:
        options = [{"name": sub, "type": 1, "options": options}]
    return name, {"name": name, "type": 1, "options": options}


def action_texts() -> st.SearchStrategy[str]:
    """Action ids of at most 100 characters: real names with forged arguments, or any text."""
    part = st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.integers(min_value=0, max_value=5).map(str),
        st.sampled_from(SPECIALS[:16]),
        st.text(max_size=10),
    )
    forged = st.builds(
        lambda name, parts: ":".join([name, *parts]),
        st.sampled_from(sorted(REGISTRY.actions)),
        st.lists(part, max_size=4),
    )
    return st.one_of(forged, st.text(min_size=1, max_size=100)).map(lambda s: s[:100])


def button_message(custom_id: str) -> dict[str, Any]:
    """A bot message (as Discord would send it back) with one button carrying `custom_id`."""
    return {
        "id": "",
        "channel_id": ANNOUNCE,
        "content": "A message with a button",
        "timestamp": "2026-01-05T09:00:00+00:00",
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "type": 0,
        "flags": EPHEMERAL,
        "components": [
            {
                "type": 1,
                "components": [{"type": 2, "style": 2, "label": "Press", "custom_id": custom_id}],
            }
        ],
    }


@st.composite
def modal_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """A modal submission shaped as Discord sends one (text inputs in action rows or labels),
    with any custom_id (a real form's, forged, with a stale held-fields token) and any fields."""
    custom_id = draw(
        st.one_of(
            st.builds(
                lambda name, parts: ":".join([name, *parts]),
                st.sampled_from(FORM_ACTIONS),
                st.lists(st.integers(-(2**40), 2**40).map(str), max_size=2),
            ),
            action_texts(),
        )
    )
    if draw(st.booleans()):
        custom_id = f"{custom_id[:90]}|{draw(st.from_regex(r'[0-9a-f]{8}', fullmatch=True))}"
    inputs = draw(
        st.lists(
            st.tuples(
                st.one_of(st.sampled_from(FIELD_NAMES), st.text(min_size=1, max_size=100)),
                st.one_of(text, st.just("")).map(lambda s: s[:4000]),
                st.booleans(),
            ),
            max_size=6,
        )
    )
    components = [
        {"type": 18, "component": {"type": 4, "custom_id": name, "value": value}}
        if labelled
        else {"type": 1, "components": [{"type": 4, "custom_id": name, "value": value}]}
        for name, value, labelled in inputs
    ]
    return {"custom_id": custom_id, "components": components}


# --- through the gateway ----------------------------------------------------------------------


@SETTINGS
@given(payload=command_payloads())
@example(
    payload=(
        "checkin",
        {
            "name": "checkin",
            "type": 1,
            "options": [
                {
                    "name": "pause",
                    "type": 1,
                    "options": [{"name": "weeks", "type": 4, "value": "abc"}],
                }
            ],
        },
    )
)
@example(
    payload=(
        "support",
        {"name": "support", "type": 1, "options": [{"name": "text", "type": 3, "value": {"a": 1}}]},
    )
)
@example(payload=("nosuch", {"name": "nosuch", "type": 1, "options": []}))
@example(payload=("checkin", {"name": "checkin", "type": 1, "options": [
    {"name": "settings", "type": 1, "options": []}]}))  # fmt: skip
def test_any_command_payload_is_answered_kindly(rig: Rig, payload: tuple[str, dict[str, Any]]):
    """A slash command with odd, mistyped, missing or unknown options (or a name the bot doesn't
    know) is answered privately and kindly, and reaches no one else."""
    name, data = payload
    user = rig.new_user()
    data = {"id": rig.command_id(name), **data, "guild_id": rig.fake.guild_id}
    start = interact(rig.fake, 2, user, data)
    outcome = rig.run(exchange(rig, user, start))
    assert_answered_kindly(rig.fake, outcome, tolerate_rejection=True)


@SETTINGS
@given(custom_id=action_texts())
@example(custom_id="checkin.skip:" + "9" * 30)
@example(custom_id="cmd:coach")
@example(custom_id="event.cancel_confirm:1:rest")
@example(custom_id="nope:1:2")
def test_any_button_is_answered_kindly(rig: Rig, custom_id: str):
    """A button with any custom_id, forged or stale, pressed by a member, is answered privately
    and kindly, and reaches no one else."""
    user = rig.new_user()
    message = rig.new_button_message(custom_id)
    start = rig.fake.press_custom_id(user, message, custom_id)
    outcome = rig.run(exchange(rig, user, start))
    assert_answered_kindly(rig.fake, outcome, tolerate_rejection=False)


@SETTINGS
@given(data=modal_payloads())
@example(data={"custom_id": "support.send:1", "components": []})
@example(data={"custom_id": "event.create|0123abcd", "components": []})
@example(data={"custom_id": "event.create", "components": [{"type": 1, "components": [
    {"type": 4, "custom_id": "title", "value": "x" * 4000}]}]})  # fmt: skip
def test_any_modal_submission_is_answered_kindly(rig: Rig, data: dict[str, Any]):
    """A submitted form with any custom_id, missing or unknown fields and odd or huge values is
    answered privately and kindly, and reaches no one else."""
    user = rig.new_user()
    start = interact(rig.fake, 5, user, data)
    outcome = rig.run(exchange(rig, user, start))
    assert_answered_kindly(rig.fake, outcome, tolerate_rejection=False)


@SETTINGS
@given(content=text.filter(lambda s: s.strip()))
def test_any_direct_message_is_answered_in_the_dm(rig: Rig, content: str):
    """Any DM text gets a kind answer in that DM, and nothing to anyone else."""
    user = rig.new_user()
    platform = rig.bot.platform

    async def send() -> list[dict[str, Any]]:
        before, posts = platform.handled, channel_posts(rig.fake)
        await rig.fake.dm(user, content[:4000])
        for _ in range(500):
            if platform.handled > before:
                break
            await asyncio.sleep(0.01)
        new = rig.fake.sent("POST", r"/channels/\d+/messages")[posts:]
        return [r.body | {"path": r.path} for r in new]

    posted = rig.run(send())
    assert posted, "no answer to the DM"
    dm_channel = rig.fake.dm_channels[user]
    for body in posted:
        assert body["path"] == f"/channels/{dm_channel}/messages", body["path"]
        assert body["content"].strip() and body["content"] != CORE_SORRY
        assert body.get("allowed_mentions") == NO_MENTIONS


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda p: p.pop("data"), id="command without data"),
        pytest.param(lambda p: p.update(data=None), id="command data null"),
        pytest.param(lambda p: p.update(data=[1, 2]), id="command data a list"),
        pytest.param(lambda p: p["data"].update(options={"a": 1}), id="options not a list"),
        pytest.param(lambda p: p["data"].update(options=["now"]), id="options of strings"),
        pytest.param(lambda p: p.update(type=99), id="unknown interaction type"),
        pytest.param(lambda p: p.update(type="2"), id="type as a string"),
        pytest.param(lambda p: p.pop("member"), id="nobody asking"),
    ],
)
def test_a_malformed_interaction_leaves_the_bot_up(rig: Rig, mutate: Any):
    """An INTERACTION_CREATE discord.py can read only in part is dropped or apologised for, and
    the bot goes on answering."""
    fake = rig.fake

    async def dispatch_mutated() -> None:
        original = fake.dispatch

        async def mutated(event: str, data: dict[str, Any]) -> None:
            mutate(data)
            await original(event, data)

        fake.dispatch = mutated  # type: ignore[method-assign]
        try:
            await fake.command(MEMBER, "checkin", "now")
        finally:
            fake.dispatch = original  # type: ignore[method-assign]
        await asyncio.sleep(0.05)

    rig.run(dispatch_mutated())
    assert_still_up(rig)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"custom_id": "checkin.opt_in", "component_type": 3}, id="as a select"),
        pytest.param({"custom_id": "checkin.opt_in", "component_type": 99}, id="unknown type"),
        pytest.param({"custom_id": "not-on-the-message", "component_type": 2}, id="not shown"),
    ],
)
def test_a_component_the_message_does_not_have_leaves_the_bot_up(rig: Rig, data: dict):
    """A press of a component the message doesn't carry (as discord.py sees it) is dropped, and
    the bot goes on answering."""
    message = rig.new_button_message("checkin.opt_in")

    async def press() -> Interaction:
        interaction = await interact(rig.fake, 3, MEMBER, data, message)
        await asyncio.sleep(0.05)
        return interaction

    assert rig.run(press()).responses == []
    assert_still_up(rig)


# --- events discord.py cannot parse at all, each on a bot of its own -------------------------


@pytest.fixture
async def fresh(tmp_path: Path) -> AsyncIterator[tuple[FakeDiscord, DiscordBot]]:
    """A fake Discord and a bot of their own, for a test that may leave them broken."""
    fake = new_fake()
    await fake.start()
    bot = DiscordBot(Database(f"sqlite:///{tmp_path / 'headsup.db'}", None, "sqlite"), fake)
    await bot.start()
    yield fake, bot
    await bot.stop()
    await fake.close()


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda p: (p.update(type=3), p.pop("data")), id="button without data"),
        pytest.param(lambda p: p.update(type=5, data={"custom_id": "x"}), id="modal no rows"),
        pytest.param(lambda p: p.update(id="abc"), id="id not a number"),
    ],
)
async def test_a_broken_gateway_event_leaves_the_bot_up(
    fresh: tuple[FakeDiscord, DiscordBot], mutate: Any
):
    """An INTERACTION_CREATE that discord.py cannot parse at all is dropped, and the bot goes
    on answering."""
    fake, _ = fresh
    original = fake.dispatch

    async def mutated(event: str, data: dict[str, Any]) -> None:
        mutate(data)
        await original(event, data)

    fake.dispatch = mutated  # type: ignore[method-assign]
    await fake.command(MEMBER, "checkin", "now")
    fake.dispatch = original  # type: ignore[method-assign]
    later = await fake.command(MEMBER, "headsup", "help")
    await fake.wait_for(lambda: later.responses, within=1.5)


def test_a_modal_value_of_the_wrong_type_is_answered_kindly(rig: Rig):
    """A text input whose value is a number still gets a kind answer, not an apology."""
    user = rig.new_user()
    data = {
        "custom_id": "checkin.save_note:1",
        "components": [{"type": 1, "components": [{"type": 4, "custom_id": "note", "value": 5}]}],
    }
    outcome = rig.run(exchange(rig, user, interact(rig.fake, 5, user, data)))
    assert_answered_kindly(rig.fake, outcome, tolerate_rejection=False)


# --- the pure helpers -------------------------------------------------------------------------

json_tree = st.recursive(
    json_value,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(["type", "custom_id", "value", "components", "component"]),
            children,
            max_size=4,
        ),
    ),
    max_leaves=12,
)
well_formed_rows = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {
                "type": st.just(1),
                "components": st.lists(
                    st.fixed_dictionaries(
                        {"type": st.sampled_from([2, 3, 4]), "custom_id": st.text(max_size=20)},
                        optional={"value": st.one_of(st.text(max_size=50), st.none())},
                    ),
                    max_size=5,
                ),
            }
        ),
        st.fixed_dictionaries(
            {
                "type": st.just(18),
                "component": st.fixed_dictionaries(
                    {"type": st.just(4), "custom_id": st.text(max_size=20)},
                    optional={"value": st.text(max_size=50)},
                ),
            }
        ),
    ),
    max_size=6,
)


@settings(max_examples=200, deadline=None, database=None)
@given(rows=well_formed_rows)
def test_submitted_values_reads_every_text_input(rows: list[dict[str, Any]]):
    """Each text input of a well-formed submission becomes one field of text, by its id."""
    values = submitted_values({"custom_id": "x", "components": rows})
    inputs = [
        c
        for row in rows
        for c in ([row["component"]] if "component" in row else row["components"])
        if c["type"] == 4
    ]
    assert set(values) == {c["custom_id"] for c in inputs}
    assert all(isinstance(v, str) for v in values.values())


@settings(max_examples=200, deadline=None, database=None)
@given(data=st.dictionaries(st.sampled_from(["custom_id", "components"]), json_tree))
@example(data={"components": None})
@example(data={"components": ["row"]})
@example(data={"components": [{"type": 4, "custom_id": "note", "value": 5}]})
@example(data={"components": [{"type": 4, "custom_id": ["note"], "value": "x"}]})
def test_submitted_values_takes_any_payload(data: dict[str, Any]):
    """Any JSON at all as a modal's data gives a mapping of text to text, and never raises."""
    values = submitted_values(data)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in values.items())


def _option_values(invocation: Invocation) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            o.name: st.one_of(st.text(max_size=40), st.integers(), st.none())
            for o in invocation.options
        },
    )


@st.composite
def invocations_with_values(draw: st.DrawFn) -> tuple[Invocation, dict[str, Any]]:
    _, _, invocation = draw(st.sampled_from(LEAVES))
    return invocation, draw(_option_values(invocation))


@settings(max_examples=300, deadline=None, database=None)
@given(case=invocations_with_values())
def test_command_text_raises_only_its_kind_value_error(case: tuple[Invocation, dict[str, Any]]):
    """Any option values give command text, or the documented ValueError naming the gap."""
    invocation, values = case
    try:
        line = command_text(invocation, values)
    except ValueError as exc:
        assert str(exc).startswith("Please fill in ")
        return
    assert line.startswith(" ".join(invocation.words))


def typed_options(invocation: Invocation) -> list[str]:
    """The names of a command's leading typed options (before any rest-of-line or form one)."""
    return [
        o.name
        for o in itertools.takewhile(lambda o: not (o.rest or o.form_field), invocation.options)
    ]


@st.composite
def typed_values(draw: st.DrawFn) -> tuple[Invocation, dict[str, str]]:
    """A command with typed options, and values for the first one or more of them."""
    invocation = draw(st.sampled_from([inv for _, _, inv in LEAVES if typed_options(inv)]))
    names = typed_options(invocation)
    given = names[: draw(st.integers(1, len(names)))]
    return invocation, {name: draw(st.text(min_size=1, max_size=30)) for name in given}


@settings(max_examples=300, deadline=None, database=None)
@given(case=typed_values())
@example(case=(TREE["checkin"]["pause"], {"weeks": "a “b"}))
@example(case=(TREE["coach"]["hours"], {"span": 'x"y', "timezone": "a b"}))
def test_each_option_value_reaches_the_core_as_one_word(case: tuple[Invocation, dict[str, str]]):
    """Each typed option's value, spaces and quotes and all, is one word of the command text."""
    invocation, values = case
    words = split_words(command_text(invocation, values))
    assert len(words) == len(invocation.words) + len(values), words


kept_fields = st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=30), max_size=3)


@settings(max_examples=300, deadline=None, database=None)
@given(action=st.text(max_size=100), kept=kept_fields)
@example(action="event.save:12", kept={"repeat_until": "2026-02-10"})
@example(action="a|b", kept={})
@example(action="a|b", kept={"x|y": "1=2&3"})
def test_a_modal_custom_id_gives_back_its_action_and_kept_fields(action: str, kept: dict[str, str]):
    """A form's custom_id, when it fits Discord's 100 characters, reads back as the form's
    action and the filled fields past the fifth, whatever characters they hold."""
    shown = tuple(FormField(f"shown{i}", "Shown") for i in range(MAX_MODAL_INPUTS))
    extra = tuple(FormField(name, "Kept", value=value) for name, value in kept.items())
    form = Form(action, "A form", (*shown, *extra))
    try:
        custom_id = modal_custom_id(form)
    except ValueError:
        return
    assert len(custom_id) <= 100
    assert read_modal_custom_id(custom_id) == (action, {k: v for k, v in kept.items() if v})


@settings(max_examples=200, deadline=None, database=None)
@given(action=st.text(max_size=90), token=st.from_regex(r"[0-9a-f]{8}", fullmatch=True))
def test_a_held_fields_token_from_an_older_version_reads_as_expired(action: str, token: str):
    """A modal opened by an older version (its fields held in memory behind a token) is not
    mistaken for one carrying its fields: it reads as nothing, and the bot says it expired."""
    assert read_modal_custom_id(f"{action}|{token}") is None


@settings(max_examples=200, deadline=None, database=None)
@given(value=st.text(max_size=300), limit=st.integers(min_value=1, max_value=200))
def test_clipping_keeps_within_the_limit(value: str, limit: int):
    """A clipped text is never longer than its limit, and a short one is left as it is."""
    clipped = _clip(value, limit)
    assert len(clipped) <= limit
    assert clipped == value or clipped.endswith("…")


@settings(max_examples=100, deadline=None, database=None)
@given(
    body=st.one_of(text, st.text(min_size=1900, max_size=3000)),
    labels=st.lists(st.text(min_size=1, max_size=200), max_size=25),
)
def test_any_message_renders_within_discords_limits(body: str, labels: list[str]):
    """Any text and buttons render within Discord's limits, with mentions off."""
    message = Message(body, tuple(Button(label, f"cmd:{i}") for i, label in enumerate(labels)))
    kwargs = message_kwargs(message)
    assert len(kwargs["content"]) <= 2000
    assert kwargs["allowed_mentions"].everyone is False
    if labels:
        assert all(len(item.item.label or "") <= 80 for item in kwargs["view"].children)
        assert len({item.row for item in kwargs["view"].children}) <= 5
