"""Who may use what: every command and every button of the registry, as a member, a coach, a
coordinator and an outsider (someone from another workspace or server), allowed or refused as
SPEC §3 says.

The cases are generated from the registry, and the tables below must name every command and
action: one added without an entry fails `test_every_command_is_in_the_table` until someone
decides who may use it.
"""

from __future__ import annotations

import re

import pytest
from sqlmodel import SQLModel, func, select

import commands
from bot.core import SORRY, STRANGER, Actor, Role, refusal
from bot.ui import Reply
from storage.models import Identity, Member, OutboxMessage
from tests.harness import ConsoleBot

ANYONE: frozenset[Role] = frozenset()
COACH = frozenset({Role.COACH})
COORDINATOR = frozenset({Role.COORDINATOR})

# SPEC §3: coach commands for coaches; /event create|edit|cancel and /checkin report for
# coordinators; everything else for anyone.
COMMANDS: dict[tuple[str, ...], frozenset[Role]] = {
    ("checkin",): ANYONE,
    ("checkin", "settings"): ANYONE,
    ("checkin", "pause"): ANYONE,
    ("checkin", "resume"): ANYONE,
    ("checkin", "stop"): ANYONE,
    ("checkin", "history"): ANYONE,
    ("checkin", "report"): COORDINATOR,
    ("support",): ANYONE,
    ("coach",): COACH,
    ("coach", "on"): COACH,
    ("coach", "off"): COACH,
    ("coach", "cases"): COACH,
    ("coach", "status"): COACH,
    ("coach", "limit"): COACH,
    ("coach", "hours"): COACH,
    ("event", "create"): COORDINATOR,
    ("event", "edit"): COORDINATOR,
    ("event", "cancel"): COORDINATOR,
    ("events",): ANYONE,
    ("headsup",): ANYONE,
    ("headsup", "help"): ANYONE,
    ("headsup", "privacy"): ANYONE,
    ("headsup", "export"): ANYONE,
    ("headsup", "forget-me"): ANYONE,
}

# Buttons and forms: a coach answers offers, a coordinator takes escalations and runs events;
# the rest check who is pressing against the row they act on (their own week, case, reply).
ACTIONS: dict[str, frozenset[Role]] = {
    "cmd": ANYONE,
    "checkin.answer": ANYONE,
    "checkin.not_now": ANYONE,
    "checkin.note": ANYONE,
    "checkin.opt_in": ANYONE,
    "checkin.pause_for": ANYONE,
    "checkin.pause_menu": ANYONE,
    "checkin.resume": ANYONE,
    "checkin.save_note": ANYONE,
    "checkin.skip": ANYONE,
    "support.accept": COACH,
    "support.pass": COACH,
    "support.take": COORDINATOR,
    "support.close": ANYONE,
    "support.connect": ANYONE,
    "support.feedback": ANYONE,
    "support.followup": ANYONE,
    "support.not_now": ANYONE,
    "support.reply": ANYONE,
    "support.reveal": ANYONE,
    "support.send": ANYONE,
    "support.share": ANYONE,
    "event.create": COORDINATOR,
    "event.save": COORDINATOR,
    "event.apply": COORDINATOR,
    "event.show_link": COORDINATOR,
    "event.keep": COORDINATOR,
    "event.cancel_confirm": COORDINATOR,
    "event.rsvp": ANYONE,
    "event.link": ANYONE,
    "event.ics": ANYONE,
    "privacy.keep": ANYONE,
    "privacy.forget": ANYONE,
}

REGISTRY = commands.load()
PEOPLE = {
    "member": Actor("console", "mo-member", "Mo Member"),
    "coach": Actor("console", "cass-coach", "Cass Coach", COACH),
    "coordinator": Actor("console", "cora-coordinator", "Cora Coordinator", COORDINATOR),
}
# Someone outside the network's own workspace or server (adapters mark them): refused
# everything, whatever roles their own space gives them, and nothing about them is stored.
OUTSIDER = Actor("console", "oz-outsider", "Oz Outsider", COACH | COORDINATOR, stranger=True)
NO_SUCH = "999999"  # every id in a pressed button: nothing it could name exists


def allowed(roles: frozenset[Role], actor: Actor) -> bool:
    return not roles or bool(roles & actor.roles)


def last_text(reply: Reply) -> str:
    assert reply.messages, reply
    return reply.messages[-1].text


async def stored(bot: ConsoleBot, table: type[SQLModel] = OutboxMessage) -> int:
    """How many rows `table` holds (by default: messages queued for anyone)."""
    async with bot.app.database.session() as session:
        return (await session.exec(select(func.count()).select_from(table))).one()


async def assert_outsider_turned_away(bot: ConsoleBot, reply: Reply, before: int) -> None:
    """The outsider hears only that the bot is for the network's own space (and the emergency
    line), and leaves no trace: no member, no identity, nothing queued."""
    settings = bot.app.settings
    assert last_text(reply) == STRANGER.format(
        network=settings.network.name, emergency=settings.support.emergency
    )
    assert reply.form is None and await stored(bot) == before
    async with bot.app.database.session() as session:
        traces = await session.exec(
            select(func.count()).select_from(Identity).where(Identity.user_id == OUTSIDER.user_id)
        )
        assert traces.one() == 0


def assert_reveals_nothing(text: str) -> None:
    """A refusal names the command and who may use it: no number, case, name or count."""
    assert not re.search(r"\d|H-|E\d", text), text
    assert not any(a.display_name in text or a.user_id in text for a in PEOPLE.values()), text


# --- the tables match the registry ----------


def test_every_command_is_in_the_table():
    """Each registered command has an expected-roles entry, and each entry a command."""
    assert set(REGISTRY.commands) == set(COMMANDS)


def test_every_action_is_in_the_table():
    """Each registered button or form action has an expected-roles entry, and each entry one."""
    assert set(REGISTRY.actions) == set(ACTIONS)


# --- commands ----------


@pytest.mark.parametrize("path", sorted(REGISTRY.commands), ids=" ".join)
async def test_command_is_for_exactly_its_roles(bot: ConsoleBot, path: tuple[str, ...]):
    """The command runs for the roles SPEC §3 gives it; anyone else gets a refusal at once that
    reveals nothing, opens no form and stores nothing."""
    spec = REGISTRY.commands[path]
    expected = COMMANDS.get(path)
    assert expected is not None, f"/{' '.join(path)} has no entry in COMMANDS"
    assert spec.roles == expected
    for who, actor in PEOPLE.items():
        before = await stored(bot)
        reply = await bot.app.core.command(actor, path[0], " ".join(path[1:]))
        text = last_text(reply) if reply.messages else ""
        if allowed(expected, actor):
            assert "is only for" not in text and text != SORRY, (who, text)
        else:
            assert text == refusal(spec.name, expected), (who, text)
            assert reply.form is None and await stored(bot) == before
            assert_reveals_nothing(text)
    before = await stored(bot)
    reply = await bot.app.core.command(OUTSIDER, path[0], " ".join(path[1:]))
    await assert_outsider_turned_away(bot, reply, before)


BARE_WITH_ROLES = sorted(
    p[0] for p, spec in REGISTRY.commands.items() if len(p) == 1 and spec.roles
)


@pytest.mark.parametrize("group", BARE_WITH_ROLES)
async def test_menu_button_cannot_run_a_command_for_other_roles(bot: ConsoleBot, group: str):
    """A menu button naming a role's command (`cmd:coach`) is refused to everyone else."""
    roles = REGISTRY.commands[(group,)].roles
    for actor in PEOPLE.values():
        if allowed(roles, actor):
            continue
        reply = await bot.app.core.press(actor, f"cmd:{group}")
        assert "isn't for you" in last_text(reply)
        assert_reveals_nothing(last_text(reply))


# --- buttons and forms ----------


@pytest.mark.parametrize("name", sorted(REGISTRY.actions))
async def test_action_is_for_exactly_its_roles(bot: ConsoleBot, name: str):
    """A button (or form) is refused to anyone outside its roles before it looks at anything;
    for those inside, a forged id naming nothing is answered kindly, not with an error."""
    spec = REGISTRY.actions[name]
    expected = ACTIONS.get(name)
    assert expected is not None, f"{name} has no entry in ACTIONS"
    assert spec.roles == expected
    action = ":".join([name, *(NO_SUCH for _ in spec.params)])
    for who, actor in PEOPLE.items():
        before = await stored(bot)
        if spec.form:
            reply = await bot.app.core.submit(actor, action, {})
        else:
            reply = await bot.app.core.press(actor, action)
        text = last_text(reply) if reply.messages else ""
        if allowed(expected, actor):
            assert "is only for" not in text and text != SORRY, (who, text)
        else:
            assert text == refusal("that button", expected), (who, text)
            assert await stored(bot) == before
            assert_reveals_nothing(text)
    before = await stored(bot)
    if spec.form:
        reply = await bot.app.core.submit(OUTSIDER, action, {})
    else:
        reply = await bot.app.core.press(OUTSIDER, action)
    await assert_outsider_turned_away(bot, reply, before)


async def test_an_outsiders_direct_message_is_turned_away(bot: ConsoleBot):
    """A DM from someone outside the network's space gets the same answer and stores nothing."""
    reply = await bot.app.core.message(OUTSIDER, "I need help")
    await assert_outsider_turned_away(bot, reply, 0)


async def test_refusing_a_newcomer_stores_nothing_about_them(bot: ConsoleBot):
    """Someone never seen before who is refused leaves no member row (no name, no user id)."""
    reply = await bot.app.core.command(PEOPLE["member"], "event", "create")
    assert last_text(reply) == refusal("/event create", COORDINATOR)
    members = await stored(bot, Member)
    assert members == 0
