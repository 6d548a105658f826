"""The console platform (SPEC §5): every rule of what it reads and what it prints."""

from __future__ import annotations

import asyncio
import io
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated

import pytest
import structlog
from sqlalchemy.exc import OperationalError

from bot.app import App
from bot.clock import Clock
from bot.core import REST, Context, Registry, Role, Services
from bot.logs import redact
from bot.ui import (
    Attachment,
    Button,
    Channel,
    Form,
    FormField,
    Message,
    Reply,
    ToChannel,
    ToMember,
)
from tests.harness import START, ConsoleBot, make_settings

DUE_AT = START + timedelta(hours=1)

CALENDAR = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n"


def build_registry(seen: list) -> Registry:
    """Test commands that send to every kind of place; `seen` records presses, forms and DMs."""
    registry = Registry()
    fired: dict[str, object] = {}

    @registry.command("buttons")
    async def buttons(ctx: Context, tag: str = "x") -> Message:
        """A private reply with Accept / Pass buttons."""
        return Message(
            f"Choose ({tag})",
            (Button("Accept", f"pick:{tag}-accept"), Button("Pass", f"pick:{tag}-pass")),
        )

    @registry.command("two")
    async def two(ctx: Context) -> Message:
        """Two buttons whose labels both contain "accept"."""
        return Message(
            "Two", (Button("Accept later", "pick:later"), Button("Accept now", "pick:now"))
        )

    @registry.command("going")
    async def going(ctx: Context) -> Message:
        """A reply with only a Going button."""
        return Message("Event", (Button("Going", "pick:going"),))

    @registry.action("pick")
    async def pick(ctx: Context, choice: str) -> str:
        seen.append(("pick", ctx.actor.user_id, choice))
        return f"you chose {choice}"

    @registry.command("announce")
    async def announce(ctx: Context, text: Annotated[str, REST]) -> str:
        """Post in #announcements under a key, with a Going button."""
        await ctx.send(
            ToChannel(Channel.ANNOUNCEMENTS),
            Message(text, (Button("Going", "rsvp:going"),)),
            key="ann",
        )
        return "announced"

    @registry.command("reannounce")
    async def reannounce(ctx: Context, text: Annotated[str, REST]) -> str:
        """Edit the announcement: new text, a Maybe button instead of Going."""
        await ctx.edit("ann", Message(text, (Button("Maybe", "rsvp:maybe"),)))
        return "edited"

    @registry.command("escalate")
    async def escalate(ctx: Context) -> str:
        """Post in #coordinators."""
        await ctx.send(ToChannel(Channel.COORDINATORS), Message("Case H-1 needs someone"))
        return "escalated"

    @registry.action("rsvp")
    async def rsvp(ctx: Context, answer: str) -> str:
        seen.append(("rsvp", ctx.actor.user_id, answer))
        return f"rsvp {answer}"

    @registry.command("dm")
    async def dm(ctx: Context) -> str:
        """Queue a DM to the asker with Accept / Pass / Swap buttons."""
        await ctx.send(
            ToMember(ctx.member_id),
            Message(
                f"Offer for {ctx.actor.user_id}",
                (
                    Button("Accept", "pick:dm-accept"),
                    Button("Pass", "pick:dm-pass"),
                    Button("Swap", "swap"),
                ),
            ),
        )
        return "offer queued"

    @registry.action("swap")
    async def swap(ctx: Context) -> Reply:
        seen.append(("swap", ctx.actor.user_id))
        return Reply(
            messages=[Message("swapped")],
            update=Message("Updated offer", (Button("Undo", "pick:undo"),)),
        )

    @registry.command("secret", roles={Role.COORDINATOR})
    async def secret(ctx: Context) -> str:
        """Coordinators only."""
        return f"secret for {ctx.actor.user_id}"

    @registry.command("whoami")
    async def whoami(ctx: Context) -> str:
        """Say who is asking and their roles."""
        roles = ",".join(sorted(r.value for r in ctx.actor.roles)) or "member"
        return f"{ctx.actor.user_id} is {roles}"

    @registry.command("file")
    async def file(ctx: Context) -> Message:
        """A text attachment."""
        return Message(
            "Your calendar", attachment=Attachment("events.ics", CALENDAR, "text/calendar")
        )

    @registry.command("binary")
    async def binary(ctx: Context) -> Message:
        """A binary attachment."""
        return Message(
            "Your data",
            attachment=Attachment("data.bin", b"\x00\xffBINARY\x01", "application/octet-stream"),
        )

    @registry.command("survey")
    async def survey(ctx: Context) -> Form:
        """Open a three-field form."""
        return Form(
            "survey",
            "Survey",
            (
                FormField("title", "Title", required=True),
                FormField("note", "Note"),
                FormField("place", "Place"),
            ),
        )

    @registry.command("resurvey")
    async def resurvey(ctx: Context) -> Form:
        """Open the form prefilled, as an edit form is."""
        return Form(
            "survey",
            "Survey",
            (
                FormField("title", "Title", required=True, value="Old title"),
                FormField("note", "Note", value="old note"),
                FormField("place", "Place"),
            ),
        )

    @registry.form("survey")
    async def survey_done(ctx: Context, values: dict[str, str]) -> str:
        seen.append(("form", ctx.actor.user_id, values))
        return "thanks for the survey"

    @registry.direct_message()
    async def heard(ctx: Context, text: str) -> str:
        seen.append(("dm", ctx.actor.user_id, text))
        return f"heard {len(text)} characters"

    async def next_due(services: Services):
        return None if "at" in fired else DUE_AT

    @registry.due("fixed", next_due=next_due)
    async def fixed(services: Services, now) -> int:
        if "at" in fired or now < DUE_AT:
            return 0
        fired["at"] = now
        seen.append(("due", now))
        async with services.database.session() as session:
            await services.outbox.send(
                session, now, ToChannel(Channel.ANNOUNCEMENTS), Message("The hour has come")
            )
            await session.commit()
        return 1

    return registry


@pytest.fixture
def seen() -> list:
    return []


@pytest.fixture
async def cbot(make_bot, seen) -> ConsoleBot:
    """A console bot on a registry of test commands; the user starts as alice."""
    bot = await make_bot(registry=build_registry(seen))
    bot.console.user = "alice"
    return bot


# --- where a message went ---------------------------------------------------------------------


async def test_plain_line_is_a_dm_to_the_bot(cbot, seen):
    """A line that is neither a command nor a console verb is a DM from the current user."""
    out = await cbot.say("how are you?")
    assert seen == [("dm", "alice", "how are you?")]
    assert out == "[DM alice]\nheard 12 characters\n\n"


async def test_command_reply_is_ephemeral(cbot):
    """A command's reply is printed under [ephemeral NAME]."""
    out = await cbot.say("/whoami")
    assert out == "[ephemeral alice]\nalice is member\n\n"


async def test_queued_dm_is_headed_dm(cbot):
    """A message sent to a member through the outbox is headed [DM NAME]."""
    out = await cbot.say("/dm")
    assert "[DM alice]\nOffer for alice\n" in out


async def test_announcement_is_headed_announcements(cbot):
    """A post to the announcements channel is headed [#announcements]."""
    out = await cbot.say("/announce Coffee morning")
    assert "[#announcements]\nCoffee morning\n[1] Going\n" in out


async def test_coordinator_post_is_headed_coordinators(cbot):
    """A post to the coordinators channel is headed [#coordinators]."""
    out = await cbot.say("/escalate")
    assert "[#coordinators]\nCase H-1 needs someone\n" in out


async def test_buttons_are_listed_numbered_on_one_line(cbot):
    """Buttons are listed as `[1] Accept  [2] Pass`."""
    out = await cbot.say("/buttons")
    assert out == "[ephemeral alice]\nChoose (x)\n[1] Accept  [2] Pass\n\n"


async def test_empty_line_does_nothing(cbot, seen):
    """An empty line is not sent anywhere and prints nothing."""
    assert await cbot.say("") == ""
    assert seen == []


async def test_slash_alone_gets_a_note(cbot):
    """A bare slash gets a [console] note on how to type a command."""
    out = await cbot.say("/")
    assert out.startswith("[console] ")


# --- :as -----------------------------------------------------------------------------------


async def test_as_switches_user(cbot):
    """`:as NAME` makes later lines come from NAME."""
    await cbot.say(":as bob")
    out = await cbot.say("/whoami")
    assert out == "[ephemeral bob]\nbob is member\n\n"


async def test_as_takes_roles_from_console_config(cbot):
    """`:as` gives the user the roles listed under [console]."""
    out = await cbot.say(":as coordinator", "/whoami", ":as coach", "/whoami")
    assert "coordinator is coordinator" in out and "coach is coach" in out


async def test_as_coordinator_may_use_coordinator_command(cbot):
    """A user listed as coordinator may run a coordinators' command; a member may not."""
    refused = await cbot.say("/secret")
    allowed = await cbot.say(":as coordinator", "/secret")
    assert "only for coordinators" in refused
    assert "secret for coordinator" in allowed


async def test_as_without_a_name_gets_a_note(cbot):
    """`:as` with no name gets a usage note and keeps the user."""
    out = await cbot.say(":as")
    assert out == "[console] usage: :as NAME\n"
    assert cbot.console.user == "alice"


# --- :click ----------------------------------------------------------------------------------


async def test_click_text_presses_matching_button(cbot, seen):
    """`:click TEXT` presses the button whose label contains TEXT, ignoring case."""
    await cbot.say("/buttons")
    out = await cbot.say(":click PAS")
    assert seen == [("pick", "alice", "x-pass")]
    assert "you chose x-pass" in out


async def test_click_text_presses_the_first_match(cbot, seen):
    """With two matching labels on a message, the first is pressed."""
    await cbot.say("/two")
    await cbot.say(":click accept")
    assert seen == [("pick", "alice", "later")]


async def test_click_text_uses_the_latest_message(cbot, seen):
    """Of two messages with a matching button, the latest one's is pressed."""
    await cbot.say("/buttons old", "/buttons new")
    await cbot.say(":click accept")
    assert seen == [("pick", "alice", "new-accept")]


async def test_click_text_skips_newer_messages_without_such_a_button(cbot, seen):
    """The latest message that *has* a matching button is used, not simply the latest."""
    await cbot.say("/going", "/buttons")
    await cbot.say(":click going")
    assert seen == [("pick", "alice", "going")]


async def test_click_never_presses_someone_elses_ephemeral(cbot, seen):
    """A newer private reply to someone else is invisible to :click."""
    await cbot.say("/buttons mine", as_="alice")
    await cbot.say("/buttons bobs", as_="bob")
    await cbot.say(":click accept", as_="alice")
    assert seen == [("pick", "alice", "mine-accept")]


async def test_click_never_presses_someone_elses_dm(cbot, seen):
    """Another user's DM buttons cannot be clicked."""
    await cbot.say("/dm", as_="bob")
    out = await cbot.say(":click swap", as_="alice")
    assert out == "[console] no button labelled 'swap' to click\n"
    assert seen == []


async def test_click_never_presses_someone_elses_dm_by_number(cbot, seen):
    """`:click N` ignores other users' DMs too."""
    await cbot.say("/dm", as_="bob")
    out = await cbot.say(":click 1", as_="alice")
    assert out == "[console] there is no message with buttons to click\n"
    assert seen == []


async def test_click_presses_a_channel_post_for_anyone(cbot, seen):
    """Anyone can press a button on a channel post, and the reply is private to them."""
    await cbot.say("/announce Coffee", as_="alice")
    out = await cbot.say(":click going", as_="bob")
    assert seen == [("rsvp", "bob", "going")]
    assert out.startswith("[ephemeral bob]\nrsvp going\n")


async def test_click_on_a_dm_replies_in_the_dm(cbot, seen):
    """Pressing a button in a DM answers in that DM."""
    await cbot.say("/dm")
    out = await cbot.say(":click accept")
    assert seen == [("pick", "alice", "dm-accept")]
    assert out.startswith("[DM alice]\nyou chose dm-accept\n")


async def test_click_number_presses_that_button(cbot, seen):
    """`:click N` presses button N of the latest message with buttons."""
    await cbot.say("/buttons")
    await cbot.say(":click 2")
    assert seen == [("pick", "alice", "x-pass")]


async def test_click_with_nothing_to_click(cbot, seen):
    """Clicking when no visible message has buttons gives a [console] note."""
    out = await cbot.say(":click 1")
    assert out == "[console] there is no message with buttons to click\n"
    assert seen == []


async def test_click_text_with_no_match(cbot, seen):
    """Clicking a label nobody has gives a [console] note."""
    await cbot.say("/buttons")
    out = await cbot.say(":click maybe")
    assert out == "[console] no button labelled 'maybe' to click\n"
    assert seen == []


@pytest.mark.parametrize("number", ["0", "3"])
async def test_click_number_out_of_range(cbot, seen, number):
    """A button number the message doesn't have gives a [console] note and presses nothing."""
    await cbot.say("/buttons")
    out = await cbot.say(f":click {number}")
    assert out == "[console] that message has buttons 1 to 2\n"
    assert seen == []


async def test_click_without_argument(cbot):
    """`:click` alone gives a usage note."""
    assert (await cbot.say(":click")).startswith("[console] usage: :click")


# --- forms ----------------------------------------------------------------------------------


async def test_form_asks_fields_in_order_one_line_each(cbot, seen):
    """A form asks its first field, then each next one after a line is typed."""
    first = await cbot.say("/survey")
    assert first == "[form Survey]\nTitle:\n"
    second = await cbot.say("Spring term")
    assert second == "Note (optional — an empty line leaves it empty):\n"
    third = await cbot.say("")
    assert third == "Place (optional — an empty line leaves it empty):\n"
    assert seen == []


async def test_form_submission_reaches_the_handler(cbot, seen):
    """After the last field the values (an empty line left empty) reach the form handler."""
    out = await cbot.say("/survey", "Spring term", "", "Main hall")
    assert seen == [("form", "alice", {"title": "Spring term", "note": "", "place": "Main hall"})]
    assert out.endswith("[ephemeral alice]\nthanks for the survey\n\n")


async def test_form_shows_a_prefilled_value(cbot, seen):
    """A prefilled field shows its current value and that an empty line keeps it."""
    out = await cbot.say("/resurvey")
    assert out == "[form Survey]\nTitle [now: Old title] (an empty line keeps it):\n"


async def test_form_empty_line_keeps_a_prefilled_value(cbot, seen):
    """An empty line leaves a prefilled field as it was; a typed line replaces it."""
    await cbot.say("/resurvey", "", "new note", "")
    assert seen == [("form", "alice", {"title": "Old title", "note": "new note", "place": ""})]


async def test_form_line_is_an_answer_not_a_dm(cbot, seen):
    """While a form is open, a line answers it rather than going to the bot as a DM."""
    await cbot.say("/survey", "hello")
    assert ("dm", "alice", "hello") not in seen


async def test_line_after_form_is_a_dm_again(cbot, seen):
    """Once a form is submitted, the next plain line is a DM again."""
    await cbot.say("/survey", "T", "", "", "after")
    assert seen[-1] == ("dm", "alice", "after")


# --- :advance --------------------------------------------------------------------------------


async def test_advance_runs_due_job_at_its_moment(cbot, seen):
    """`:advance 90m` runs a job due in an hour at that moment and prints what it sent."""
    out = await cbot.say(":advance 90m")
    assert seen == [("due", DUE_AT)]
    assert "[#announcements]\nThe hour has come\n" in out
    assert cbot.clock.now() == START + timedelta(minutes=90)


async def test_advance_short_of_due_time_runs_nothing(cbot, seen):
    """Advancing less than the time to a job runs nothing, but moves the clock."""
    out = await cbot.say(":advance 30m")
    assert seen == [] and out == ""
    assert cbot.clock.now() == START + timedelta(minutes=30)


async def test_advance_with_bad_duration(cbot, seen):
    """`:advance` with a bad duration gives a usage note and leaves the clock alone."""
    out = await cbot.say(":advance soon")
    assert out.startswith("[console] usage: :advance DURATION")
    assert cbot.clock.now() == START
    assert seen == []


async def test_advance_without_duration(cbot):
    """`:advance` alone gives a usage note and leaves the clock alone."""
    out = await cbot.say(":advance")
    assert out.startswith("[console] usage: :advance DURATION")
    assert cbot.clock.now() == START


# --- :echo and unknown verbs -----------------------------------------------------------------


async def test_echo_prints_text(cbot):
    """`:echo TEXT` prints TEXT and nothing else."""
    assert await cbot.say(":echo --- step 2 ---") == "--- step 2 ---\n"


async def test_unknown_console_verb_gets_a_note(cbot, seen):
    """An unknown `:verb` gets a [console] note and is not sent as a DM."""
    out = await cbot.say(":frob")
    assert out.startswith("[console] unknown console command :frob")
    assert seen == []


# --- files ----------------------------------------------------------------------------------


async def test_text_attachment_is_printed(cbot):
    """A text attachment prints `[file NAME]` then its content, one line per line."""
    out = await cbot.say("/file")
    assert out == (
        "[ephemeral alice]\nYour calendar\n[file events.ics]\n"
        "BEGIN:VCALENDAR\nVERSION:2.0\nEND:VCALENDAR\n\n"
    )


async def test_binary_attachment_prints_only_its_name(cbot):
    """A binary attachment prints only its `[file NAME]` line."""
    out = await cbot.say("/binary")
    assert out == "[ephemeral alice]\nYour data\n[file data.bin]\n\n"


# --- edits ----------------------------------------------------------------------------------


async def test_edited_channel_post_is_printed_again_whole(cbot):
    """An edit prints the whole new message headed [edited #announcements]."""
    await cbot.say("/announce Coffee at 10")
    out = await cbot.say("/reannounce Coffee at 11")
    assert "[edited #announcements]\nCoffee at 11\n[1] Maybe\n" in out


async def test_click_sees_edited_buttons(cbot, seen):
    """After an edit, :click finds the new buttons and not the old ones."""
    await cbot.say("/announce Coffee", "/reannounce Coffee, moved")
    gone = await cbot.say(":click going")
    await cbot.say(":click maybe")
    assert gone == "[console] no button labelled 'going' to click\n"
    assert seen == [("rsvp", "alice", "maybe")]


async def test_press_with_update_prints_edited_dm(cbot, seen):
    """A press whose reply has `update` prints the message again as [edited DM NAME]."""
    await cbot.say("/dm")
    out = await cbot.say(":click swap")
    assert "[edited DM alice]\nUpdated offer\n[1] Undo\n" in out
    assert "[DM alice]\nswapped\n" in out


async def test_click_sees_buttons_of_an_update(cbot, seen):
    """After a press updates its message, :click presses the updated buttons."""
    await cbot.say("/dm", ":click swap")
    await cbot.say(":click undo")
    assert seen[-1] == ("pick", "alice", "undo")


# --- ordering and the input loop ----------------------------------------------------------


async def test_messages_caused_by_a_line_come_before_the_next_line(cbot):
    """Outbox messages a line causes are printed before the next line is handled."""
    out = await cbot.say("/dm", ":echo NEXT")
    assert out.index("Offer for alice") < out.index("NEXT")


async def test_run_reads_until_end_of_input(db, seen):
    """`run()` on a piped script handles every line in order and returns at end of input."""
    out = io.StringIO()
    app = App(
        make_settings(db.url),
        clock=Clock.frozen(START),
        registry=build_registry(seen),
        console_in=io.StringIO(":as bob\n/dm\n:echo MARK\n:click accept\n"),
        console_out=out,
        db_schema=db.schema,
    )
    await asyncio.wait_for(app.run(), timeout=60)
    text = out.getvalue()
    assert text.index("[DM bob]\nOffer for bob") < text.index("MARK")
    assert text.index("MARK") < text.index("you chose dm-accept")
    assert seen == [("pick", "bob", "dm-accept")]


def break_database(cbot: ConsoleBot, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every new session fail as an unreachable database does."""

    @asynccontextmanager
    async def broken_session():
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
        yield  # pragma: no cover

    monkeypatch.setattr(cbot.app.database, "session", broken_session)


async def test_database_down_keeps_the_console_running(cbot, monkeypatch):
    """With the database down a line gets the 'unavailable' answer; the console keeps going."""
    break_database(cbot, monkeypatch)
    out = await cbot.say("hello")
    assert "temporarily unavailable" in out
    monkeypatch.undo()
    assert "heard 5 characters" in await cbot.say("again")


async def test_database_down_advance_gives_a_note(cbot, monkeypatch):
    """`:advance` with the database down gives a [console] note instead of crashing."""
    break_database(cbot, monkeypatch)
    out = await cbot.say(":advance 90m")
    assert out.startswith("[console] could not finish :advance")


async def test_chat_text_never_reaches_the_log(cbot):
    """What people type is never logged (after redaction), though the events are."""
    with structlog.testing.capture_logs() as captured:
        await cbot.say("my private worry", "/announce secret plans", ":click going")
    events = [redact(None, "info", dict(entry)) for entry in captured]
    names = {entry["event"] for entry in events}
    assert {"direct_message", "command", "action", "delivery.sent"} <= names
    logged = repr(events)
    for text in ("private worry", "secret plans"):
        assert text not in logged


async def test_edit_after_restart_never_touches_another_message(cbot, seen):
    """After a restart, an edit of a message printed before it does not replace a new one."""
    await cbot.say("/announce Coffee at 10")
    await cbot.restart()
    await cbot.say("/buttons fresh", as_="alice")
    out = await cbot.say("/reannounce Coffee at 11")
    assert "[edited ephemeral" not in out
    await cbot.say(":click accept")
    assert seen == [("pick", "alice", "fresh-accept")]
