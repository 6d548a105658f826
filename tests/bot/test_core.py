"""The neutral core: signature-driven arguments, roles, units of work, actions, forms, DMs, and
the neutral UI types. Commands here are small test commands on a registry of our own."""

from __future__ import annotations

import datetime as dt
from contextlib import asynccontextmanager
from typing import Annotated, Literal

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import func, select

from bot.core import (
    MAX_INPUT,
    REST,
    SORRY,
    Actor,
    Arg,
    Context,
    Registry,
    Role,
    check_form,
    split_words,
)
from bot.errors import UserError
from bot.text import ZWSP, quote_user_text
from bot.ui import (
    MAX_ACTION_ID,
    Attachment,
    Button,
    Form,
    FormField,
    Message,
    Reply,
    Style,
    ToMember,
)
from storage.models import Member, OutboxMessage
from tests.harness import ConsoleBot

Colour = Literal["red", "green"]
GONE = "That button no longer does anything"


def parse_day(word: str) -> dt.date:
    """A YYYY-MM-DD date, or a kind ValueError."""
    try:
        return dt.date.fromisoformat(word)
    except ValueError:
        raise ValueError(f"{word!r} isn't a date I know — write it as YYYY-MM-DD") from None


Day = Annotated[dt.date, Arg(parse=parse_day, metavar="YYYY-MM-DD")]


def build_registry(seen: list) -> Registry:
    """A registry of small test commands; each records what it was given in `seen`."""
    registry = Registry()

    @registry.command("echo")
    async def echo(ctx: Context, word: str) -> str:
        """Say one word back."""
        seen.append(word)
        return f"word={word!r}"

    @registry.command("add")
    async def add(ctx: Context, a: int, b: int = 10) -> str:
        """Add two whole numbers."""
        seen.append((a, b))
        return f"sum={a + b}"

    @registry.command("pick")
    async def pick(ctx: Context, colour: Colour) -> str:
        """Pick a colour."""
        seen.append(colour)
        return f"colour={colour}"

    @registry.command("maybe")
    async def maybe(ctx: Context, count: int | None = None) -> str:
        """An optional number."""
        seen.append(count)
        return f"count={count!r}"

    @registry.command("say")
    async def say(ctx: Context, text: Annotated[str, REST]) -> str:
        """Say a whole line."""
        seen.append(text)
        return f"said={text!r}"

    @registry.command("note")
    async def note(ctx: Context, title: str, body: Annotated[str, REST] = "") -> str:
        """A title and optional free text."""
        seen.append((title, body))
        return f"title={title!r} body={body!r}"

    @registry.command("when")
    async def when(ctx: Context, day: Day) -> str:
        """A date parsed by a function of our own."""
        seen.append(day)
        return f"day={day.isoformat()}"

    @registry.command("secret", roles={Role.COORDINATOR})
    async def secret(ctx: Context) -> str:
        """Coordinators only."""
        seen.append(ctx.actor.user_id)
        return "the secret plan"

    @registry.command("duty", roles={Role.COACH, Role.COORDINATOR})
    async def duty(ctx: Context) -> str:
        """Coaches and coordinators."""
        return "on duty"

    @registry.command("fail")
    async def fail(ctx: Context) -> str:
        """Queue a message, then refuse: nothing may be delivered."""
        await ctx.send(ToMember(ctx.member_id), Message("queued before failing"))
        raise UserError("No can do — try something else.")

    @registry.command("boom")
    async def boom(ctx: Context) -> str:
        """Queue a message, then crash: nothing may be delivered."""
        await ctx.send(ToMember(ctx.member_id), Message("queued before crashing"))
        raise RuntimeError("internal detail that must not be shown")

    @registry.command("ping")
    async def ping(ctx: Context) -> str:
        """Queue a DM to the asker and answer."""
        await ctx.send(ToMember(ctx.member_id), Message("pong by DM"))
        return "ping queued"

    @registry.command("helpme", roles={Role.MEMBER}, preface=lambda s: f"FIRST {s.network.name}")
    async def helpme(ctx: Context, count: int = 1) -> str:
        """A command whose preface comes before anything else."""
        if count > 5:
            raise UserError("too many")
        return f"helped {count}"

    @registry.action("thing")
    async def thing(ctx: Context, number: int) -> str:
        """A button carrying a number."""
        seen.append(number)
        return f"thing {number}"

    @registry.action("admin", roles={Role.COORDINATOR})
    async def admin(ctx: Context) -> str:
        """A coordinator's button."""
        seen.append("admin")
        return "admin done"

    @registry.form("save")
    async def save(ctx: Context, values: dict[str, str]) -> str:
        """A form submission."""
        seen.append(values)
        return f"saved {sorted(values.items())}"

    @registry.form("save_for")
    async def save_for(ctx: Context, item: int, values: dict[str, str]) -> str:
        """A form submission whose action id carries an argument."""
        seen.append((item, values))
        return f"saved for {item}"

    return registry


@pytest.fixture
def seen() -> list:
    return []


@pytest.fixture
async def core_bot(db, seen) -> ConsoleBot:
    bot = await ConsoleBot.create(db.url, db.schema, registry=build_registry(seen))
    try:
        yield bot
    finally:
        await bot.stop()


def actor(user: str = "alice", *roles: Role) -> Actor:
    return Actor("console", user, user, frozenset(roles))


def texts(reply: Reply) -> str:
    return "\n".join(m.text for m in reply.messages)


async def command(bot: ConsoleBot, line: str, who: Actor | None = None) -> str:
    """Run `/group text` through the core and return the reply's text."""
    group, _, text = line.lstrip("/").partition(" ")
    return texts(await bot.app.core.command(who or actor(), group, text))


async def outbox_rows(bot: ConsoleBot) -> int:
    async with bot.app.database.session() as session:
        return (await session.exec(select(func.count()).select_from(OutboxMessage))).one()


# --- signature-driven parsing ----------------------------------------------------------------


async def test_str_parameter_gets_the_word(core_bot, seen):
    """A str parameter receives the word typed."""
    assert await command(core_bot, "/echo hello") == "word='hello'"
    assert seen == ["hello"]


async def test_int_parameters_are_converted(core_bot, seen):
    """int parameters arrive as ints."""
    assert await command(core_bot, "/add 2 3") == "sum=5"
    assert seen == [(2, 3)]


async def test_optional_parameter_takes_its_default(core_bot, seen):
    """A parameter with a default may be left out."""
    assert await command(core_bot, "/add 2") == "sum=12"
    assert seen == [(2, 10)]


async def test_optional_union_none_default(core_bot, seen):
    """`int | None = None` is optional and converted when given."""
    assert await command(core_bot, "/maybe") == "count=None"
    assert await command(core_bot, "/maybe 4") == "count=4"
    assert seen == [None, 4]


async def test_int_parameter_refuses_a_word_kindly(core_bot, seen):
    """A word where a number belongs gets a kind message and the usage line."""
    out = await command(core_bot, "/add two")
    assert "a should be a whole number, not 'two'" in out
    assert "Usage: `/add <a> [b]`" in out
    assert seen == []


async def test_literal_choice_is_accepted_case_insensitively(core_bot, seen):
    """A Literal parameter accepts one of its choices, whatever the case."""
    assert await command(core_bot, "/pick GREEN") == "colour=green"
    assert seen == ["green"]


async def test_literal_choice_refuses_others_and_lists_them(core_bot, seen):
    """A word that is not a choice is refused, naming the choices and the usage."""
    out = await command(core_bot, "/pick blue")
    assert "'blue' isn't one of red, green" in out
    assert "Usage: `/pick <red|green>`" in out
    assert seen == []


async def test_rest_parameter_takes_the_rest_of_the_line(core_bot, seen):
    """`Annotated[str, REST]` receives every remaining word as one text."""
    assert await command(core_bot, "/say the roof is leaking") == "said='the roof is leaking'"


async def test_rest_parameter_after_a_word(core_bot, seen):
    """A word parameter takes its word and the rest parameter takes what follows."""
    await command(core_bot, "/note Budget we are short again")
    assert seen == [("Budget", "we are short again")]


async def test_optional_rest_parameter_may_be_empty(core_bot, seen):
    """An optional rest parameter left empty gets its default."""
    await command(core_bot, "/note Budget")
    assert seen == [("Budget", "")]


async def test_required_rest_parameter_missing(core_bot, seen):
    """A required rest parameter left out asks for it, with the usage line."""
    out = await command(core_bot, "/say")
    assert "please add the text" in out and "Usage: `/say <text…>`" in out
    assert seen == []


async def test_arg_parse_function_is_used(core_bot, seen):
    """`Arg(parse=fn)` turns the word into the handler's value."""
    assert await command(core_bot, "/when 2026-02-03") == "day=2026-02-03"
    assert seen == [dt.date(2026, 2, 3)]


async def test_arg_parse_value_error_shows_message_and_usage(core_bot, seen):
    """A ValueError from a parse function is shown, with the usage line using the metavar."""
    out = await command(core_bot, "/when someday")
    assert "'someday' isn't a date I know — write it as YYYY-MM-DD" in out
    assert "Usage: `/when <YYYY-MM-DD>`" in out
    assert seen == []


async def test_quoted_words_are_one_argument(core_bot, seen):
    """ "two words" in straight quotes is one argument."""
    await command(core_bot, '/note "Staff meeting" at noon')
    assert seen == [("Staff meeting", "at noon")]


async def test_smart_quoted_words_are_one_argument(core_bot, seen):
    """“two words” in smart quotes (as phones type them) is one argument."""
    await command(core_bot, "/note “Staff meeting” at noon")
    assert seen == [("Staff meeting", "at noon")]


async def test_apostrophe_in_free_text_is_kept(core_bot, seen):
    """An apostrophe in free text ("I'm fine") is a letter, not a quote."""
    await command(core_bot, "/say I'm fine")
    assert seen == ["I'm fine"]


async def test_several_apostrophes_in_free_text_are_kept(core_bot, seen):
    """Free text with two apostrophes keeps both and every space."""
    await command(core_bot, "/say I'm fine, it's ok")
    assert seen == ["I'm fine, it's ok"]


async def test_smart_apostrophe_in_free_text_is_kept(core_bot, seen):
    """A phone's curly apostrophe (’) in free text reaches the handler exactly as typed."""
    await command(core_bot, "/say I’m fine, it’s ok")
    assert seen == ["I’m fine, it’s ok"]


async def test_free_text_keeps_its_spacing_quotes_and_line_breaks(core_bot, seen):
    """A rest-of-line argument is the text as written, not words joined again."""
    await command(core_bot, '/say he said  "go"\nand left')
    assert seen == ['he said  "go"\nand left']


async def test_hash_in_free_text_is_kept(core_bot, seen):
    """A "#" in free text is kept with everything after it, not read as a comment."""
    await command(core_bot, "/say I'm #1 at worrying")
    assert seen == ["I'm #1 at worrying"]


async def test_too_many_arguments(core_bot, seen):
    """Extra words get a kind message naming them, and the usage line."""
    out = await command(core_bot, "/echo one two")
    assert "That didn't quite work: I didn't expect 'two'" in out
    assert out.endswith("Usage: `/echo <word>`")
    assert seen == []


async def test_too_few_arguments(core_bot, seen):
    """A missing argument gets a kind message naming it, and the usage line."""
    out = await command(core_bot, "/echo")
    assert "I need the word" in out and "Usage: `/echo <word>`" in out
    assert seen == []


async def test_unbalanced_double_quote_is_an_ordinary_character(core_bot, seen):
    """A quotation mark without its partner is kept as part of the word, not refused."""
    await command(core_bot, '/echo "hello')
    assert seen == ['"hello']


async def test_over_long_text_is_refused(core_bot, seen):
    """A command longer than MAX_INPUT characters is refused before the handler runs."""
    out = await command(core_bot, "/say " + "x" * (MAX_INPUT + 1))
    assert "That's a bit long for me" in out
    assert seen == []


async def test_text_at_the_limit_is_accepted(core_bot, seen):
    """A command of exactly MAX_INPUT characters of text is accepted."""
    await command(core_bot, "/say " + "x" * MAX_INPUT)
    assert seen == ["x" * MAX_INPUT]


async def test_over_long_direct_message_is_refused(core_bot):
    """A direct message longer than MAX_INPUT characters is refused."""
    reply = await core_bot.app.core.message(actor(), "y" * (MAX_INPUT + 1))
    assert "too long for me to pass on" in texts(reply)


# --- roles --------------------------------------------------------------------------------


async def test_role_command_refused_for_a_member(core_bot, seen):
    """A member is told who the command is for, and nothing else."""
    out = await command(core_bot, "/secret")
    assert out == "Sorry — /secret is only for coordinators."
    assert seen == []


async def test_a_stranger_is_refused_with_the_emergency_line_and_nothing_stored(core_bot, seen):
    """Someone outside the network's space is refused everything; no member row is made."""
    stranger = Actor("console", "zed", "zed", frozenset({Role.COORDINATOR}), stranger=True)
    out = await command(core_bot, "/secret", stranger)
    assert "only for members of the" in out and "999" in out
    pressed = texts(await core_bot.app.core.press(stranger, "anything:1"))
    assert "only for members of the" in pressed
    assert seen == []
    async with core_bot.app.database.session() as session:
        assert (await session.exec(select(func.count()).select_from(Member))).one() == 0


async def test_role_command_allowed_for_the_role(core_bot, seen):
    """A coordinator may use a coordinators' command."""
    out = await command(core_bot, "/secret", actor("carol", Role.COORDINATOR))
    assert out == "the secret plan"
    assert seen == ["carol"]


async def test_role_command_refused_for_another_role(core_bot):
    """A coach is refused a coordinators-only command."""
    out = await command(core_bot, "/secret", actor("cole", Role.COACH))
    assert out == "Sorry — /secret is only for coordinators."


async def test_refusal_names_every_allowed_role(core_bot):
    """A command for two roles names both in its refusal."""
    out = await command(core_bot, "/duty")
    assert out == "Sorry — /duty is only for coaches or coordinators."


async def test_command_for_two_roles_allows_either(core_bot):
    """Either role may use a command given to two roles."""
    assert await command(core_bot, "/duty", actor("cole", Role.COACH)) == "on duty"
    assert await command(core_bot, "/duty", actor("carol", Role.COORDINATOR)) == "on duty"


async def test_refusal_comes_before_argument_checks(core_bot):
    """A refused command is refused even with bad arguments, revealing no usage line."""
    out = await command(core_bot, "/secret extra words")
    assert out == "Sorry — /secret is only for coordinators."


# --- units of work ------------------------------------------------------------------------


async def test_user_error_rolls_back_queued_messages(core_bot):
    """A handler raising UserError after ctx.send leaves nothing queued or delivered."""
    out = await core_bot.say("/fail", as_="alice")
    assert "No can do — try something else." in out
    assert "queued before failing" not in core_bot.transcript
    assert await outbox_rows(core_bot) == 0


async def test_unexpected_error_gives_sorry_and_rolls_back(core_bot):
    """An unexpected exception gives the SORRY text, hides the detail and keeps nothing."""
    out = await core_bot.say("/boom", as_="alice")
    assert SORRY in out
    assert "internal detail" not in out
    assert "queued before crashing" not in core_bot.transcript
    assert await outbox_rows(core_bot) == 0


async def test_committed_message_is_delivered(core_bot):
    """A handler's ctx.send is delivered once its unit of work commits."""
    out = await core_bot.say("/ping", as_="alice")
    assert "ping queued" in out and "[DM alice]\npong by DM" in out


async def test_database_down_says_temporarily_unavailable(core_bot, monkeypatch):
    """With the database down the reply asks to try again and gives the emergency line."""

    @asynccontextmanager
    async def broken_session():
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
        yield  # pragma: no cover

    monkeypatch.setattr(core_bot.app.database, "session", broken_session)
    reply = await core_bot.app.core.command(actor(), "echo", "hi")
    out = texts(reply)
    assert "temporarily unavailable, please try again" in out
    assert core_bot.settings.support.emergency in out


async def test_database_down_direct_message_says_temporarily_unavailable(core_bot, monkeypatch):
    """A DM with the database down gets the same answer, with the emergency line."""

    @asynccontextmanager
    async def broken_session():
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
        yield  # pragma: no cover

    monkeypatch.setattr(core_bot.app.database, "session", broken_session)
    out = texts(await core_bot.app.core.message(actor(), "hello"))
    assert "temporarily unavailable" in out and "999" in out


class _PgError(Exception):
    """What asyncpg raises: an error carrying the server's SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "expected"),
    [
        ("57P03", "temporarily unavailable, please try again"),  # starting up
        ("57P01", "temporarily unavailable, please try again"),  # shutting down
        ("53300", "temporarily unavailable, please try again"),  # no connection slot
        ("42P01", "something went wrong"),  # a real bug: not the database's absence
    ],
)
async def test_database_state_decides_unavailable_or_sorry(
    core_bot, monkeypatch, sqlstate, expected
):
    """PostgreSQL starting, stopping or full means "try again"; a query error means sorry."""

    @asynccontextmanager
    async def failing_session():
        raise DBAPIError("SELECT 1", {}, _PgError(sqlstate))
        yield  # pragma: no cover

    monkeypatch.setattr(core_bot.app.database, "session", failing_session)
    assert expected in texts(await core_bot.app.core.command(actor(), "echo", "hi"))


# --- actions --------------------------------------------------------------------------------


async def test_action_gets_its_typed_argument(core_bot, seen):
    """A button's action id arguments are converted by the handler's signature."""
    reply = await core_bot.app.core.press(actor(), "thing:7")
    assert texts(reply) == "thing 7"
    assert seen == [7]


async def test_unknown_action_id_no_longer_does_anything(core_bot):
    """A forged or unknown action id gets the "no longer does anything" answer."""
    reply = await core_bot.app.core.press(actor(), "nosuch:1")
    assert GONE in texts(reply)


async def test_action_with_wrong_argument_type(core_bot, seen):
    """An action id whose argument is not the right type does nothing."""
    reply = await core_bot.app.core.press(actor(), "thing:seven")
    assert GONE in texts(reply)
    assert seen == []


async def test_action_with_missing_argument(core_bot, seen):
    """An action id missing its argument does nothing."""
    reply = await core_bot.app.core.press(actor(), "thing")
    assert GONE in texts(reply)
    assert seen == []


async def test_action_with_extra_arguments(core_bot, seen):
    """An action id with too many arguments does nothing."""
    reply = await core_bot.app.core.press(actor(), "thing:1:2")
    assert GONE in texts(reply)
    assert seen == []


async def test_role_action_refused_for_a_member(core_bot, seen):
    """A member pressing a coordinators' button is refused, saying who it is for."""
    reply = await core_bot.app.core.press(actor(), "admin")
    assert texts(reply) == "Sorry — that button is only for coordinators."
    assert seen == []


async def test_role_action_allowed_for_the_role(core_bot, seen):
    """A coordinator may press a coordinators' button."""
    reply = await core_bot.app.core.press(actor("carol", Role.COORDINATOR), "admin")
    assert texts(reply) == "admin done"


async def test_form_action_cannot_be_pressed_as_a_button(core_bot, seen):
    """A form's action id sent as a button press does nothing."""
    reply = await core_bot.app.core.press(actor(), "save")
    assert GONE in texts(reply)
    assert seen == []


async def test_button_action_cannot_be_submitted_as_a_form(core_bot, seen):
    """A button's action id sent as a form submission does nothing."""
    reply = await core_bot.app.core.submit(actor(), "thing:1", {"x": "y"})
    assert GONE in texts(reply)
    assert seen == []


# --- forms ----------------------------------------------------------------------------------


async def test_form_submission_reaches_handler_with_values(core_bot, seen):
    """A submission reaches a `values` handler with every value, stripped."""
    reply = await core_bot.app.core.submit(actor(), "save", {"title": "  Hello ", "note": ""})
    assert texts(reply).startswith("saved")
    assert seen == [{"title": "Hello", "note": ""}]


async def test_form_submission_with_an_id_argument(core_bot, seen):
    """A form action id may carry typed arguments before the values."""
    reply = await core_bot.app.core.submit(actor(), "save_for:12", {"title": "x"})
    assert texts(reply) == "saved for 12"
    assert seen == [(12, {"title": "x"})]


NOTE_FORM = Form(
    "save",
    "A note",
    (
        FormField("title", "Title", required=True, max_length=10),
        FormField("note", "Note"),
    ),
)


def test_check_form_strips_values():
    """check_form trims surrounding spaces from every value."""
    assert check_form(NOTE_FORM, {"title": "  Hi  ", "note": " there "}) == {
        "title": "Hi",
        "note": "there",
    }


def test_check_form_required_field_empty():
    """A required field left empty (or only spaces) is refused by its label."""
    with pytest.raises(UserError, match="Title is needed"):
        check_form(NOTE_FORM, {"title": "   "})


def test_check_form_missing_fields_count_as_empty():
    """An optional field missing from the submission comes back empty."""
    assert check_form(NOTE_FORM, {"title": "Hi"}) == {"title": "Hi", "note": ""}


def test_check_form_missing_required_field():
    """A required field missing from the submission is refused."""
    with pytest.raises(UserError, match="Title is needed"):
        check_form(NOTE_FORM, {})


def test_check_form_max_length():
    """A value over its field's max_length is refused, naming the field and the limit."""
    with pytest.raises(UserError, match=r"Title is too long \(11 characters; the most is 10\)"):
        check_form(NOTE_FORM, {"title": "x" * 11})


def test_check_form_max_length_is_after_stripping():
    """Surrounding spaces don't count towards a field's limit."""
    assert check_form(NOTE_FORM, {"title": "   " + "x" * 10 + "   "})["title"] == "x" * 10


def test_check_form_ignores_unknown_fields():
    """Values for fields the form doesn't have are dropped."""
    assert "forged" not in check_form(NOTE_FORM, {"title": "Hi", "forged": "x"})


# --- direct messages -------------------------------------------------------------------------


async def test_direct_message_handlers_run_in_order_first_answer_wins(db):
    """DM handlers run by their order; the first non-None reply wins and later ones don't run."""
    registry = Registry()
    calls: list[str] = []

    @registry.direct_message(order=30)
    async def late(ctx: Context, text: str) -> str:
        calls.append("late")
        return "late answer"

    @registry.direct_message(order=10)
    async def passes(ctx: Context, text: str) -> None:
        calls.append("passes")
        return None

    @registry.direct_message(order=20)
    async def answers(ctx: Context, text: str) -> str | None:
        calls.append("answers")
        return f"heard {text}" if text.startswith("hi") else None

    bot = await ConsoleBot.create(db.url, db.schema, registry=registry)
    try:
        reply = await bot.app.core.message(actor(), "hi there")
        assert texts(reply) == "heard hi there"
        assert calls == ["passes", "answers"]
        calls.clear()
        reply = await bot.app.core.message(actor(), "something else")
        assert texts(reply) == "late answer"
        assert calls == ["passes", "answers", "late"]
    finally:
        await bot.stop()


async def test_direct_message_with_no_handler_answer_is_empty(core_bot):
    """A DM no handler answers gets an empty reply."""
    reply = await core_bot.app.core.message(actor(), "anyone?")
    assert reply.messages == [] and reply.form is None


# --- split_words ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("one two  three", ["one", "two", "three"]),
        ('"two words" three', ["two words", "three"]),
        ("“two words” three", ["two words", "three"]),
        ("I'm fine", ["I'm", "fine"]),
        ("I’m fine, it’s ok", ["I’m", "fine,", "it’s", "ok"]),
        ("I'm #1 fan", ["I'm", "#1", "fan"]),
        ("", []),
    ],
)
def test_split_words(text, words):
    """split_words honours double and smart quotes and treats apostrophes as letters."""
    assert split_words(text) == words


def test_split_words_unbalanced_double_quote():
    """An unbalanced double quote groups nothing: every word stands as typed."""
    assert split_words('say "hello there') == ["say", '"hello', "there"]


# --- quote_user_text --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mention",
    [
        "@everyone",
        "@here",
        "@channel",
        "@EVERYONE",
        "<!channel>",
        "<!here>",
        "<!everyone>",
        "<!subteam^S123>",
        "<@&123>",
        "<#123>",
        "<@U1>",
        "<@!123>",
    ],
)
def test_quote_user_text_neutralises_mentions(mention):
    """Every mass, role, channel or user mention is broken, and reads the same without the ZWSP."""
    quoted = quote_user_text(f"hey {mention} look")
    assert mention not in quoted
    assert quoted.replace(ZWSP, "") == f"hey {mention} look"


def test_quote_user_text_keeps_ordinary_text():
    """Ordinary text, including < and > in sums, is unchanged."""
    text = "We need 3 < 5 staff > 2 rooms, and it's fine."
    assert quote_user_text(text) == text


def test_quote_user_text_keeps_email_addresses():
    """An e-mail address is left exactly as written."""
    assert quote_user_text("write to jo.smith@example.org") == "write to jo.smith@example.org"


# --- Reply, Message, Button -----------------------------------------------------------------


def test_reply_of_none_is_empty():
    """None becomes an empty reply."""
    assert Reply.of(None) == Reply()


def test_reply_of_text_is_one_message():
    """A string becomes one message."""
    assert Reply.of("hi") == Reply(messages=[Message("hi")])


def test_reply_of_message_is_one_message():
    """A Message becomes a reply holding it."""
    message = Message("hi", (Button("Go", "go"),))
    assert Reply.of(message) == Reply(messages=[message])


def test_reply_of_form_opens_it():
    """A Form becomes a reply that opens it."""
    assert Reply.of(NOTE_FORM) == Reply(form=NOTE_FORM)


def test_reply_of_reply_is_itself():
    """A Reply is returned unchanged."""
    reply = Reply(update=Message("new"))
    assert Reply.of(reply) is reply


def test_reply_of_something_else_is_an_error():
    """Anything else a handler returns is a TypeError naming its type."""
    with pytest.raises(TypeError, match="int"):
        Reply.of(42)  # type: ignore[arg-type]


def test_message_json_round_trip_with_buttons_and_binary_attachment():
    """A message with styled buttons and a binary file survives to_json/from_json exactly."""
    message = Message(
        "Here you are",
        (Button("Accept", "case.accept:4", Style.PRIMARY), Button("Pass", "case.pass:4")),
        Attachment("data.bin", bytes(range(256)), "application/octet-stream"),
    )
    assert Message.from_json(message.to_json()) == message


def test_message_json_round_trip_plain():
    """A plain text message survives to_json/from_json."""
    assert Message.from_json(Message("just text").to_json()) == Message("just text")


def test_button_with_over_long_action_id_is_refused():
    """A Button whose action id is longer than 100 characters is refused."""
    Button("ok", "a" * MAX_ACTION_ID)
    with pytest.raises(ValueError, match="longer than 100"):
        Button("too long", "a" * (MAX_ACTION_ID + 1))


def test_message_with_too_many_buttons_is_refused():
    """A Message with more than 25 buttons is refused."""
    with pytest.raises(ValueError, match="more than 25"):
        Message("x", tuple(Button(str(i), f"b:{i}") for i in range(26)))


# --- preface ----------------------------------------------------------------------------------


async def test_preface_comes_before_the_answer(core_bot):
    """A command's preface is the first message of its reply, the answer after it."""
    reply = await core_bot.app.core.command(actor(), "helpme", "2")
    assert [m.text for m in reply.messages] == ["FIRST HeadsUp", "helped 2"]


async def test_preface_comes_before_a_usage_error(core_bot):
    """Bad arguments still get the preface first."""
    reply = await core_bot.app.core.command(actor(), "helpme", "lots")
    assert reply.messages[0].text == "FIRST HeadsUp"
    assert "whole number" in reply.messages[1].text


async def test_preface_comes_before_a_handler_refusal(core_bot):
    """A UserError from the handler is answered after the preface."""
    reply = await core_bot.app.core.command(actor(), "helpme", "9")
    assert [m.text for m in reply.messages] == ["FIRST HeadsUp", "too many"]


async def test_preface_comes_before_too_long_input(core_bot):
    """Text over the limit is refused after the preface."""
    reply = await core_bot.app.core.command(actor(), "helpme", "1" + " " * MAX_INPUT)
    assert reply.messages[0].text == "FIRST HeadsUp" and "a bit long" in reply.messages[1].text


async def test_preface_survives_the_database_being_down(core_bot, monkeypatch):
    """With the database down the preface still comes first, then "temporarily unavailable"."""

    @asynccontextmanager
    async def broken_session():
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
        yield  # pragma: no cover

    monkeypatch.setattr(core_bot.app.database, "session", broken_session)
    reply = await core_bot.app.core.command(actor(), "helpme")
    assert reply.messages[0].text == "FIRST HeadsUp"
    assert "temporarily unavailable" in reply.messages[1].text


async def test_commands_without_a_preface_answer_alone(core_bot):
    """No preface, no extra message."""
    reply = await core_bot.app.core.command(actor(), "echo", "hi")
    assert [m.text for m in reply.messages] == ["word='hi'"]


# --- a request delivered twice ----------------------------------------------------------------


async def test_a_request_delivered_twice_is_handled_once(core_bot):
    """The same event id a second time (a platform's resend, or another instance's copy) gets a
    reply marked repeat, and changes nothing."""
    first = await core_bot.app.core.command(actor(), "ping", event_id="evt-1")
    again = await core_bot.app.core.command(actor(), "ping", event_id="evt-1")
    assert "ping queued" in texts(first) and not first.repeat
    assert again.repeat and again.messages == []
    assert await outbox_rows(core_bot) == 1


async def test_each_platform_has_its_own_event_ids(core_bot):
    """One id on two platforms is two requests."""
    await core_bot.app.core.command(actor(), "ping", event_id="evt-1")
    other = Actor("slack", "U1", "alice")
    assert not (await core_bot.app.core.command(other, "ping", event_id="evt-1")).repeat


async def test_a_refused_request_leaves_no_record_and_is_answered_again(core_bot):
    """A request that changed nothing (refused) is not recorded: its repeat is answered too."""
    for _ in range(2):
        reply = await core_bot.app.core.command(actor(), "secret", event_id="evt-2")
        assert not reply.repeat and "only for coordinators" in texts(reply)


async def test_a_preface_is_not_added_to_a_repeat(core_bot):
    """A repeated command that has a preface answers nothing at all."""
    await core_bot.app.core.command(actor(), "helpme", event_id="evt-3")
    again = await core_bot.app.core.command(actor(), "helpme", event_id="evt-3")
    assert again.repeat and again.messages == []
