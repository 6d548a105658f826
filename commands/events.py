"""Video-call events: coordinators post them; members reply, get reminders and calendar files.

An event is announced in the announcements channel with *Going* / *Maybe* / *Can't go* and live
counts; the announcement is one message under the key ``event:<id>:announce`` and is edited in
place whenever its counts or details change. The video link stays private — it goes only to people
who replied Going or Maybe — unless the coordinator chose to show it publicly.

A weekly series is a pattern (``storage.events.EventSeries``) plus separate occurrences, each an
event of its own. Occurrences are made over a rolling horizon: those within ``HORIZON`` at once,
later ones by a due job as time moves on. Reminders are rows with due times, each claimed once by
compare-and-swap in the same transaction that queues its messages.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import icalendar
import structlog
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core import Actor, Arg, Context, Role, Services, check_form, split_words
from bot.durations import parse_duration
from bot.errors import UserError
from bot.text import moment, quote_user_text, shorten
from bot.ui import (
    MAX_TEXT,
    Attachment,
    Button,
    CalendarEntry,
    Channel,
    Destination,
    Form,
    FormField,
    Message,
    Priority,
    Reply,
    Style,
    ToChannel,
    ToMember,
)
from commands.registry import registry
from commands.schedule import WEEKDAYS, local_moment, parse_time
from storage.events import (
    Answer,
    Event,
    EventDraft,
    EventReminder,
    EventRsvp,
    EventSeries,
    EventStatus,
    SeriesStatus,
    event_code,
    parse_event_code,
)

log = structlog.get_logger("headsup.events")

HORIZON = timedelta(weeks=8)  # occurrences of a series exist this far ahead
MIN_DURATION = timedelta(minutes=5)
MAX_DURATION = timedelta(hours=12)
MAX_TITLE = 200
MAX_DESCRIPTION = 1000
MAX_LINK = 500
MAX_LISTED = 10  # events shown one by one in /events (the calendar file holds them all)
DRAFT_LIFETIME = timedelta(days=1)

ANSWER_LABELS = {Answer.GOING: "Going", Answer.MAYBE: "Maybe", Answer.NO: "Can't go"}
ZONE_LABELS = {"Europe/London": "UK time"}
NO_BUTTON = "That button no longer does anything — sorry."
CREATE_METAVAR = '"TITLE" "YYYY-MM-DD HH:MM" DURATION LINK ["DESCRIPTION"]'

_START = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})[ T]+(\d{1,2}):(\d{2})")
_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_TIME = re.compile(r"\d{1,2}:\d{2}")


# --- one unit of work, for commands and due jobs alike -------------------------------------------


@dataclass
class Work:
    """What the event helpers need: the services, the open session and the time."""

    services: Services
    session: AsyncSession
    now: datetime

    @classmethod
    def of(cls, ctx: Context) -> Work:
        return cls(ctx.services, ctx.session, ctx.now)

    @property
    def zone_name(self) -> str:
        return self.services.settings.network.timezone

    async def send(
        self, to: Destination, message: Message, *, priority=Priority.NORMAL, key=None
    ) -> None:
        await self.services.outbox.send(
            self.session, self.now, to, message, priority=priority, key=key
        )

    async def edit(self, key: str, message: Message) -> None:
        await self.services.outbox.edit(self.session, self.now, key, message)

    async def calendar(self, event: Event) -> None:
        """Create or update the event's entry in each platform's own calendar."""
        await self.services.outbox.calendar(
            self.session, self.now, calendar_key(_id(event)), calendar_entry(event)
        )


# --- words and times -------------------------------------------------------------------------


def zone_label(zone_name: str) -> str:
    """ "UK time" for Europe/London; "New York time" for America/New_York."""
    return ZONE_LABELS.get(zone_name) or f"{zone_name.rsplit('/', 1)[-1].replace('_', ' ')} time"


def _day(moment: datetime, now: datetime) -> str:
    text = f"{moment:%A} {moment.day} {moment:%B}"
    return text if moment.year == now.year else f"{text} {moment.year}"


def span(starts_at: datetime, ends_at: datetime, zone_name: str, now: datetime) -> str:
    """ "Tuesday 13 January, 19:00–20:00 (UK time)", on the network's wall clock; marked as a
    moment, so Discord and Slack show it in each reader's own timezone instead."""
    zone = ZoneInfo(zone_name)
    start, end, today = starts_at.astimezone(zone), ends_at.astimezone(zone), now.astimezone(zone)
    if start.date() == end.date():
        text = f"{_day(start, today)}, {start:%H:%M}–{end:%H:%M}"
    else:
        text = f"{_day(start, today)}, {start:%H:%M} – {_day(end, today)}, {end:%H:%M}"
    return moment(starts_at, f"{text} ({zone_label(zone_name)})", ends_at)


def long_date(day: date) -> str:
    return f"{day:%A} {day.day} {day:%B} {day.year}"


def spoken(delta: timedelta) -> str:
    """ "15 minutes", "24 hours", "1 hour 30 minutes", "2 days"."""
    minutes = max(0, round(delta.total_seconds() / 60))
    if minutes >= 2 * 1440 and minutes % 1440 == 0:
        return f"{minutes // 1440} days"
    hours, mins = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    if mins:
        parts.append(f"{mins} minute{'s' if mins != 1 else ''}")
    return " ".join(parts) or "less than a minute"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def codes(events: list[Event]) -> str:
    names = [event_code(_id(e)) for e in events]
    return _and(names) if len(names) <= 4 else f"{', '.join(names[:3])} and {len(names) - 3} more"


def _id(event: Event) -> int:
    assert event.id is not None
    return event.id


def announce_key(event_id: int) -> str:
    return f"event:{event_id}:announce"


def calendar_key(event_id: int) -> str:
    return f"event:calendar:{event_id}"


PRIVATE_LINK_PLACE = "Video call — the link goes to everyone who replies Going or Maybe"


def calendar_entry(event: Event) -> CalendarEntry:
    """The event as a platform's native calendar shows it to the whole server: the video link
    only once the coordinator has made it public, as on the announcement."""
    how = (
        f"{event_code(_id(event))} — reply Going or Maybe on the announcement (or with /events) "
        "for a reminder with the video link."
    )
    description = f"{event.description}\n\n{how}" if event.description else how
    return CalendarEntry(
        title=event.title,
        starts_at=event.starts_at,
        ends_at=event.ends_at,
        description=description,
        link=event.link if event.link_public else None,
        place=PRIVATE_LINK_PLACE,
        cancelled=event.status == EventStatus.CANCELLED,
    )


def named(event: Event) -> str:
    """'E12 “Heads together”' with the title made inert."""
    return f"{event_code(_id(event))} “{quote_user_text(event.title)}”"


# --- reading the form ------------------------------------------------------------------------


@dataclass(frozen=True)
class Details:
    """The checked fields of the event form."""

    title: str
    starts_at: datetime  # UTC
    duration: timedelta
    link: str
    description: str
    until: date | None


def event_form(
    action: str, heading: str, zone_name: str, prefill: dict[str, str] | None = None
) -> Form:
    p = prefill or {}
    return Form(
        action=action,
        title=heading,
        fields=(
            FormField(
                "title", "Title", required=True, max_length=MAX_TITLE, value=p.get("title", "")
            ),
            FormField(
                "start",
                f"Start (YYYY-MM-DD HH:MM, {zone_label(zone_name)})",
                required=True,
                max_length=20,
                value=p.get("start", ""),
                placeholder="2026-01-13 19:00",
            ),
            FormField(
                "duration",
                "Duration (minutes, or like 1h30m)",
                required=True,
                max_length=20,
                value=p.get("duration", ""),
                placeholder="60",
            ),
            FormField(
                "link",
                "Video link",
                required=True,
                max_length=MAX_LINK,
                value=p.get("link", ""),
                placeholder="https://…",
            ),
            FormField(
                "description",
                "Description",
                max_length=MAX_DESCRIPTION,
                multiline=True,
                value=p.get("description", ""),
            ),
            FormField(
                "repeat_until",
                "Repeat weekly until (YYYY-MM-DD; empty for a single event)",
                max_length=12,
                value=p.get("repeat_until", ""),
            ),
        ),
        submit_label="Save" if prefill else "Create",
    )


def parse_start(text: str, zone_name: str) -> datetime:
    """ "2026-01-13 19:00" on the zone's wall clock → UTC; a kind ValueError for anything else,
    including a time the clocks skip or pass twice."""
    match = _START.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"I couldn't read the start {text.strip()!r} — please write it as YYYY-MM-DD HH:MM, "
            "like 2026-01-13 19:00"
        )
    year, month, day, hour, minute = (int(g) for g in match.groups())
    try:
        on = date(year, month, day)
    except ValueError:
        raise ValueError(
            f"{year:04d}-{month:02d}-{day:02d} isn't a date on the calendar — please check the "
            "day and the month"
        ) from None
    if hour > 23 or minute > 59:
        raise ValueError(
            f"{hour:02d}:{minute:02d} isn't a time I understand — use the 24-hour clock, like 19:00"
        )
    zone, label = ZoneInfo(zone_name), zone_label(zone_name)
    local = datetime.combine(on, time(hour, minute), tzinfo=zone)
    shown = f"{on.isoformat()} {hour:02d}:{minute:02d}"
    if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        raise ValueError(
            f"{shown} doesn't exist in {label}: the clocks go forward that night and skip it. "
            "Please choose another time"
        )
    if local.replace(fold=1).utcoffset() != local.utcoffset():
        raise ValueError(
            f"{shown} happens twice in {label}: the clocks go back that night. Please choose a "
            "time outside the hour that repeats"
        )
    return local.astimezone(UTC)


def parse_event_duration(text: str) -> timedelta:
    """5 minutes to 12 hours, in whole minutes: "60", "90m", "1h30m"."""
    try:
        duration = parse_duration(text)
    except ValueError:
        duration = None
    if duration is None or not MIN_DURATION <= duration <= MAX_DURATION or duration.seconds % 60:
        raise ValueError(
            f"{text.strip()!r} doesn't work as the duration — an event can last from 5 minutes "
            "to 12 hours, in minutes (60) or hours and minutes (1h30m)"
        )
    return duration


def parse_link(text: str) -> str:
    link = text.strip()
    parts = urlsplit(link)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or " " in link:
        raise ValueError(
            "the video link should be a web address starting with https:// (or http://), "
            "like https://meet.example.org/heads-together"
        )
    return link


def one_year_after(day: date) -> date:
    try:
        return day.replace(year=day.year + 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year + 1, day=28)


def parse_until(text: str, first: date | None, today: date) -> date | None:
    """The last date a weekly series may fall on, or None for a single event."""
    if not text.strip():
        return None
    match = _DATE.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            "please write the repeat-until date as YYYY-MM-DD, like 2026-03-31, or leave it "
            "empty for a single event"
        )
    try:
        until = date(*(int(g) for g in match.groups()))
    except ValueError:
        raise ValueError(f"{text.strip()} isn't a date on the calendar — please check it") from None
    if first is not None and until < first:
        raise ValueError(
            f"the series would end ({long_date(until)}) before its first event "
            f"({long_date(first)}) — choose an end date on or after the start"
        )
    latest = one_year_after(today)
    if until > latest:
        raise ValueError(
            f"a weekly series can run for up to a year — until {long_date(latest)} at the latest"
        )
    return until


def read_details(
    values: dict[str, str],
    work: Work,
    *,
    outcome: str,
    keep_start: datetime | None = None,
    until_from_start: bool = True,
) -> Details:
    """The form's values checked and converted; any problem is a kind UserError that says
    nothing was `outcome` ("created", "changed"). An unchanged `keep_start` may lie in the past
    (an event under way can still have its link fixed)."""
    zone_name = work.zone_name
    zone = ZoneInfo(zone_name)
    reading = "title"  # the field being read, named in the error (a form shows it there)
    try:
        title = " ".join(values.get("title", "").split())
        if not title:
            raise ValueError("the event needs a title")
        reading = "start"
        starts_at = parse_start(values.get("start", ""), zone_name)
        if starts_at <= work.now and starts_at != keep_start:
            shown = starts_at.astimezone(zone)
            raise ValueError(
                f"the start, {_day(shown, work.now.astimezone(zone))} at {shown:%H:%M}, has "
                "already passed — events need a start in the future"
            )
        reading = "duration"
        duration = parse_event_duration(values.get("duration", ""))
        reading = "link"
        link = parse_link(values.get("link", ""))
        reading = "repeat_until"
        first = starts_at.astimezone(zone).date() if until_from_start else None
        until = parse_until(values.get("repeat_until", ""), first, work.now.astimezone(zone).date())
    except ValueError as exc:
        message = str(exc)
        raise UserError(f"Sorry — {message}. Nothing was {outcome}.", field=reading) from None
    description = values.get("description", "").strip()
    return Details(title, starts_at, duration, link, description, until)


# --- storage helpers -------------------------------------------------------------------------


async def find_event(session: AsyncSession, event_id: int) -> Event:
    event = await session.get(Event, event_id)
    if event is None:
        raise UserError(
            f"I can't find an event {event_code(event_id)}. /events lists the ones coming up."
        )
    return event


async def changeable_event(work: Work, event_id: int, doing: str) -> Event:
    """The event, if it can still be changed or cancelled (`doing`: "changed", "cancelled")."""
    event = await find_event(work.session, event_id)
    if event.status == EventStatus.CANCELLED:
        raise UserError(f"{named(event)} was cancelled, so it can't be {doing} any more.")
    if event.ends_at <= work.now:
        raise UserError(f"{named(event)} has already taken place, so it can't be {doing} now.")
    return event


async def series_of(session: AsyncSession, event: Event) -> EventSeries | None:
    if event.series_id is None:
        return None
    return await session.get(EventSeries, event.series_id)


async def later_in_series(session: AsyncSession, event: Event) -> list[Event]:
    """The scheduled occurrences of the event's series that come after it."""
    if event.series_id is None:
        return []
    return list(
        (
            await session.exec(
                select(Event)
                .where(
                    Event.series_id == event.series_id,
                    Event.status == EventStatus.SCHEDULED,
                    Event.starts_at > event.starts_at,
                )
                .order_by(col(Event.starts_at))
            )
        ).all()
    )


async def rsvp_counts(session: AsyncSession, event_ids: list[int]) -> dict[int, Counter[str]]:
    counts: dict[int, Counter[str]] = {i: Counter() for i in event_ids}
    if not event_ids:
        return counts
    rows = await session.exec(
        select(EventRsvp.event_id, EventRsvp.answer, func.count())
        .where(col(EventRsvp.event_id).in_(event_ids))
        .group_by(col(EventRsvp.event_id), col(EventRsvp.answer))
    )
    for event_id, answer, count in rows:
        counts[event_id][answer] = count
    return counts


async def rsvps_of(session: AsyncSession, event_id: int) -> list[EventRsvp]:
    return list(
        (
            await session.exec(
                select(EventRsvp)
                .where(EventRsvp.event_id == event_id)
                .order_by(col(EventRsvp.member_id))
            )
        ).all()
    )


async def answer_of(session: AsyncSession, event_id: int, member_id: int) -> str | None:
    row = await session.get(EventRsvp, (event_id, member_id))
    return row.answer if row is not None else None


async def schedule_reminders(work: Work, event: Event) -> list[timedelta]:
    """(Re)create the event's reminders; only those whose time is still ahead."""
    await work.session.exec(delete(EventReminder).where(col(EventReminder.event_id) == event.id))
    offsets = sorted(set(work.services.settings.events.reminder_offsets), reverse=True)
    made = []
    for offset in offsets:
        due = event.starts_at - offset
        if due > work.now:
            work.session.add(
                EventReminder(
                    event_id=_id(event), offset_seconds=int(offset.total_seconds()), due_at=due
                )
            )
            made.append(offset)
    await work.session.flush()
    return made


# --- messages --------------------------------------------------------------------------------


def rsvp_buttons(event: Event, counts: Counter[str] | None = None) -> tuple[Button, ...]:
    event_id = _id(event)

    def label(answer: str) -> str:
        name = ANSWER_LABELS[answer]
        return f"{name} ({counts.get(answer, 0)})" if counts is not None else name

    return tuple(Button(label(a), f"event.rsvp:{event_id}:{a}") for a in Answer.ALL)


def event_buttons(event: Event, counts: Counter[str]) -> tuple[Button, ...]:
    buttons = [*rsvp_buttons(event, counts), Button("Add to calendar", f"event.ics:{_id(event)}")]
    if not event.link_public:
        buttons.append(Button("Get the link", f"event.link:{_id(event)}"))
    return tuple(buttons)


def event_text(event: Event, series: EventSeries | None, work: Work) -> str:
    """The body of an announcement (and of a /events listing)."""
    lines = [
        f"📅 {quote_user_text(event.title)} ({event_code(_id(event))})",
        f"{span(event.starts_at, event.ends_at, work.zone_name, work.now)} · "
        f"{spoken(event.ends_at - event.starts_at)}",
    ]
    if event.description:
        lines.append(quote_user_text(event.description))
    if series is not None:
        lines.append(
            f"Part of a weekly series until {long_date(series.until)} — each week has its own "
            "replies."
        )
    if event.link_public:
        lines.append(f"Video link: {quote_user_text(event.link)}")
    else:
        lines.append(
            "The video link goes privately to everyone who replies Going or Maybe, with their "
            "reminders."
        )
    return shorten("\n".join(lines), MAX_TEXT)


def announcement(
    event: Event, series: EventSeries | None, counts: Counter[str], work: Work
) -> Message:
    if event.status == EventStatus.CANCELLED:
        when = span(event.starts_at, event.ends_at, work.zone_name, work.now)
        return Message(
            f"❌ Cancelled: {quote_user_text(event.title)} ({event_code(_id(event))})\n"
            f"This was planned for {when}. "
            "Sorry if you'd been looking forward to it — /events shows what's still coming up.",
            (Button("Update my calendar", f"event.ics:{_id(event)}"),),
        )
    return Message(event_text(event, series, work), event_buttons(event, counts))


async def refresh_announcement(work: Work, event: Event) -> None:
    """Edit the event's announcement in place to show its current details and counts."""
    counts = (await rsvp_counts(work.session, [_id(event)]))[_id(event)]
    series = await series_of(work.session, event)
    await work.edit(announce_key(_id(event)), announcement(event, series, counts, work))


async def announce(work: Work, event: Event, series: EventSeries | None) -> None:
    await work.send(
        ToChannel(Channel.ANNOUNCEMENTS),
        announcement(event, series, Counter(), work),
        key=announce_key(_id(event)),
    )
    await work.calendar(event)


# --- calendar files --------------------------------------------------------------------------


def calendar_file(
    events: list[Event], work: Work, filename: str, with_link: set[int]
) -> Attachment:
    """An .ics of `events`: a stable UID per occurrence, SEQUENCE bumped on every change,
    STATUS:CANCELLED once cancelled, times in the network's zone (with its VTIMEZONE). The link
    is included only for the events in `with_link`."""
    zone = ZoneInfo(work.zone_name)
    network = work.services.settings.network.name
    cal = icalendar.Calendar()
    cal.add("prodid", f"-//{network}//Events//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", f"{network} events")
    for event in events:
        item = icalendar.Event()
        item.add("uid", f"event-{_id(event)}@headsup")
        item.add("dtstamp", work.now)
        item.add("dtstart", event.starts_at.astimezone(zone))
        item.add("dtend", event.ends_at.astimezone(zone))
        item.add("summary", event.title)
        item.add("sequence", event.sequence)
        item.add("created", event.created_at)
        item.add("last-modified", event.updated_at)
        cancelled = event.status == EventStatus.CANCELLED
        item.add("status", "CANCELLED" if cancelled else "CONFIRMED")
        notes = [event.description] if event.description else []
        if _id(event) in with_link and not cancelled:
            item.add("location", event.link)
            item.add("url", event.link)
            notes.append(f"Video link: {event.link}")
        notes.append(f"{network} event {event_code(_id(event))}")
        item.add("description", "\n\n".join(notes))
        cal.add_component(item)
    if events:
        first = min(e.starts_at for e in events).astimezone(zone).date() - timedelta(days=1)
        last = max(e.ends_at for e in events).astimezone(zone).date() + timedelta(days=1)
        cal.add_missing_timezones(first_date=first, last_date=last)
    return Attachment(filename, cal.to_ical(), "text/calendar")


async def links_for(work: Work, member_id: int, events: list[Event]) -> set[int]:
    """The events whose link this member may see: public ones, and those they'll go to."""
    ids = [_id(e) for e in events]
    allowed = {_id(e) for e in events if e.link_public}
    if ids:
        rows = await work.session.exec(
            select(EventRsvp.event_id).where(
                EventRsvp.member_id == member_id,
                col(EventRsvp.event_id).in_(ids),
                col(EventRsvp.answer).in_(Answer.REMINDED),
            )
        )
        allowed.update(rows)
    return allowed


# --- creating --------------------------------------------------------------------------------


def _following(series: EventSeries, start: datetime) -> datetime:
    """The occurrence a week after `start`: the same wall-clock time, across clock changes."""
    zone = ZoneInfo(series.timezone)
    return local_moment(
        start.astimezone(zone).date() + timedelta(weeks=1), parse_time(series.local_time), zone
    )


def _occurrence(series: EventSeries, starts_at: datetime, now: datetime) -> Event:
    return Event(
        series_id=series.id,
        title=series.title,
        description=series.description,
        link=series.link,
        link_public=series.link_public,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=series.duration_minutes),
        created_by=series.created_by,
        created_at=now,
        updated_at=now,
    )


async def extend_series(work: Work, series: EventSeries, *, first: bool = False) -> list[Event]:
    """Make (and announce) every occurrence now within the horizon; `first` makes the next one
    even when it lies beyond it, so a new series always has a first date to show.

    Each occurrence is claimed by moving ``next_start_at`` on (compare-and-swap), so two
    instances never make the same one; an empty list with the row taken means another did."""
    made: list[Event] = []
    limit = work.now + HORIZON
    zone = ZoneInfo(series.timezone)
    while (
        series.status == SeriesStatus.ACTIVE
        and series.next_start_at is not None
        and (series.next_start_at <= limit or (first and not made))
    ):
        start = series.next_start_at
        following = _following(series, start)
        upcoming = following if following.astimezone(zone).date() <= series.until else None
        claimed = await work.session.exec(
            update(EventSeries)
            .where(col(EventSeries.id) == series.id, col(EventSeries.next_start_at) == start)
            .values(
                next_start_at=upcoming,
                status=SeriesStatus.ACTIVE if upcoming else SeriesStatus.ENDED,
                updated_at=work.now,
            )
        )
        if claimed.rowcount != 1:
            break
        series.next_start_at = upcoming
        series.status = SeriesStatus.ACTIVE if upcoming else SeriesStatus.ENDED
        if start <= work.now:
            continue  # missed while nothing ran: too late to announce
        event = _occurrence(series, start, work.now)
        work.session.add(event)
        await work.session.flush()
        await schedule_reminders(work, event)
        await announce(work, event, series)
        made.append(event)
        log.info("event.occurrence_created", event_id=event.id, series_id=series.id)
    return made


async def create_event(ctx: Context, details: Details) -> Reply:
    work = Work.of(ctx)
    zone_name = work.zone_name
    if details.until is None:
        event = Event(
            title=details.title,
            description=details.description,
            link=details.link,
            starts_at=details.starts_at,
            ends_at=details.starts_at + details.duration,
            created_by=ctx.member_id,
            created_at=ctx.now,
            updated_at=ctx.now,
        )
        ctx.session.add(event)
        await ctx.session.flush()
        reminders = await schedule_reminders(work, event)
        await announce(work, event, None)
        log.info("event.created", event_id=event.id, member_id=ctx.member_id)
        when = (
            f"Reminders with the link go to everyone who replies Going or Maybe, "
            f"{_and([spoken(r) for r in reminders])} before it starts."
            if reminders
            else "It starts too soon for a reminder, but anyone who replies Going or Maybe can "
            "get the link from the announcement."
        )
        text = (
            f"Done — {named(event)} is announced: "
            f"{span(event.starts_at, event.ends_at, zone_name, ctx.now)}.\n"
            "The video link is private for now: only people who reply Going or Maybe get it. "
            f"{when}"
        )
        first = event
    else:
        zone = ZoneInfo(zone_name)
        local_start = details.starts_at.astimezone(zone)
        series = EventSeries(
            title=details.title,
            description=details.description,
            link=details.link,
            timezone=zone_name,
            local_time=f"{local_start:%H:%M}",
            duration_minutes=int(details.duration.total_seconds() // 60),
            until=details.until,
            next_start_at=details.starts_at,
            created_by=ctx.member_id,
            created_at=ctx.now,
            updated_at=ctx.now,
        )
        ctx.session.add(series)
        await ctx.session.flush()
        made = await extend_series(work, series, first=True)
        log.info("event.series_created", series_id=series.id, events=len(made))
        first = made[0]
        text = (
            f"Done — a weekly series: {WEEKDAYS[local_start.weekday()].capitalize()}s at "
            f"{local_start:%H:%M} ({zone_label(zone_name)}) until {long_date(details.until)}.\n"
            f"{codes(made)} {'is' if len(made) == 1 else 'are'} announced now, each with its "
            f"own replies; later dates are added and announced {HORIZON.days // 7} weeks ahead.\n"
            "The video link is private for now: only people who reply Going or Maybe get it."
        )
    return Reply(
        messages=[
            Message(text, (Button("Show the link publicly", f"event.show_link:{_id(first)}"),))
        ]
    )


@registry.command("event create", roles={Role.COORDINATOR})
async def create(
    ctx: Context, details: Annotated[str, Arg(rest=True, metavar=CREATE_METAVAR)] = ""
) -> Form | Reply:
    """Coordinators: post a video-call event (a form, or all the details in one line)."""
    form = event_form("event.create", "New event", ctx.settings.network.timezone)
    if not details:
        return form
    words = split_words(details)
    if len(words) >= 3 and _DATE.fullmatch(words[1]) and _TIME.fullmatch(words[2]):
        words[1:3] = [f"{words[1]} {words[2]}"]  # the start, typed without its quotes
    if not 4 <= len(words) <= 5:
        raise UserError(
            f"To create an event in one line, give `/event create {CREATE_METAVAR}` — or type "
            "/event create on its own for a form. Nothing was created."
        )
    names = ("title", "start", "duration", "link", "description")
    values = dict(zip(names, words, strict=False))
    return await create_from(ctx, values)


@registry.form("event.create", roles={Role.COORDINATOR})
async def create_submitted(ctx: Context, *, values: dict[str, str]) -> Reply:
    """The new-event form, submitted."""
    return await create_from(ctx, values)


async def create_from(ctx: Context, values: dict[str, str]) -> Reply:
    checked = check_form(event_form("event.create", "", ctx.settings.network.timezone), values)
    return await create_event(ctx, read_details(checked, Work.of(ctx), outcome="created"))


@registry.action("event.show_link", roles={Role.COORDINATOR})
async def show_link(ctx: Context, event_id: int) -> Reply:
    """*Show the link publicly*: the link appears on the announcement (of the whole series)."""
    work = Work.of(ctx)
    event = await changeable_event(work, event_id, "changed")
    series = await series_of(ctx.session, event)
    targets = [event, *await later_in_series(ctx.session, event)]
    if series is not None:
        series.link_public = True
    for target in targets:
        if not target.link_public:
            target.link_public = True
            target.updated_at = ctx.now
            await refresh_announcement(work, target)
            await work.calendar(target)
    log.info("event.link_public", event_id=event_id, events=len(targets))
    return Reply(
        update=Message(
            f"Done — the video link now shows on the announcement for {codes(targets)}, so "
            "anyone can join."
        )
    )


# --- replies (RSVP), links and calendar files ------------------------------------------------


async def open_for_replies(work: Work, event_id: int) -> Event:
    event = await find_event(work.session, event_id)
    if event.status == EventStatus.CANCELLED:
        raise UserError(
            f"Sorry — {named(event)} was cancelled, so it isn't taking replies any more. "
            "/events shows what's still coming up."
        )
    if event.ends_at <= work.now:
        raise UserError(
            f"{named(event)} has already taken place, so replies are closed now. "
            "/events shows what's coming up next."
        )
    return event


@registry.action("event.rsvp")
async def rsvp(ctx: Context, event_id: int, answer: str) -> Message:
    """*Going* / *Maybe* / *Can't go*: one answer per member per event, changeable."""
    if answer not in Answer.ALL:
        raise UserError(NO_BUTTON)
    work = Work.of(ctx)
    event = await open_for_replies(work, event_id)
    row = await ctx.session.get(EventRsvp, (event_id, ctx.member_id))
    before = row.answer if row is not None else None
    if row is None:
        try:
            async with ctx.session.begin_nested():
                row = EventRsvp(
                    event_id=event_id, member_id=ctx.member_id, answer=answer, answered_at=ctx.now
                )
                ctx.session.add(row)
                await ctx.session.flush()
        except IntegrityError:  # a double press raced; the other one stored it
            row = await ctx.session.get(EventRsvp, (event_id, ctx.member_id))
            assert row is not None
    row.answer, row.answered_at = answer, ctx.now
    if before != answer:
        await refresh_announcement(work, event)
        log.info("event.rsvp", event_id=event_id, member_id=ctx.member_id, answer=answer)
    when = span(event.starts_at, event.ends_at, work.zone_name, ctx.now)
    extra = (Button("Add to calendar", f"event.ics:{event_id}"),)
    if answer == Answer.GOING:
        text = (
            f"You're going to {named(event)} — {when}. Lovely! I'll send you the video link in "
            "a reminder before it starts."
        )
        return Message(text, (*extra, Button("Get the link", f"event.link:{event_id}")))
    if answer == Answer.MAYBE:
        text = (
            f"You're a maybe for {named(event)} — {when}. I'll send you a reminder with the "
            "video link, just in case."
        )
        return Message(text, (*extra, Button("Get the link", f"event.link:{event_id}")))
    return Message(
        f"Thanks for letting us know you can't make {named(event)}. You won't get reminders "
        "for it — and if things change, you can reply again any time."
    )


@registry.action("event.link")
async def get_link(ctx: Context, event_id: int) -> str:
    """*Get the link*: privately, to those who replied Going or Maybe."""
    work = Work.of(ctx)
    event = await find_event(ctx.session, event_id)
    if event.status == EventStatus.CANCELLED:
        return f"Sorry — {named(event)} was cancelled, so there's no call to join."
    if event.ends_at <= ctx.now:
        return f"{named(event)} has already taken place."
    answer = await answer_of(ctx.session, event_id, ctx.member_id)
    if not event.link_public and answer not in Answer.REMINDED:
        return (
            f"The video link for {named(event)} goes to everyone who's coming — just tap Going "
            "or Maybe on the event first, and I'll share it with you straight away."
        )
    log.info("event.link_given", event_id=event_id, member_id=ctx.member_id)
    when = span(event.starts_at, event.ends_at, work.zone_name, ctx.now)
    return f"Here's the video link for {named(event)}, {when}:\n{event.link}"


@registry.action("event.ics")
async def calendar_for_event(ctx: Context, event_id: int) -> Message:
    """*Add to calendar*: one event's .ics."""
    work = Work.of(ctx)
    event = await find_event(ctx.session, event_id)
    allowed = await links_for(work, ctx.member_id, [event])
    code = event_code(event_id)
    if event.status == EventStatus.CANCELLED:
        text = f"Here's {code} as cancelled — open the file to take it out of your calendar."
    else:
        text = f"Here's {code} for your calendar — open the file to add it (or to update it)."
    return Message(text, attachment=calendar_file([event], work, f"{code}.ics", allowed))


@registry.command("events")
async def events(ctx: Context) -> Reply | str:
    """Upcoming events, with RSVP buttons and a calendar file."""
    work = Work.of(ctx)
    upcoming = list(
        (
            await ctx.session.exec(
                select(Event)
                .where(Event.status == EventStatus.SCHEDULED, Event.ends_at > ctx.now)
                .order_by(col(Event.starts_at), col(Event.id))
            )
        ).all()
    )
    if not upcoming:
        return (
            "Nothing is planned just now. New events are announced in the announcements "
            "channel, and /events will list them here."
        )
    ids = [_id(e) for e in upcoming]
    counts = await rsvp_counts(ctx.session, ids)
    mine = dict(
        (
            await ctx.session.exec(
                select(EventRsvp.event_id, EventRsvp.answer).where(
                    EventRsvp.member_id == ctx.member_id, col(EventRsvp.event_id).in_(ids)
                )
            )
        ).all()
    )
    allowed = await links_for(work, ctx.member_id, upcoming)
    count = f"{len(upcoming)} event{'s' if len(upcoming) != 1 else ''}"
    header = f"Coming up: {count}. The calendar file has all of them — open it to add them."
    if len(upcoming) > MAX_LISTED:
        header += f" Here are the next {MAX_LISTED}."
    reply = Reply(
        messages=[Message(header, attachment=calendar_file(upcoming, work, "events.ics", allowed))]
    )
    for event in upcoming[:MAX_LISTED]:
        series = await series_of(ctx.session, event)  # from the session's identity map after one
        text = event_text(event, series, work)
        if _id(event) in mine:
            text += f"\nYou replied: {ANSWER_LABELS[mine[_id(event)]]}."
        reply.messages.append(Message(text, event_buttons(event, counts[_id(event)])))
    return reply


async def events_to_choose(
    services: Services, actor: Actor, typed: str = "", *, limit: int = 25, max_label: int = 100
) -> list[tuple[str, str]]:
    """Upcoming events a coordinator can change or cancel, soonest first, as (label, id) pairs
    like ("E12 — Heads together (Tue 13 Jan 19:00)", "E12"): those whose label contains what
    has been typed, for a platform to suggest. Anyone else is offered none."""
    if actor.stranger or not actor.has(Role.COORDINATOR):
        return []
    zone = ZoneInfo(services.settings.network.timezone)
    now = services.clock.now()
    needle = typed.strip().lower()
    async with services.database.session() as session:
        upcoming = (
            await session.exec(
                select(Event)
                .where(Event.status == EventStatus.SCHEDULED, Event.ends_at > now)
                .order_by(col(Event.starts_at), col(Event.id))
            )
        ).all()
    found: list[tuple[str, str]] = []
    for event in upcoming:
        code, local = event_code(_id(event)), event.starts_at.astimezone(zone)
        when = f" ({local:%a} {local.day} {local:%b %H:%M})"
        title = shorten(" ".join(event.title.split()), max_label - len(code) - len(when) - 3)
        label = f"{code} — {title}{when}"
        if needle in label.lower():
            found.append((label, code))
            if len(found) == limit:
                break
    return found


# --- telling people what changed ------------------------------------------------------------


@dataclass
class Notices:
    """DMs to people who replied, gathered so each person gets one message per change."""

    sections: dict[int, list[tuple[Event, str]]] = field(default_factory=dict)

    def add(self, member_id: int, event: Event, text: str) -> None:
        self.sections.setdefault(member_id, []).append((event, text))

    async def send(self, work: Work, heading_many: str, buttons_for_one) -> int:
        for member_id, items in sorted(self.sections.items()):
            if len(items) == 1:
                event, text = items[0]
                message = Message(shorten(text, MAX_TEXT), buttons_for_one(event))
            else:
                body = "\n\n".join(text for _, text in items)
                message = Message(shorten(f"{heading_many}\n\n{body}", MAX_TEXT))
            await work.send(ToMember(member_id), message)
        return len(self.sections)


@dataclass(frozen=True)
class Before:
    """An event's details before a change, to say what changed."""

    title: str
    description: str
    link: str
    starts_at: datetime
    ends_at: datetime

    @classmethod
    def of(cls, event: Event) -> Before:
        return cls(event.title, event.description, event.link, event.starts_at, event.ends_at)


def change_lines(before: Before, event: Event, work: Work, *, with_link: bool) -> list[str]:
    lines = []
    if (before.starts_at, before.ends_at) != (event.starts_at, event.ends_at):
        old = span(before.starts_at, before.ends_at, work.zone_name, work.now)
        new = span(event.starts_at, event.ends_at, work.zone_name, work.now)
        lines.append(f"• Time: {old} → {new}")
    if before.title != event.title:
        lines.append(
            f"• Title: “{quote_user_text(before.title)}” → “{quote_user_text(event.title)}”"
        )
    if before.description != event.description:
        text = shorten(quote_user_text(event.description), 300) if event.description else "removed"
        lines.append(f"• Description: {text}")
    if before.link != event.link:
        if with_link:
            lines.append(f"• New video link: {event.link}")
        else:
            lines.append("• The video link has changed — reply Going or Maybe to get the new one.")
    return lines


async def notice_change(work: Work, notices: Notices, before: Before, event: Event) -> None:
    for row in await rsvps_of(work.session, _id(event)):
        lines = change_lines(
            before,
            event,
            work,
            with_link=row.answer in Answer.REMINDED or event.link_public,
        )
        if not lines:
            continue
        text = (
            f"An update about {named(event)} — you replied {ANSWER_LABELS[row.answer]}:\n"
            + "\n".join(lines)
        )
        notices.add(row.member_id, event, text)


async def notice_cancel(work: Work, notices: Notices, event: Event) -> None:
    when = span(event.starts_at, event.ends_at, work.zone_name, work.now)
    for row in await rsvps_of(work.session, _id(event)):
        notices.add(
            row.member_id,
            event,
            f"Sorry to let you know: {named(event)} on {when} has been cancelled. "
            f"(You had replied {ANSWER_LABELS[row.answer]}.)",
        )


def _change_buttons(event: Event) -> tuple[Button, ...]:
    return (*rsvp_buttons(event), Button("Update my calendar", f"event.ics:{_id(event)}"))


def _cancel_buttons(event: Event) -> tuple[Button, ...]:
    return (Button("Update my calendar", f"event.ics:{_id(event)}"),)


def _people(count: int) -> str:
    return "1 person" if count == 1 else f"{count} people"


# --- editing ---------------------------------------------------------------------------------


def prefill(event: Event, series: EventSeries | None, zone_name: str) -> dict[str, str]:
    local = event.starts_at.astimezone(ZoneInfo(zone_name))
    minutes = int((event.ends_at - event.starts_at).total_seconds() // 60)
    hours, mins = divmod(minutes, 60)
    return {
        "title": event.title,
        "start": f"{local:%Y-%m-%d %H:%M}",
        "duration": (f"{hours}h" if hours else "") + (f"{mins}m" if mins or not hours else ""),
        "link": event.link,
        "description": event.description,
        "repeat_until": series.until.isoformat() if series is not None else "",
    }


@registry.command("event edit", roles={Role.COORDINATOR})
async def edit(
    ctx: Context, event_id: Annotated[int, Arg(parse=parse_event_code, metavar="id")]
) -> Form:
    """Coordinators: change an event; everyone who replied is told."""
    work = Work.of(ctx)
    event = await changeable_event(work, event_id, "changed")
    series = await series_of(ctx.session, event)
    return event_form(
        f"event.save:{event_id}",
        f"Edit {event_code(event_id)}",
        work.zone_name,
        prefill(event, series, work.zone_name),
    )


def _differs(event: Event, details: Details) -> bool:
    return (
        event.title != details.title
        or event.description != details.description
        or event.link != details.link
        or event.starts_at != details.starts_at
        or event.ends_at - event.starts_at != details.duration
    )


async def _read_edit(work: Work, event: Event, values: dict[str, str]) -> Details:
    form = event_form(f"event.save:{_id(event)}", "", work.zone_name)
    checked = check_form(form, values)
    return read_details(
        checked,
        work,
        outcome="changed",
        keep_start=event.starts_at,
        until_from_start=event.series_id is None,
    )


@registry.form("event.save", roles={Role.COORDINATOR})
async def save(ctx: Context, event_id: int, *, values: dict[str, str]) -> Reply | Message | str:
    """The edit form, submitted: a series occurrence asks whether the rest change too."""
    work = Work.of(ctx)
    event = await changeable_event(work, event_id, "changed")
    details = await _read_edit(work, event, values)
    series = await series_of(ctx.session, event)
    until_changed = details.until != (series.until if series is not None else None)
    if not _differs(event, details) and not until_changed:
        return f"That's all as it was, so {named(event)} is unchanged."
    if series is None or not _differs(event, details):
        # A single event, or only the series' end date: nothing to choose.
        return await apply_edit(work, event, details, rest=series is not None)
    later = await later_in_series(ctx.session, event)
    if not later:
        return await apply_edit(work, event, details, rest=True)
    await ctx.session.exec(
        delete(EventDraft).where(col(EventDraft.created_at) < ctx.now - DRAFT_LIFETIME)
    )
    draft = EventDraft(
        event_id=event_id,
        member_id=ctx.member_id,
        form_values=json.dumps(values),
        created_at=ctx.now,
    )
    ctx.session.add(draft)
    await ctx.session.flush()
    return Message(
        f"{named(event)} is part of a weekly series. Should this change apply to "
        f"{event_code(event_id)} only, or to the rest of the series too ({codes(later)})?",
        (
            Button("Just this one", f"event.apply:{draft.id}:one"),
            Button("This and the rest of the series", f"event.apply:{draft.id}:rest"),
        ),
    )


@registry.action("event.apply", roles={Role.COORDINATOR})
async def apply(ctx: Context, draft_id: int, scope: str) -> Reply:
    """*Just this one* / *This and the rest of the series*, after the edit form."""
    if scope not in ("one", "rest"):
        raise UserError(NO_BUTTON)
    draft = await ctx.session.get(EventDraft, draft_id)
    if (
        draft is None
        or draft.member_id != ctx.member_id
        or draft.created_at < ctx.now - DRAFT_LIFETIME
    ):
        raise UserError(
            "That change has already been saved, or it's too old now — /event edit starts again."
        )
    work = Work.of(ctx)
    event = await changeable_event(work, draft.event_id, "changed")
    details = await _read_edit(work, event, json.loads(draft.form_values))
    await ctx.session.delete(draft)
    return Reply(update=Message(await apply_edit(work, event, details, rest=scope == "rest")))


def _apply_fields(event: Event, details: Details, now: datetime) -> None:
    event.title, event.description, event.link = details.title, details.description, details.link
    event.starts_at, event.ends_at = details.starts_at, details.starts_at + details.duration
    event.sequence += 1
    event.updated_at = now


async def apply_edit(work: Work, event: Event, details: Details, *, rest: bool) -> str:
    """Change the event (and, with `rest`, the later ones in its series); update every
    announcement; tell everyone who replied. Returns the coordinator's confirmation."""
    zone = ZoneInfo(work.zone_name)
    series = await series_of(work.session, event)
    notices = Notices()
    changed: list[Event] = []
    renamed: list[Event] = []  # unchanged themselves, but their announcement shows the series
    cancelled: list[Event] = []
    note = ""
    original = Before.of(event)
    later = await later_in_series(work.session, event) if rest and series is not None else []

    if _differs(event, details):
        _apply_fields(event, details, work.now)
        changed.append(event)
        await _after_change(work, notices, original, event)
    old_local = original.starts_at.astimezone(zone)
    new_local = details.starts_at.astimezone(zone)
    moved = original.starts_at != details.starts_at
    resized = original.ends_at - original.starts_at != details.duration
    for other in later:
        before = Before.of(other)
        if original.title != details.title:
            other.title = details.title
        if original.description != details.description:
            other.description = details.description
        if original.link != details.link:
            other.link = details.link
        length = details.duration if resized else other.ends_at - other.starts_at
        if moved:
            day = other.starts_at.astimezone(zone).date() + (new_local.date() - old_local.date())
            other.starts_at = local_moment(day, new_local.time().replace(tzinfo=None), zone)
        other.ends_at = other.starts_at + length
        if Before.of(other) != before:
            other.sequence += 1
            other.updated_at = work.now
            changed.append(other)
            await _after_change(work, notices, before, other)

    if series is not None and rest:
        shift = new_local.date() - old_local.date()
        until = details.until or new_local.date()
        if moved and details.until == series.until:
            until += shift  # the series moved as a whole: it keeps its number of dates
        if until < new_local.date():
            raise UserError(
                f"Sorry — the series would end ({long_date(until)}) before this date "
                f"({long_date(new_local.date())}). Nothing was changed."
            )
        if original.title != details.title:
            series.title = details.title
        if original.description != details.description:
            series.description = details.description
        if original.link != details.link:
            series.link = details.link
        if resized:
            series.duration_minutes = int(details.duration.total_seconds() // 60)
        if moved:
            series.local_time = f"{new_local:%H:%M}"
            if series.next_start_at is not None:
                day = series.next_start_at.astimezone(zone).date() + shift
                series.next_start_at = local_moment(day, parse_time(series.local_time), zone)
        until_moved = until != series.until
        cancelled = await _set_until(work, notices, series, until, later)
        series.updated_at = work.now
        if until_moved:  # every remaining announcement names the end date
            renamed = [e for e in [event, *later] if e not in changed and e not in cancelled]
            note += f" The series now runs until {long_date(until)}."

        added = await extend_series(work, series)
        if added:
            note += f" Newly added and announced: {codes(added)}."
    elif series is not None and details.until != series.until:
        note += (
            " The series' end date stays as it was — it changes only with “This and the rest of "
            "the series”."
        )
    elif series is None and details.until is not None:
        added = await _make_series(work, event, details.until)
        note += f" It now repeats weekly until {long_date(details.until)}"
        note += f"; also announced: {codes(added)}." if added else "."

    for target in [*changed, *renamed]:
        await refresh_announcement(work, target)
    for target in changed:
        await work.calendar(target)
    told = await notices.send(work, "Some events you replied to have changed:", _change_buttons)
    log.info(
        "event.edited",
        event_id=event.id,
        changed=len(changed),
        cancelled=len(cancelled),
        notified=told,
    )
    parts = []
    if changed:
        posts = "its announcement" if len(changed) == 1 else "their announcements"
        parts.append(f"Saved — {codes(changed)} updated, with {posts} edited to match.")
    if cancelled:
        parts.append(f"Cancelled, as they fall after the new end date: {codes(cancelled)}.")
    if not parts:
        parts.append("Saved.")
    if told:
        parts.append(f"{_people(told)} who replied {'has' if told == 1 else 'have'} been told.")
    return " ".join(parts) + note


async def _after_change(work: Work, notices: Notices, before: Before, event: Event) -> None:
    if before.starts_at != event.starts_at:
        await schedule_reminders(work, event)
    await notice_change(work, notices, before, event)


async def _set_until(
    work: Work, notices: Notices, series: EventSeries, until: date, later: list[Event]
) -> list[Event]:
    """Move the series' end date: cancel occurrences after it, or let it grow again."""
    zone = ZoneInfo(series.timezone)
    extended = until > series.until
    series.until = until
    dropped = [e for e in later if e.starts_at.astimezone(zone).date() > until]
    for event in dropped:
        await _cancel(work, notices, event)
    if series.next_start_at is not None and series.next_start_at.astimezone(zone).date() > until:
        series.next_start_at, series.status = None, SeriesStatus.ENDED
    elif series.next_start_at is None and extended:
        last = (
            await work.session.exec(
                select(func.max(Event.starts_at)).where(Event.series_id == series.id)
            )
        ).first()
        if last is not None:
            following = _following(series, last)
            if following.astimezone(zone).date() <= until:
                series.next_start_at, series.status = following, SeriesStatus.ACTIVE
    return dropped


async def _make_series(work: Work, event: Event, until: date) -> list[Event]:
    """A single event edited to repeat weekly: it becomes the first occurrence of a series."""
    zone = ZoneInfo(work.zone_name)
    local = event.starts_at.astimezone(zone)
    series = EventSeries(
        title=event.title,
        description=event.description,
        link=event.link,
        link_public=event.link_public,
        timezone=work.zone_name,
        local_time=f"{local:%H:%M}",
        duration_minutes=int((event.ends_at - event.starts_at).total_seconds() // 60),
        until=until,
        created_by=event.created_by,
        created_at=work.now,
        updated_at=work.now,
    )
    work.session.add(series)
    await work.session.flush()
    event.series_id = series.id
    following = _following(series, event.starts_at)
    if following.astimezone(zone).date() <= until:
        series.next_start_at = following
    else:
        series.status = SeriesStatus.ENDED
    await work.session.flush()
    await refresh_announcement(work, event)  # it now shows that it repeats
    return await extend_series(work, series)


# --- cancelling ------------------------------------------------------------------------------


@registry.command("event cancel", roles={Role.COORDINATOR})
async def cancel(
    ctx: Context, event_id: Annotated[int, Arg(parse=parse_event_code, metavar="id")]
) -> Message:
    """Coordinators: cancel an event; everyone who replied is told."""
    work = Work.of(ctx)
    event = await changeable_event(work, event_id, "cancelled")
    when = span(event.starts_at, event.ends_at, work.zone_name, ctx.now)
    replied = len(await rsvps_of(ctx.session, event_id))
    told = f"Everyone who replied ({_people(replied)}) will be told." if replied else ""
    later = await later_in_series(ctx.session, event)
    if later:
        return Message(
            f"{named(event)} on {when} is part of a weekly series. Cancel just this date, or "
            f"this one and the rest of the series ({codes(later)})? {told}".strip(),
            (
                Button(
                    "Cancel just this one", f"event.cancel_confirm:{event_id}:one", Style.DANGER
                ),
                Button(
                    "Cancel this and the rest",
                    f"event.cancel_confirm:{event_id}:rest",
                    Style.DANGER,
                ),
                Button("Keep it", f"event.keep:{event_id}"),
            ),
        )
    return Message(
        f"Cancel {named(event)} on {when}? {told}".strip(),
        (
            Button("Yes, cancel it", f"event.cancel_confirm:{event_id}:one", Style.DANGER),
            Button("Keep it", f"event.keep:{event_id}"),
        ),
    )


@registry.action("event.keep", roles={Role.COORDINATOR})
async def keep(ctx: Context, event_id: int) -> Reply:
    """*Keep it*: nothing is cancelled."""
    return Reply(update=Message(f"Okay — {event_code(event_id)} goes ahead as planned."))


@registry.action("event.cancel_confirm", roles={Role.COORDINATOR})
async def cancel_confirmed(ctx: Context, event_id: int, scope: str) -> Reply:
    """The cancel confirmation: this event only, or the rest of its series too."""
    if scope not in ("one", "rest"):
        raise UserError(NO_BUTTON)
    work = Work.of(ctx)
    event = await changeable_event(work, event_id, "cancelled")
    targets = [event]
    if scope == "rest":
        targets += await later_in_series(ctx.session, event)
        series = await series_of(ctx.session, event)
        if series is not None:
            series.next_start_at, series.status = None, SeriesStatus.ENDED
            series.updated_at = ctx.now
    notices = Notices()
    for target in targets:
        await _cancel(work, notices, target)
    told = await notices.send(
        work, "Sorry to let you know about some cancellations:", _cancel_buttons
    )
    log.info("event.cancelled", event_id=event_id, events=len(targets), notified=told)
    text = (
        f"Cancelled {codes(targets)}; the announcement{'s' if len(targets) > 1 else ''} now say so."
    )
    if told:
        text += f" {_people(told)} who replied {'has' if told == 1 else 'have'} been told."
    return Reply(update=Message(text))


async def _cancel(work: Work, notices: Notices, event: Event) -> None:
    event.status = EventStatus.CANCELLED
    event.cancelled_at = event.updated_at = work.now
    event.sequence += 1
    await work.session.exec(
        delete(EventReminder).where(
            col(EventReminder.event_id) == event.id, col(EventReminder.sent_at).is_(None)
        )
    )
    await refresh_announcement(work, event)
    await work.calendar(event)
    await notice_cancel(work, notices, event)


# --- due work: reminders and the series horizon ----------------------------------------------


async def _next_reminder_due(services: Services) -> datetime | None:
    async with services.database.session() as session:
        return (
            await session.exec(
                select(func.min(EventReminder.due_at)).where(col(EventReminder.sent_at).is_(None))
            )
        ).first()


@registry.due("events.reminders", next_due=_next_reminder_due)
async def send_due_reminders(services: Services, now: datetime) -> int:
    """Remind everyone Going or Maybe, with the video link, at each configured offset."""
    async with services.database.session() as session:
        due = (
            await session.exec(
                select(EventReminder.event_id)
                .where(col(EventReminder.sent_at).is_(None), EventReminder.due_at <= now)
                .distinct()
            )
        ).all()
    sent = 0
    for event_id in sorted(due):
        sent += await _remind(services, event_id, now)
    return sent


async def _remind(services: Services, event_id: int, now: datetime) -> int:
    """Claim the event's due reminders (compare-and-swap on ``sent_at``) and queue one DM each
    to Going and Maybe, in one transaction. After downtime, several due at once send one."""
    async with services.database.session() as session:
        due = (
            await session.exec(
                select(EventReminder.id).where(
                    EventReminder.event_id == event_id,
                    col(EventReminder.sent_at).is_(None),
                    EventReminder.due_at <= now,
                )
            )
        ).all()
        claimed = 0
        for reminder_id in due:
            result = await session.exec(
                update(EventReminder)
                .where(col(EventReminder.id) == reminder_id, col(EventReminder.sent_at).is_(None))
                .values(sent_at=now)
            )
            claimed += result.rowcount
        if not claimed:
            await session.rollback()
            return 0
        event = await session.get(Event, event_id)
        sent = 0
        if event is not None and event.status == EventStatus.SCHEDULED and event.starts_at > now:
            work = Work(services, session, now)
            message = reminder_message(event, work)
            for row in await rsvps_of(session, event_id):
                if row.answer in Answer.REMINDED:
                    await work.send(ToMember(row.member_id), message, priority=Priority.BULK)
                    sent += 1
        await session.commit()
    log.info("event.reminded", event_id=event_id, members=sent)
    return sent


def reminder_message(event: Event, work: Work) -> Message:
    when = span(event.starts_at, event.ends_at, work.zone_name, work.now)
    return Message(
        f"A reminder: {named(event)} starts in {spoken(event.starts_at - work.now)} — {when}.\n"
        f"Join the video call here: {event.link}\n"
        "See you there — and if you can't make it after all, that's fine, just let us know.",
        (Button("I can't make it now", f"event.rsvp:{_id(event)}:{Answer.NO}"),),
    )


async def _next_series_due(services: Services) -> datetime | None:
    async with services.database.session() as session:
        earliest = (
            await session.exec(
                select(func.min(EventSeries.next_start_at)).where(
                    EventSeries.status == SeriesStatus.ACTIVE
                )
            )
        ).first()
    return earliest - HORIZON if earliest is not None else None


@registry.due("events.series", next_due=_next_series_due)
async def extend_due_series(services: Services, now: datetime) -> int:
    """Make and announce each series' occurrences as they come within the horizon."""
    async with services.database.session() as session:
        due = (
            await session.exec(
                select(EventSeries.id).where(
                    EventSeries.status == SeriesStatus.ACTIVE,
                    col(EventSeries.next_start_at).is_not(None),
                    col(EventSeries.next_start_at) <= now + HORIZON,
                )
            )
        ).all()
    made = 0
    for series_id in due:
        async with services.database.session() as session:
            series = await session.get(EventSeries, series_id)
            if series is None:
                continue
            added = await extend_series(Work(services, session, now), series)
            await session.commit()
        made += len(added)
    return made
