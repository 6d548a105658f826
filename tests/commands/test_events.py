"""Video-call events, through the console with the injected clock.

The harness starts at Monday 2026-01-05 09:00 UTC (= Europe/London, the network's zone). The
usual event here is Tuesday 13 January 19:00–20:00: its 24-hour reminder falls due on Monday
12 January at 19:00 and its 15-minute one on Tuesday at 18:45.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest
import structlog
from sqlmodel import col, select

from bot.core import Actor, Role
from bot.ui import Reply
from storage.events import Event, EventReminder, EventRsvp, EventSeries
from storage.models import OutboxMessage
from tests.harness import ConsoleBot

COORDINATOR = "coordinator"
LINK = "https://meet.example/heads-together"
WHEN = "Tuesday 13 January, 19:00–20:00 (UK time)"
REMINDER = "A reminder:"
LONDON = ZoneInfo("Europe/London")
START = datetime(2026, 1, 13, 19, tzinfo=UTC)

_HEADER = re.compile(
    r"^\[((?:edited )?(?:#[\w-]+|DM [^\]\n]+|ephemeral [^\]\n]+)|form [^\]\n]+)\]$", re.M
)


# --- helpers ----------


async def create(
    bot: ConsoleBot,
    title: str = "Heads together",
    start: str = "2026-01-13 19:00",
    duration: str = "60",
    link: str = LINK,
    description: str = "A relaxed hour to share what's on our minds.",
    until: str = "",
) -> str:
    """Fill in the /event create form as the coordinator, one field per line."""
    return await bot.say(
        "/event create", title, start, duration, link, description, until, as_=COORDINATOR
    )


async def create_series(bot: ConsoleBot, until: str = "2026-06-30", **fields: str) -> str:
    return await create(bot, until=until, **fields)


def blocks(text: str, where: str) -> list[str]:
    """The bodies of the printed blocks headed exactly `where` ("#announcements", "DM alice")."""
    parts = _HEADER.split(text)
    pairs = zip(parts[1::2], parts[2::2], strict=True)
    return [body.strip("\n") for head, body in pairs if head == where]


def actor(name: str) -> Actor:
    roles = {Role.COORDINATOR} if name == COORDINATOR else set()
    return Actor("console", name, name, frozenset(roles))


async def press(bot: ConsoleBot, name: str, action: str) -> str:
    """Press a button by its action id (any message's), as `name`; return the private answer
    and everything it caused to be printed."""
    reply = await bot.app.core.press(actor(name), action)
    before = len(bot.transcript)
    await bot.app.settle()
    return "\n".join(texts(reply)) + "\n" + bot.transcript[before:]


def texts(reply: Reply) -> list[str]:
    found = [m.text for m in reply.messages]
    return found + ([reply.update.text] if reply.update is not None else [])


async def rsvp(bot: ConsoleBot, name: str, answer: str, event_id: int = 1) -> str:
    return await press(bot, name, f"event.rsvp:{event_id}:{answer}")


async def command(bot: ConsoleBot, name: str, group: str, text: str = "") -> Reply:
    return await bot.app.core.command(actor(name), group, text)


async def events_of(bot: ConsoleBot) -> list[Event]:
    async with bot.app.database.session() as session:
        return list((await session.exec(select(Event).order_by(col(Event.id)))).all())


async def event(bot: ConsoleBot, event_id: int = 1) -> Event:
    async with bot.app.database.session() as session:
        found = await session.get(Event, event_id)
    assert found is not None
    return found


async def reminders_of(bot: ConsoleBot, event_id: int = 1) -> list[EventReminder]:
    async with bot.app.database.session() as session:
        return list(
            (
                await session.exec(
                    select(EventReminder)
                    .where(EventReminder.event_id == event_id)
                    .order_by(col(EventReminder.due_at))
                )
            ).all()
        )


def local_starts(events: list[Event]) -> list[str]:
    return [f"{e.starts_at.astimezone(LONDON):%a %d %b %H:%M}" for e in events]


def calendar_of(reply: Reply) -> icalendar.Calendar:
    [attachment] = [m.attachment for m in reply.messages if m.attachment is not None]
    assert attachment.content_type == "text/calendar"
    return icalendar.Calendar.from_ical(attachment.content)


async def event_calendar(bot: ConsoleBot, name: str, event_id: int = 1) -> icalendar.Calendar:
    return calendar_of(await bot.app.core.press(actor(name), f"event.ics:{event_id}"))


def vevents(cal: icalendar.Calendar) -> list[icalendar.Event]:
    return list(cal.walk("VEVENT"))


# --- creating ----------


async def test_create_form_asks_the_six_fields_in_order(bot: ConsoleBot):
    """/event create opens a form: title, start, duration, link, description, repeat until."""
    out = await create(bot)
    prompts = [line.split(" ")[0] for line in out.splitlines() if line.endswith(":")]
    assert prompts == ["Title:", "Start", "Duration", "Video", "Description", "Repeat"]
    assert "Start (YYYY-MM-DD HH:MM, UK time):" in out
    reply = await command(bot, COORDINATOR, "event", "create")
    assert reply.form is not None
    assert [f.name for f in reply.form.fields] == [
        "title",
        "start",
        "duration",
        "link",
        "description",
        "repeat_until",
    ]


async def test_title_field_limit_matches_the_check(bot: ConsoleBot):
    """The form tells the platform the same 200-character title limit the handler enforces."""
    reply = await command(bot, COORDINATOR, "event", "create")
    assert reply.form is not None
    title = reply.form.fields[0]
    assert (title.name, title.max_length, title.required) == ("title", 200, True)
    assert len(reply.form.fields) == 6


async def test_create_announces_details_and_rsvp_buttons(bot: ConsoleBot):
    """The announcement has title, time, duration, description, id and three counted buttons."""
    out = await create(bot)
    [post] = blocks(out, "#announcements")
    assert "📅 Heads together (E1)" in post
    assert f"{WHEN} · 1 hour" in post
    assert "A relaxed hour to share what's on our minds." in post
    assert "[1] Going (0)  [2] Maybe (0)  [3] Can't go (0)  [4] Add to calendar" in post


async def test_create_confirms_privately_and_stores_the_event(bot: ConsoleBot):
    """The coordinator is told privately; the event is stored in UTC with its end."""
    out = await create(bot)
    [confirmation] = blocks(out, "ephemeral coordinator")
    assert f"E1 “Heads together” is announced: {WHEN}" in confirmation
    [stored] = await events_of(bot)
    assert (stored.starts_at, stored.ends_at) == (START, START + timedelta(hours=1))
    assert stored.status == "scheduled" and stored.sequence == 0 and stored.series_id is None


async def test_create_from_command_text(bot: ConsoleBot):
    """`/event create "TITLE" "YYYY-MM-DD HH:MM" DURATION LINK "DESCRIPTION"` needs no form."""
    out = await bot.say(
        f'/event create "Heads together" "2026-01-13 19:00" 1h30m {LINK} "Bring a cuppa"',
        as_=COORDINATOR,
    )
    assert "[form" not in out
    [post] = blocks(out, "#announcements")
    assert "Tuesday 13 January, 19:00–20:30 (UK time) · 1 hour 30 minutes" in post
    assert "Bring a cuppa" in post


async def test_create_from_command_text_accepts_an_unquoted_start(bot: ConsoleBot):
    """The start typed without its quotes is still read as one date and time."""
    out = await bot.say(
        f'/event create "Heads together" 2026-01-13 19:00 45 {LINK}', as_=COORDINATOR
    )
    [post] = blocks(out, "#announcements")
    assert "Tuesday 13 January, 19:00–19:45 (UK time) · 45 minutes" in post


async def test_command_text_with_missing_parts_explains_and_creates_nothing(bot: ConsoleBot):
    """Too few words get the one-line form and a pointer to the form; nothing is created."""
    out = await bot.say('/event create "Heads together" "2026-01-13 19:00"', as_=COORDINATOR)
    assert '`/event create "TITLE" "YYYY-MM-DD HH:MM" DURATION LINK ["DESCRIPTION"]`' in out
    assert "Nothing was created" in out
    assert await events_of(bot) == []


async def test_command_text_is_checked_like_the_form(bot: ConsoleBot):
    """A bad value given as command text gets the same kind answer as in the form."""
    out = await bot.say(
        f'/event create "Heads together" "2026-02-30 19:00" 60 {LINK}', as_=COORDINATOR
    )
    assert "2026-02-30 isn't a date on the calendar" in out
    assert await events_of(bot) == []


@pytest.mark.parametrize("name", ["alice", "coach"])
async def test_non_coordinators_are_refused_before_any_form(bot: ConsoleBot, name: str):
    """A member or a coach typing /event create is refused at once; no form opens."""
    out = await bot.say("/event create", as_=name)
    assert "Sorry — /event create is only for coordinators." in out
    assert "[form" not in out


@pytest.mark.parametrize("text", ["edit E1", "cancel E1"])
async def test_members_cannot_edit_or_cancel(bot: ConsoleBot, text: str):
    """Editing and cancelling are for coordinators; a member changes nothing."""
    await create(bot)
    out = await bot.say(f"/event {text}", as_="alice")
    assert "only for coordinators" in out and "[form" not in out
    assert (await event(bot)).status == "scheduled"


async def test_member_cannot_press_a_forged_show_link_button(bot: ConsoleBot):
    """The *Show the link publicly* action refuses anyone but a coordinator."""
    await create(bot)
    out = await press(bot, "alice", "event.show_link:1")
    assert "only for coordinators" in out
    assert not (await event(bot)).link_public


async def test_announcement_text_cannot_mention_everyone(bot: ConsoleBot):
    """User text in the channel post is made inert: an @everyone in it can never ping."""
    out = await create(bot, title="Hello @everyone", description="<!here> and @here")
    [post] = blocks(out, "#announcements")
    assert "@everyone" not in post and "@here" not in post and "<!here>" not in post
    assert "Hello @\u200beveryone" in post


# --- bad input when creating ----------


@pytest.mark.parametrize(
    ("field", "value", "complaint"),
    [
        ("start", "2026-01-05 08:00", "has already passed"),
        ("start", "2026-02-30 19:00", "2026-02-30 isn't a date on the calendar"),
        ("start", "2026-03-29 01:30", "2026-03-29 01:30 doesn't exist in UK time"),
        ("start", "2026-10-25 01:30", "2026-10-25 01:30 happens twice in UK time"),
        ("start", "13/01/2026 19:00", "please write it as YYYY-MM-DD HH:MM"),
        ("start", "2026-01-13 25:00", "use the 24-hour clock"),
        ("duration", "0", "an event can last from 5 minutes to 12 hours"),
        ("duration", "48h", "an event can last from 5 minutes to 12 hours"),
        ("duration", "4m", "an event can last from 5 minutes to 12 hours"),
        ("duration", "a while", "an event can last from 5 minutes to 12 hours"),
        ("link", "ftp://files.example/heads", "starting with https://"),
        ("link", "meet.example/heads", "starting with https://"),
        ("link", "javascript:alert(1)", "starting with https://"),
        ("until", "2026-01-12", "before its first event"),
        ("until", "2027-01-06", "can run for up to a year"),
        ("until", "2026-13-01", "isn't a date on the calendar"),
        ("until", "next summer", "YYYY-MM-DD"),
    ],
)
async def test_bad_input_is_refused_kindly_and_nothing_is_created(
    bot: ConsoleBot, field: str, value: str, complaint: str
):
    """Each bad value gets a clear answer; nothing is stored and nothing is announced."""
    out = await create(bot, **{field: value})
    [answer] = blocks(out, "ephemeral coordinator")
    assert answer.startswith("Sorry — ") and complaint in answer
    assert "Nothing was created." in answer
    assert "#announcements" not in out
    assert await events_of(bot) == []


async def test_title_of_300_characters_is_refused(bot: ConsoleBot):
    """A 300-character title is over the 200 limit: refused, nothing created or announced."""
    out = await create(bot, title="x" * 300)
    assert "Title is too long (300 characters; the most is 200)" in out
    assert "#announcements" not in out
    assert await events_of(bot) == []


async def test_duration_of_12_hours_and_5_minutes_are_allowed(bot: ConsoleBot):
    """The limits themselves are fine: 5 minutes and 12 hours."""
    await create(bot, duration="5")
    await create(bot, duration="12h")
    assert [e.ends_at - e.starts_at for e in await events_of(bot)] == [
        timedelta(minutes=5),
        timedelta(hours=12),
    ]


# --- the link: private unless chosen ----------


async def test_link_is_not_public_by_default(bot: ConsoleBot):
    """Neither the announcement nor any channel post carries the link; the coordinator is
    offered *Show the link publicly* after the form."""
    out = await create(bot)
    assert LINK not in "".join(blocks(out, "#announcements"))
    [confirmation] = blocks(out, "ephemeral coordinator")
    assert "[1] Show the link publicly" in confirmation
    assert not (await event(bot)).link_public


async def test_show_link_publicly_edits_the_announcement(bot: ConsoleBot):
    """*Show the link publicly* edits the announcement in place to include the link."""
    await create(bot)
    out = await bot.say(":click show the link publicly", as_=COORDINATOR)
    [edited] = blocks(out, "edited #announcements")
    assert f"Video link: {LINK}" in edited
    assert "Get the link" not in edited
    assert (await event(bot)).link_public


async def test_get_the_link_without_replying_asks_to_reply_first(bot: ConsoleBot):
    """*Get the link* before replying kindly asks for Going or Maybe, and gives no link."""
    await create(bot)
    out = await bot.say(":click get the link", as_="alice")
    assert "just tap Going or Maybe on the event first" in out
    assert LINK not in out


async def test_get_the_link_after_going_gives_it_privately(bot: ConsoleBot):
    """After *Going*, *Get the link* answers privately with the link."""
    await create(bot)
    out = await bot.say(":click going", ":click get the link", as_="alice")
    [answer] = [b for b in blocks(out, "ephemeral alice") if "Here's the video link" in b]
    assert LINK in answer
    assert LINK not in "".join(blocks(out, "edited #announcements"))


async def test_cant_go_does_not_get_the_link(bot: ConsoleBot):
    """Someone who said *Can't go* is not given the link."""
    await create(bot)
    await rsvp(bot, "alice", "no")
    out = await press(bot, "alice", "event.link:1")
    assert LINK not in out and "tap Going or Maybe" in out


async def test_link_never_reaches_a_channel_in_a_whole_flow(bot: ConsoleBot):
    """Through replies, an edit, reminders and a cancel, no channel post ever has the link."""
    await create(bot)
    await rsvp(bot, "alice", "going")
    await bot.say("/event edit E1", "", "", "90", "", "", "", as_=COORDINATOR)
    await bot.advance_to(datetime(2026, 1, 13, 19, tzinfo=UTC))
    await bot.say("/event cancel E1", ":click yes, cancel it", as_=COORDINATOR)
    channel = [b for where in ("#announcements", "edited #announcements")
               for b in blocks(bot.transcript, where)]  # fmt: skip
    assert len(channel) >= 3
    assert not any(LINK in body for body in channel)
    assert LINK in "".join(blocks(bot.transcript, "DM alice"))


# --- replies ----------


async def test_going_answers_privately_and_edits_the_count(bot: ConsoleBot):
    """*Going* answers "You're going to E1 …" privately and edits the announcement's count."""
    await create(bot)
    out = await bot.say(":click going", as_="alice")
    [answer] = blocks(out, "ephemeral alice")
    assert answer.startswith(f"You're going to E1 “Heads together” — {WHEN}.")
    [edited] = blocks(out, "edited #announcements")
    assert "[1] Going (1)  [2] Maybe (0)  [3] Can't go (0)" in edited
    assert blocks(out, "#announcements") == []


async def test_answer_can_be_changed_and_counts_follow(bot: ConsoleBot):
    """Changing Going to Maybe moves the count; one row per member per event."""
    await create(bot)
    await bot.say(":click going", as_="alice")
    out = await bot.say(":click maybe", as_="alice")
    assert "You're a maybe for E1" in out
    [edited] = blocks(out, "edited #announcements")
    assert "[1] Going (0)  [2] Maybe (1)  [3] Can't go (0)" in edited
    async with bot.app.database.session() as session:
        rows = (await session.exec(select(EventRsvp))).all()
    assert [(r.member_id, r.answer) for r in rows] == [(2, "maybe")]


async def test_counts_add_up_across_members(bot: ConsoleBot):
    """Three people answering three ways give one of each."""
    await create(bot)
    await bot.say(":click going", as_="alice")
    await bot.say(":click maybe", as_="bob")
    out = await bot.say(":click can't go", as_="carol")
    assert "Thanks for letting us know you can't make E1" in out
    [edited] = blocks(out, "edited #announcements")
    assert "[1] Going (1)  [2] Maybe (1)  [3] Can't go (1)" in edited


async def test_same_answer_twice_does_not_edit_again(bot: ConsoleBot):
    """Pressing the same answer again changes nothing and edits nothing."""
    await create(bot)
    await bot.say(":click going", as_="alice")
    out = await rsvp(bot, "alice", "going")
    assert "edited #announcements" not in out


async def test_reply_to_a_cancelled_event_is_refused_kindly(bot: ConsoleBot):
    """After a cancel, *Going* kindly says the event was cancelled and stores nothing."""
    await create(bot)
    await bot.say("/event cancel E1", ":click yes, cancel it", as_=COORDINATOR)
    out = await rsvp(bot, "alice", "going")
    assert "was cancelled, so it isn't taking replies any more" in out
    async with bot.app.database.session() as session:
        assert (await session.exec(select(EventRsvp))).all() == []


async def test_reply_to_a_past_event_is_refused_kindly(bot: ConsoleBot):
    """After the event has ended, replies are closed, kindly."""
    await create(bot)
    await bot.advance_to(datetime(2026, 1, 13, 20, 1, tzinfo=UTC))
    out = await rsvp(bot, "alice", "maybe")
    assert "has already taken place, so replies are closed now" in out


async def test_forged_answer_does_nothing(bot: ConsoleBot):
    """A forged answer word is refused without storing anything."""
    await create(bot)
    out = await press(bot, "alice", "event.rsvp:1:definitely")
    assert "no longer does anything" in out


async def test_reply_to_an_unknown_event_says_so(bot: ConsoleBot):
    """A button for an event that doesn't exist says it can't be found."""
    out = await press(bot, "alice", "event.rsvp:999:going")
    assert "I can't find an event E999" in out


# --- /events and calendar files ----------


async def test_events_lists_upcoming_with_buttons_and_a_calendar(bot: ConsoleBot):
    """/events lists each upcoming event with counted RSVP buttons, plus events.ics."""
    await create(bot)
    await create(bot, title="Budget clinic", start="2026-01-20 16:00")
    await bot.say(":click going", as_="alice")  # on the latest announcement: E2
    out = await bot.say("/events", as_="bob")
    assert "Coming up: 2 events." in out and "[file events.ics]" in out
    listings = [b for b in blocks(out, "ephemeral bob") if "📅" in b]
    assert [line.splitlines()[0] for line in listings] == [
        "📅 Heads together (E1)",
        "📅 Budget clinic (E2)",
    ]
    assert "[1] Going (1)  [2] Maybe (0)  [3] Can't go (0)" in listings[1]


async def test_events_shows_my_own_answer(bot: ConsoleBot):
    """The listing reminds me what I replied."""
    await create(bot)
    await rsvp(bot, "alice", "maybe")
    out = await bot.say("/events", as_="alice")
    assert "You replied: Maybe." in out


async def test_events_leaves_out_cancelled_and_past_events(bot: ConsoleBot):
    """Cancelled events and those already over are not listed nor in the calendar file."""
    await create(bot, title="Soon over", start="2026-01-05 10:00")
    await create(bot, title="Called off", start="2026-01-14 19:00")
    await create(bot, title="Still on", start="2026-01-15 19:00")
    await bot.say("/event cancel E2", ":click yes, cancel it", as_=COORDINATOR)
    await bot.advance("2h")
    reply = await command(bot, "alice", "events")
    assert [str(v["summary"]) for v in vevents(calendar_of(reply))] == ["Still on"]
    assert ["Still on" in t for t in texts(reply)[1:]] == [True]


async def test_events_with_nothing_planned_says_so(bot: ConsoleBot):
    """With nothing upcoming, /events says so kindly and attaches no file."""
    out = await bot.say("/events", as_="alice")
    assert "Nothing is planned just now" in out and "[file" not in out


async def test_dm_menu_upcoming_events_runs_events(bot: ConsoleBot):
    """The DM menu's *Upcoming events* button lists the events."""
    await create(bot)
    await bot.say("hello", as_="alice")
    out = await bot.say(":click upcoming events")
    assert "📅 Heads together (E1)" in out and "[file events.ics]" in out


async def test_event_calendar_file_reads_back_field_by_field(bot: ConsoleBot):
    """*Add to calendar*: UID, SEQUENCE, STATUS, DTSTART/DTEND with their zone, SUMMARY."""
    await create(bot)
    cal = await event_calendar(bot, "alice")
    [item] = vevents(cal)
    assert str(item["uid"]) == "event-1@headsup"
    assert int(item["sequence"]) == 0
    assert str(item["status"]) == "CONFIRMED"
    assert str(item["summary"]) == "Heads together"
    start, end = item.decoded("dtstart"), item.decoded("dtend")
    assert start == datetime(2026, 1, 13, 19, tzinfo=LONDON)
    assert str(start.tzinfo) == "Europe/London" and end - start == timedelta(hours=1)
    assert item["dtstart"].params["TZID"] == "Europe/London"
    assert [str(tz["tzid"]) for tz in cal.walk("VTIMEZONE")] == ["Europe/London"]


async def test_calendar_time_is_summer_time_in_july(bot: ConsoleBot):
    """A July event is 19:00 London time in the file, which is 18:00 UTC."""
    await create(bot, start="2026-07-14 19:00")
    [item] = vevents(await event_calendar(bot, "alice"))
    start = item.decoded("dtstart")
    assert (start.hour, start.utcoffset()) == (19, timedelta(hours=1))
    assert (await event(bot)).starts_at == datetime(2026, 7, 14, 18, tzinfo=UTC)


async def test_edit_bumps_sequence_and_keeps_uid(bot: ConsoleBot):
    """After an edit the file has the same UID, SEQUENCE 1 and the new time."""
    await create(bot)
    await bot.say("/event edit E1", "", "2026-01-14 18:00", "", "", "", "", as_=COORDINATOR)
    [item] = vevents(await event_calendar(bot, "alice"))
    assert (str(item["uid"]), int(item["sequence"])) == ("event-1@headsup", 1)
    assert item.decoded("dtstart") == datetime(2026, 1, 14, 18, tzinfo=LONDON)


async def test_cancel_marks_the_calendar_cancelled(bot: ConsoleBot):
    """After a cancel the file says STATUS:CANCELLED with a higher SEQUENCE."""
    await create(bot)
    await bot.say("/event cancel E1", ":click yes, cancel it", as_=COORDINATOR)
    [item] = vevents(await event_calendar(bot, "alice"))
    assert (str(item["status"]), int(item["sequence"])) == ("CANCELLED", 1)


async def test_calendar_has_the_link_only_for_those_going(bot: ConsoleBot):
    """Alice (Going) gets the link in her file; Bob (no reply) does not."""
    await create(bot)
    await rsvp(bot, "alice", "going")
    [alices] = vevents(await event_calendar(bot, "alice"))
    assert str(alices["location"]) == LINK
    reply = await bot.app.core.press(actor("bob"), "event.ics:1")
    assert LINK.encode() not in reply.messages[0].attachment.content


async def test_add_to_calendar_button_on_the_announcement(bot: ConsoleBot):
    """The announcement's *Add to calendar* answers privately with E1.ics."""
    await create(bot)
    out = await bot.say(":click add to calendar", as_="alice")
    [answer] = blocks(out, "ephemeral alice")
    assert "[file E1.ics]" in answer and "UID:event-1@headsup" in answer


async def test_all_upcoming_calendar_has_a_uid_each(bot: ConsoleBot):
    """The /events file has every upcoming event, each with its own UID."""
    await create(bot)
    await create(bot, title="Budget clinic", start="2026-01-20 16:00")
    cal = calendar_of(await command(bot, "alice", "events"))
    assert [str(v["uid"]) for v in vevents(cal)] == ["event-1@headsup", "event-2@headsup"]


# --- reminders ----------


async def test_reminders_reach_going_and_maybe_with_the_link(bot: ConsoleBot):
    """At 24 hours before: a DM with the link to Going and Maybe, none to Can't go."""
    await create(bot)
    await rsvp(bot, "alice", "going")
    await rsvp(bot, "bob", "maybe")
    await rsvp(bot, "carol", "no")
    assert REMINDER not in await bot.advance_to(datetime(2026, 1, 12, 18, 59, tzinfo=UTC))
    out = await bot.advance("1m")
    for name in ("alice", "bob"):
        [dm] = blocks(out, f"DM {name}")
        assert "E1 “Heads together” starts in 24 hours" in dm and LINK in dm
    assert blocks(out, "DM carol") == [] and "#announcements" not in out


async def test_fifteen_minute_reminder_follows(bot: ConsoleBot):
    """The 15-minute reminder comes at 18:45, with the link."""
    await create(bot)
    await rsvp(bot, "alice", "going")
    await bot.advance_to(datetime(2026, 1, 13, 18, 44, tzinfo=UTC))
    out = await bot.advance("1m")
    [dm] = blocks(out, "DM alice")
    assert "starts in 15 minutes" in dm and LINK in dm


async def test_reminders_come_exactly_once_across_a_restart(bot: ConsoleBot):
    """A restart between and just before reminders loses none and doubles none."""
    await create(bot)
    await rsvp(bot, "alice", "going")
    await bot.advance_to(datetime(2026, 1, 12, 19, tzinfo=UTC))
    await bot.restart()
    await bot.advance_to(datetime(2026, 1, 13, 18, 44, tzinfo=UTC))
    await bot.restart()
    await bot.advance("3h")
    reminders = [b for b in blocks(bot.transcript, "DM alice") if REMINDER in b]
    assert len(reminders) == 2
    assert all(r.sent_at is not None for r in await reminders_of(bot))


async def test_reminder_is_claimed_with_its_message(bot: ConsoleBot):
    """A claimed reminder row and its outbox message are written together."""
    await create(bot)
    await rsvp(bot, "alice", "going")
    bot.clock.advance(datetime(2026, 1, 12, 19, tzinfo=UTC) - bot.clock.now())
    await bot.app.ticker.tick()  # claims and queues, but does not deliver
    async with bot.app.database.session() as session:
        queued = (
            await session.exec(select(OutboxMessage).where(OutboxMessage.recipient == "alice"))
        ).all()
    [first, second] = await reminders_of(bot)
    assert first.sent_at == bot.clock.now() and second.sent_at is None
    assert len(queued) == 1 and queued[0].priority == 9


async def test_two_instances_send_each_reminder_once(bot: ConsoleBot, db):
    """Two instances ticking at the same moment queue one reminder per person, not two."""
    await create(bot)
    for name in ("alice", "bob", "dan"):
        await rsvp(bot, name, "going")
    other = await ConsoleBot.create(db.url, db.schema, start=bot.clock.now())
    try:
        moment = datetime(2026, 1, 12, 19, tzinfo=UTC)
        bot.clock.advance(moment - bot.clock.now())
        other.clock.advance(moment - other.clock.now())
        await asyncio.gather(bot.app.ticker.tick(), other.app.ticker.tick())
        async with bot.app.database.session() as session:
            rows = (
                await session.exec(
                    select(OutboxMessage.recipient).where(OutboxMessage.kind == "dm")
                )
            ).all()
        assert sorted(rows) == ["alice", "bob", "dan"]
    finally:
        await other.stop()


async def test_event_two_hours_ahead_gets_only_the_short_reminder(bot: ConsoleBot):
    """An event created 2 hours ahead has no 24-hour reminder (already past), only 15 minutes."""
    out = await create(bot, start="2026-01-05 11:00")
    assert "15 minutes before it starts" in out and "24 hours" not in out
    assert [r.offset_seconds for r in await reminders_of(bot)] == [15 * 60]
    await rsvp(bot, "alice", "going")
    out = await bot.advance("3h")
    reminders = [b for b in blocks(out, "DM alice") if REMINDER in b]
    assert len(reminders) == 1 and "starts in 15 minutes" in reminders[0]


async def test_edit_to_a_new_time_reschedules_reminders(bot: ConsoleBot):
    """Moved a day later, the 24-hour reminder comes a day later — not at the old time."""
    await create(bot)
    await rsvp(bot, "alice", "going")
    await bot.say("/event edit E1", "", "2026-01-14 19:00", "", "", "", "", as_=COORDINATOR)
    assert REMINDER not in await bot.advance_to(datetime(2026, 1, 13, 18, 59, tzinfo=UTC))
    out = await bot.advance("1m")
    [dm] = [b for b in blocks(out, "DM alice") if REMINDER in b]
    assert "Wednesday 14 January, 19:00–20:00" in dm
    await bot.advance("2d")
    assert sum(REMINDER in b for b in blocks(bot.transcript, "DM alice")) == 2


async def test_cancelled_event_sends_no_reminders(bot: ConsoleBot):
    """Once cancelled, nobody is reminded."""
    await create(bot)
    await rsvp(bot, "alice", "going")
    await bot.say("/event cancel E1", ":click yes, cancel it", as_=COORDINATOR)
    out = await bot.advance("10d")
    assert REMINDER not in out
    assert await reminders_of(bot) == []


async def test_reminder_offsets_come_from_config(make_bot):
    """`events.reminders = ["1h"]` sends one reminder, an hour before."""
    bot = await make_bot(events={"reminders": ["1h"]})
    await create(bot)
    await rsvp(bot, "alice", "going")
    assert REMINDER not in await bot.advance_to(datetime(2026, 1, 13, 17, 59, tzinfo=UTC))
    out = await bot.advance("2h")
    [dm] = blocks(out, "DM alice")
    assert "starts in 1 hour" in dm


# --- editing ----------


async def test_edit_form_is_prefilled_in_network_time(bot: ConsoleBot):
    """The edit form holds each value; a July start shows 19:00 (BST), not 18:00 UTC."""
    await create(bot, start="2026-07-14 19:00", duration="1h30m")
    out = await bot.say("/event edit E1", as_=COORDINATOR)
    assert "[form Edit E1]" in out and "[now: Heads together]" in out
    reply = await command(bot, COORDINATOR, "event", "edit E1")
    assert reply.form is not None
    assert {f.name: f.value for f in reply.form.fields} == {
        "title": "Heads together",
        "start": "2026-07-14 19:00",
        "duration": "1h30m",
        "link": LINK,
        "description": "A relaxed hour to share what's on our minds.",
        "repeat_until": "",
    }


async def test_edit_tells_everyone_who_replied_what_changed(bot: ConsoleBot):
    """Going, Maybe and Can't go all get a DM with the old → new time; the post is edited."""
    await create(bot)
    for name, answer in (("alice", "going"), ("bob", "maybe"), ("carol", "no")):
        await rsvp(bot, name, answer)
    out = await bot.say("/event edit E1", "", "2026-01-13 18:30", "", "", "", "", as_=COORDINATOR)
    change = f"• Time: {WHEN} → Tuesday 13 January, 18:30–19:30 (UK time)"
    for name in ("alice", "bob", "carol"):
        [dm] = blocks(out, f"DM {name}")
        assert "An update about E1 “Heads together”" in dm and change in dm
    [edited] = blocks(out, "edited #announcements")
    assert "Tuesday 13 January, 18:30–19:30 (UK time)" in edited
    assert "Going (1)  [2] Maybe (1)  [3] Can't go (1)" in edited
    assert "3 people who replied have been told" in out


async def test_new_link_goes_only_to_going_and_maybe(bot: ConsoleBot):
    """A changed link is sent to Going; Can't go hears only that it changed."""
    await create(bot)
    await rsvp(bot, "alice", "going")
    await rsvp(bot, "carol", "no")
    new_link = "https://meet.example/new-room"
    out = await bot.say("/event edit E1", "", "", "", new_link, "", "", as_=COORDINATOR)
    assert f"• New video link: {new_link}" in blocks(out, "DM alice")[0]
    [carols] = blocks(out, "DM carol")
    assert new_link not in carols and "The video link has changed" in carols


async def test_edit_changing_nothing_says_so(bot: ConsoleBot):
    """Submitting the form unchanged saves nothing and tells nobody."""
    await create(bot)
    await rsvp(bot, "alice", "going")
    out = await bot.say("/event edit E1", "", "", "", "", "", "", as_=COORDINATOR)
    assert "E1 “Heads together” is unchanged" in out
    assert "DM alice" not in out and (await event(bot)).sequence == 0


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("edit E999", "I can't find an event E999"),
        ("edit x", "'x' isn't an event id — they look like E12"),
        ("cancel E999", "I can't find an event E999"),
        ("cancel x", "'x' isn't an event id"),
        ("edit", "I need the id"),
    ],
)
async def test_unknown_ids_are_explained(bot: ConsoleBot, text: str, complaint: str):
    """Unknown or malformed ids get a kind, specific answer."""
    await create(bot)
    out = await bot.say(f"/event {text}", as_=COORDINATOR)
    assert complaint in out and "[form" not in out


async def test_editing_a_cancelled_event_is_refused(bot: ConsoleBot):
    """A cancelled event can't be edited."""
    await create(bot)
    await bot.say("/event cancel E1", ":click yes, cancel it", as_=COORDINATOR)
    out = await bot.say("/event edit E1", as_=COORDINATOR)
    assert "was cancelled, so it can't be changed any more" in out and "[form" not in out


async def test_editing_a_past_event_is_refused(bot: ConsoleBot):
    """An event that has ended can't be edited or cancelled."""
    await create(bot)
    await bot.advance("9d")
    for verb, word in (("edit", "changed"), ("cancel", "cancelled")):
        out = await bot.say(f"/event {verb} E1", as_=COORDINATOR)
        assert f"has already taken place, so it can't be {word} now" in out


async def test_edit_to_a_past_start_changes_nothing(bot: ConsoleBot):
    """A new start in the past is refused; the event stays and nobody is told."""
    await create(bot)
    await rsvp(bot, "alice", "going")
    out = await bot.say("/event edit E1", "", "2026-01-04 19:00", "", "", "", "", as_=COORDINATOR)
    assert "has already passed" in out and "Nothing was changed." in out
    assert "DM alice" not in out and "edited #announcements" not in out
    assert (await event(bot)).starts_at == START


@pytest.mark.parametrize(
    ("field", "value", "complaint"),
    [
        (3, "0", "from 5 minutes to 12 hours"),
        (4, "ftp://x.example", "starting with https://"),
        (2, "2026-03-29 01:30", "doesn't exist in UK time"),
    ],
)
async def test_bad_edit_changes_nothing(bot: ConsoleBot, field: int, value: str, complaint: str):
    """A bad value in the edit form is refused; nothing is changed or announced."""
    await create(bot)
    lines = ["", "", "", "", "", ""]
    lines[field - 1] = value
    out = await bot.say("/event edit E1", *lines, as_=COORDINATOR)
    assert complaint in out and "Nothing was changed." in out
    assert "#announcements" not in out
    stored = await event(bot)
    assert (stored.starts_at, stored.sequence, stored.link) == (START, 0, LINK)


async def test_event_under_way_can_still_have_its_link_fixed(bot: ConsoleBot):
    """During the event, the start is unchanged (so in the past) and the link can change."""
    await create(bot)
    await bot.advance_to(datetime(2026, 1, 13, 19, 10, tzinfo=UTC))
    new_link = "https://meet.example/backup"
    out = await bot.say("/event edit E1", "", "", "", new_link, "", "", as_=COORDINATOR)
    assert "Saved — E1 updated" in out
    assert (await event(bot)).link == new_link


async def test_single_event_edited_to_repeat_becomes_a_series(bot: ConsoleBot):
    """Giving a repeat-until date to a single event makes weekly occurrences after it."""
    await create(bot)
    out = await bot.say("/event edit E1", "", "", "", "", "", "2026-01-27", as_=COORDINATOR)
    assert "repeats weekly until Tuesday 27 January 2026" in out
    found = await events_of(bot)
    assert local_starts(found) == ["Tue 13 Jan 19:00", "Tue 20 Jan 19:00", "Tue 27 Jan 19:00"]
    assert len({e.series_id for e in found}) == 1 and found[0].series_id is not None


# --- cancelling ----------


async def test_cancel_asks_to_confirm_and_keep_it_changes_nothing(bot: ConsoleBot):
    """/event cancel asks first; *Keep it* leaves the event as it was."""
    await create(bot)
    out = await bot.say("/event cancel E1", as_=COORDINATOR)
    assert f"Cancel E1 “Heads together” on {WHEN}?" in out
    assert "[1] Yes, cancel it  [2] Keep it" in out
    out = await bot.say(":click keep it")
    assert "E1 goes ahead as planned" in out
    assert (await event(bot)).status == "scheduled"


async def test_cancel_updates_the_announcement_and_tells_everyone(bot: ConsoleBot):
    """Confirmed: the announcement says cancelled, and everyone who replied is told."""
    await create(bot)
    await rsvp(bot, "alice", "going")
    await rsvp(bot, "carol", "no")
    out = await bot.say("/event cancel E1", ":click yes, cancel it", as_=COORDINATOR)
    [edited] = blocks(out, "edited #announcements")
    assert edited.startswith("❌ Cancelled: Heads together (E1)")
    assert "Going" not in edited
    for name in ("alice", "carol"):
        [dm] = blocks(out, f"DM {name}")
        assert f"E1 “Heads together” on {WHEN} has been cancelled" in dm
    assert "2 people who replied have been told" in out
    stored = await event(bot)
    assert stored.status == "cancelled" and stored.cancelled_at is not None


async def test_cancelling_twice_says_it_already_is(bot: ConsoleBot):
    """A second cancel is refused kindly."""
    await create(bot)
    await bot.say("/event cancel E1", ":click yes, cancel it", as_=COORDINATOR)
    out = await bot.say("/event cancel E1", as_=COORDINATOR)
    assert "was cancelled, so it can't be cancelled any more" in out


# --- weekly series ----------


async def test_series_makes_occurrences_within_eight_weeks(bot: ConsoleBot):
    """Weekly until June: Tuesdays from 13 January up to 8 weeks ahead exist, each announced."""
    out = await create_series(bot)
    found = await events_of(bot)
    assert local_starts(found) == [
        "Tue 13 Jan 19:00",
        "Tue 20 Jan 19:00",
        "Tue 27 Jan 19:00",
        "Tue 03 Feb 19:00",
        "Tue 10 Feb 19:00",
        "Tue 17 Feb 19:00",
        "Tue 24 Feb 19:00",
    ]
    posts = blocks(out, "#announcements")
    assert [p.splitlines()[0] for p in posts] == [f"📅 Heads together (E{i})" for i in range(1, 8)]
    assert "Part of a weekly series until Tuesday 30 June 2026" in posts[0]
    assert "E1, E2, E3 and 4 more are announced now" in out


async def test_series_grows_as_time_moves_on(bot: ConsoleBot):
    """When 3 March comes within 8 weeks (6 January 19:00), E8 is made and announced."""
    await create_series(bot)
    assert "#announcements" not in await bot.advance_to(datetime(2026, 1, 6, 18, 59, tzinfo=UTC))
    out = await bot.advance("1m")
    [post] = blocks(out, "#announcements")
    assert post.startswith("📅 Heads together (E8)") and "Tuesday 3 March" in post


async def test_series_keeps_local_time_across_the_clock_change(make_bot):
    """19:00 London every Tuesday: 19:00 UTC in March before the change, 18:00 UTC after."""
    bot = await make_bot(start=datetime(2026, 3, 2, 9, tzinfo=UTC))
    await create_series(bot, start="2026-03-17 19:00", until="2026-04-14")
    hours = [e.starts_at.hour for e in await events_of(bot)]
    assert hours == [19, 19, 18, 18, 18]
    assert local_starts(await events_of(bot))[-1] == "Tue 14 Apr 19:00"


async def test_series_stops_at_its_end_date(bot: ConsoleBot):
    """Until 27 January: three occurrences, and no more however long we wait."""
    await create_series(bot, until="2026-01-27")
    await bot.advance("90d")
    assert len(await events_of(bot)) == 3


async def test_series_horizon_survives_a_restart(bot: ConsoleBot):
    """After a restart, the next occurrence is still made once, not twice."""
    await create_series(bot)
    await bot.restart()
    await bot.advance("7d")
    found = await events_of(bot)
    assert len(found) == 8 and local_starts(found)[-1] == "Tue 03 Mar 19:00"


async def test_each_occurrence_has_its_own_replies(bot: ConsoleBot):
    """Going to E1 does not count for E2."""
    await create_series(bot, until="2026-01-27")
    out = await rsvp(bot, "alice", "going", event_id=1)
    [edited] = blocks(out, "edited #announcements")
    assert "Going (1)" in edited
    listing = texts(await command(bot, "bob", "events"))
    assert listing[1].startswith("📅 Heads together (E1)")
    reply = await command(bot, "bob", "events")
    buttons = [[b.label for b in m.buttons] for m in reply.messages[1:]]
    assert buttons[0][0] == "Going (1)" and buttons[1][0] == "Going (0)"


async def test_series_edit_asks_one_or_the_rest(bot: ConsoleBot):
    """Editing an occurrence with later ones asks with two buttons after the form."""
    await create_series(bot, until="2026-02-10")
    out = await bot.say("/event edit E2", "", "2026-01-20 18:00", "", "", "", "", as_=COORDINATOR)
    assert "E2 “Heads together” is part of a weekly series" in out
    assert "[1] Just this one  [2] This and the rest of the series" in out
    assert (await event(bot, 2)).starts_at == datetime(2026, 1, 20, 19, tzinfo=UTC)


async def test_series_edit_just_this_one(bot: ConsoleBot):
    """*Just this one* moves E2 only; E1 and E3 keep their times."""
    await create_series(bot, until="2026-02-10")
    await rsvp(bot, "alice", "going", event_id=2)
    await bot.say("/event edit E2", "", "2026-01-20 18:00", "", "", "", "", as_=COORDINATOR)
    out = await bot.say(":click just this one")
    assert "Saved — E2 updated" in out
    assert local_starts(await events_of(bot)) == [
        "Tue 13 Jan 19:00",
        "Tue 20 Jan 18:00",
        "Tue 27 Jan 19:00",
        "Tue 03 Feb 19:00",
        "Tue 10 Feb 19:00",
    ]
    [dm] = blocks(out, "DM alice")
    assert "Tuesday 20 January, 18:00–19:00" in dm


async def test_series_edit_this_and_the_rest(bot: ConsoleBot):
    """*This and the rest* moves E2 and every later one to Wednesdays 18:00; E1 stays."""
    await create_series(bot)
    await bot.say("/event edit E2", "", "2026-01-21 18:00", "", "", "", "", as_=COORDINATOR)
    out = await bot.say(":click this and the rest")
    assert "Saved — E2, E3, E4 and 3 more updated" in out
    assert len(blocks(out, "edited #announcements")) == 6
    assert local_starts(await events_of(bot)) == [
        "Tue 13 Jan 19:00",
        "Wed 21 Jan 18:00",
        "Wed 28 Jan 18:00",
        "Wed 04 Feb 18:00",
        "Wed 11 Feb 18:00",
        "Wed 18 Feb 18:00",
        "Wed 25 Feb 18:00",
    ]


async def test_occurrences_made_after_a_rest_edit_follow_it(bot: ConsoleBot):
    """The series itself changed: the next occurrence made is a Wednesday at 18:00."""
    await create_series(bot)
    await bot.say("/event edit E2", "Heads up", "2026-01-21 18:00", "", "", "", "", as_=COORDINATOR)
    await bot.say(":click this and the rest")
    out = await bot.advance("7d")
    [post] = blocks(out, "#announcements")
    assert post.startswith("📅 Heads up (E8)") and "Wednesday 4 March, 18:00–19:00" in post


async def test_rest_edit_changes_only_what_was_changed(bot: ConsoleBot):
    """A new title for the rest leaves an occurrence's own moved time alone."""
    await create_series(bot, until="2026-02-03")
    await bot.say("/event edit E3", "", "2026-01-27 17:00", "", "", "", "", as_=COORDINATOR)
    await bot.say(":click just this one")
    await bot.say("/event edit E2", "Heads up", "", "", "", "", "", as_=COORDINATOR)
    await bot.say(":click this and the rest")
    found = await events_of(bot)
    assert [e.title for e in found] == ["Heads together", "Heads up", "Heads up", "Heads up"]
    assert local_starts(found)[2] == "Tue 27 Jan 17:00"


async def test_rest_edit_tells_each_person_once(bot: ConsoleBot):
    """Someone who replied to E2 and E3 gets one DM covering both."""
    await create_series(bot, until="2026-02-03")
    await rsvp(bot, "alice", "going", event_id=2)
    await rsvp(bot, "alice", "maybe", event_id=3)
    await bot.say("/event edit E2", "", "2026-01-20 18:00", "", "", "", "", as_=COORDINATOR)
    out = await bot.say(":click this and the rest")
    [dm] = blocks(out, "DM alice")
    assert dm.startswith("Some events you replied to have changed:")
    assert "E2 “Heads together”" in dm and "E3 “Heads together”" in dm


async def test_rest_edit_with_an_earlier_end_cancels_the_dates_after_it(bot: ConsoleBot):
    """Ending the series sooner cancels the occurrences after the new end, telling people."""
    await create_series(bot, until="2026-02-10")
    await rsvp(bot, "alice", "going", event_id=5)
    out = await bot.say("/event edit E2", "", "", "", "", "", "2026-01-27", as_=COORDINATOR)
    assert "Cancelled, as they fall after the new end date: E4 and E5." in out
    assert [e.status for e in await events_of(bot)] == ["scheduled"] * 3 + ["cancelled"] * 2
    assert "has been cancelled" in blocks(out, "DM alice")[0]


async def test_moving_a_series_keeps_its_number_of_dates(bot: ConsoleBot):
    """Moving every date a day later moves the end date too: no date is lost."""
    await create_series(bot, until="2026-01-27")
    await bot.say("/event edit E1", "", "2026-01-14 19:00", "", "", "", "", as_=COORDINATOR)
    out = await bot.say(":click this and the rest")
    assert "Cancelled" not in out
    found = await events_of(bot)
    assert local_starts(found) == ["Wed 14 Jan 19:00", "Wed 21 Jan 19:00", "Wed 28 Jan 19:00"]
    assert {e.status for e in found} == {"scheduled"}


async def test_changing_only_the_end_date_needs_no_choice(bot: ConsoleBot):
    """A later end date applies to the series at once and announces the new dates."""
    await create_series(bot, until="2026-02-10")
    out = await bot.say("/event edit E2", "", "", "", "", "", "2026-02-24", as_=COORDINATOR)
    assert "Just this one" not in out
    assert "Newly added and announced: E6 and E7." in out
    assert "The series now runs until Tuesday 24 February 2026." in out
    posts = blocks(out, "#announcements")
    assert [p.splitlines()[0] for p in posts] == [
        "📅 Heads together (E6)",
        "📅 Heads together (E7)",
    ]
    assert len(await events_of(bot)) == 7


async def test_series_starting_beyond_the_horizon_announces_its_first_date(bot: ConsoleBot):
    """A series whose first date is 10 weeks away still gets that first date at once."""
    out = await create_series(bot, start="2026-03-17 19:00", until="2026-06-30")
    assert local_starts(await events_of(bot)) == ["Tue 17 Mar 19:00"]
    assert len(blocks(out, "#announcements")) == 1
    await bot.advance_to(datetime(2026, 1, 27, 18, 59, tzinfo=UTC))
    assert len(await events_of(bot)) == 1
    await bot.advance("1m")  # 24 March is now 8 weeks ahead
    assert local_starts(await events_of(bot)) == ["Tue 17 Mar 19:00", "Tue 24 Mar 19:00"]


async def test_two_instances_extend_a_series_once(bot: ConsoleBot, db):
    """Two instances ticking at once make the next occurrence once, announced once."""
    await create_series(bot)
    other = await ConsoleBot.create(db.url, db.schema, start=bot.clock.now())
    try:
        moment = datetime(2026, 1, 6, 19, tzinfo=UTC)
        bot.clock.advance(moment - bot.clock.now())
        other.clock.advance(moment - other.clock.now())
        await asyncio.gather(bot.app.ticker.tick(), other.app.ticker.tick())
        assert len(await events_of(bot)) == 8
        async with bot.app.database.session() as session:
            keys = (
                await session.exec(
                    select(OutboxMessage.message_key).where(OutboxMessage.kind == "channel")
                )
            ).all()
        assert sorted(keys).count("event:8:announce") == 1 and len(keys) == 8
    finally:
        await other.stop()


async def test_series_cancel_asks_one_or_the_rest(bot: ConsoleBot):
    """Cancelling an occurrence with later ones offers this one, the rest, or keep it."""
    await create_series(bot, until="2026-02-10")
    out = await bot.say("/event cancel E3", as_=COORDINATOR)
    assert "[1] Cancel just this one  [2] Cancel this and the rest  [3] Keep it" in out
    assert "the rest of the series (E4 and E5)" in out


async def test_series_cancel_just_this_one(bot: ConsoleBot):
    """*Cancel just this one* cancels E3; the series carries on and keeps growing."""
    await create_series(bot)
    await bot.say("/event cancel E3", ":click cancel just this one", as_=COORDINATOR)
    assert [e.status for e in await events_of(bot)][:4] == [
        "scheduled",
        "scheduled",
        "cancelled",
        "scheduled",
    ]
    await bot.advance("7d")
    assert len(await events_of(bot)) == 8


async def test_series_cancel_this_and_the_rest(bot: ConsoleBot):
    """*Cancel this and the rest* cancels E3 onwards, edits each post, and makes no more."""
    await create_series(bot)
    await rsvp(bot, "alice", "going", event_id=3)
    await rsvp(bot, "alice", "going", event_id=4)
    out = await bot.say("/event cancel E3", ":click cancel this and the rest", as_=COORDINATOR)
    assert "Cancelled E3, E4, E5 and 2 more" in out
    assert len(blocks(out, "edited #announcements")) == 5
    [dm] = blocks(out, "DM alice")
    assert "E3 “Heads together”" in dm and "E4 “Heads together”" in dm
    await bot.advance("30d")
    found = await events_of(bot)
    assert len(found) == 7
    assert [e.status for e in found] == ["scheduled"] * 2 + ["cancelled"] * 5
    async with bot.app.database.session() as session:
        [series] = (await session.exec(select(EventSeries))).all()
    assert series.next_start_at is None


async def test_last_occurrence_edit_needs_no_choice(bot: ConsoleBot):
    """The last occurrence has no later ones: the edit applies at once."""
    await create_series(bot, until="2026-01-20")
    out = await bot.say("/event edit E2", "Last one", "", "", "", "", "", as_=COORDINATOR)
    assert "Saved — E2 updated" in out and "Just this one" not in out


async def test_someone_elses_draft_cannot_be_applied(bot: ConsoleBot):
    """The scope buttons work only for the coordinator who made the edit."""
    await create_series(bot, until="2026-02-10")
    await bot.say("/event edit E2", "Other", "", "", "", "", "", as_=COORDINATOR)
    other = Actor("console", "coordinator2", "coordinator2", frozenset({Role.COORDINATOR}))
    reply = await bot.app.core.press(other, "event.apply:1:rest")
    assert "already been saved, or it's too old" in texts(reply)[0]
    assert [e.title for e in await events_of(bot)][1] == "Heads together"


# --- logs ----------


async def test_logs_carry_ids_never_titles_descriptions_or_links(bot: ConsoleBot):
    """Creating, replying, editing and reminding log ids and events, not the words or link."""
    with structlog.testing.capture_logs() as captured:
        await create(bot, title="Secret title", description="Private description")
        await rsvp(bot, "alice", "going")
        await bot.say("/event edit E1", "", "2026-01-13 18:00", "", "", "", "", as_=COORDINATOR)
        await bot.advance("8d")
    names = {entry["event"] for entry in captured}
    assert {"event.created", "event.rsvp", "event.edited", "event.reminded"} <= names
    logged = repr(captured)
    for text in ("Secret title", "Private description", LINK):
        assert text not in logged
