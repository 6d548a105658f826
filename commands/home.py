"""A member's home page: what a platform shows on its own home screen (Slack's App Home tab).

In one place: my check-in settings and recent weeks, the events coming up with my replies, and —
for a coach — whether I'm on duty and my open cases. It only reads; every button on it runs an
action the features already have. It is a list of neutral messages, so any platform can show it;
a platform asks for it with ``Core.home``, which turns strangers away like any other request.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlmodel import col, func, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core import Context, Role, Services
from bot.ui import Button, Message, Style
from commands.checkin import HISTORY_WEEKS, SPARKS, label, when
from commands.events import (
    ANSWER_LABELS,
    Work,
    event_buttons,
    event_text,
    rsvp_counts,
    series_of,
)
from commands.registry import registry
from commands.schedule import describe_weekly
from commands.support import coach_cases, shown_as
from storage.checkin import CheckinSubscription, CheckinWeek, SubscriptionStatus
from storage.events import Event, EventRsvp, EventStatus
from storage.models import Member
from storage.support import CoachProfile, OfferStatus, SupportOffer

if TYPE_CHECKING:
    from bot.config import Settings

HOME_EVENTS = 5  # events shown one by one; /events lists them all
HOME_CASES = 10  # cases shown with their own Reply button


@registry.home
async def home(ctx: Context) -> list[Message]:
    """The home page of the person asking (a member from their first visit on)."""
    return await home_page(ctx.services, ctx.session, ctx.member_id, ctx.now)


async def home_page(
    services: Services, session: AsyncSession, member_id: int, now: datetime
) -> list[Message]:
    """The home page of member `member_id`, as it stands at `now`."""
    member = await session.get(Member, member_id)
    if member is None:
        return [welcome(services.settings)]
    page = [welcome(services.settings)]
    page.append(await checkin_part(session, member_id, now))
    page += await events_part(services, session, member_id, now)
    if Role.COACH.value in member.role_names():
        page.append(await coach_part(session, member_id, now))
    return page


def welcome(settings: Settings) -> Message:
    return Message(
        f"Welcome to {settings.network.name} — a place to check in with yourself, talk to a "
        "fellow school leader when things are hard, and join the network's calls. Only you "
        "can see this page.",
        (
            Button("Check in", "cmd:checkin", Style.PRIMARY),
            Button("Talk to a coach", "cmd:support"),
            Button("Upcoming events", "cmd:events"),
        ),
    )


# --- check-ins --------------------------------------------------------------------------------


async def checkin_part(session: AsyncSession, member_id: int, now: datetime) -> Message:
    """My check-in settings, and my last weeks as a sparkline."""
    sub = await session.get(CheckinSubscription, member_id)
    if sub is None or sub.status == SubscriptionStatus.STOPPED:
        return Message(
            "*Weekly check-ins* are off for you. They're a private, one-tap way to notice how "
            "you're doing each week — only you ever see your answers.",
            (Button("Start weekly check-ins", "cmd:checkin", Style.PRIMARY),),
        )
    lines = ["*Your weekly check-in*"]
    if sub.status == SubscriptionStatus.PAUSED:
        until = f"until {when(sub.paused_until, sub.timezone)}" if sub.paused_until else "for now"
        lines.append(f"Paused {until}.")
        buttons = (Button("Resume check-ins", "checkin.resume", Style.PRIMARY),)
    else:
        lines.append(
            f"Comes on {describe_weekly(sub.weekday, sub.time, sub.timezone)}; the next is "
            f"{when(sub.next_prompt_at, sub.timezone)}."
        )
        buttons = (
            Button("Check in now", "cmd:checkin", Style.PRIMARY),
            Button("Pause", "checkin.pause_menu"),
        )
    weeks = await recent_weeks(session, member_id, now)
    if weeks:
        spark = "".join(SPARKS[w.score - 1] if w.score else "·" for w in weeks)
        latest = weeks[-1]
        answer = (
            label(latest.score)
            if latest.score
            else ("skipped" if latest.skipped else "no answer yet")
        )
        span = "week" if len(weeks) == 1 else f"{len(weeks)} weeks"
        lines.append(f"Your last {span}: {spark} (latest: {answer})")
    else:
        lines.append("No answers yet.")
    lines.append("Change when it comes with `/checkin settings <day> <HH:MM> [timezone]`.")
    return Message("\n".join(lines), buttons)


async def recent_weeks(session: AsyncSession, member_id: int, now: datetime) -> list[CheckinWeek]:
    """My last weeks that were prompted or answered, oldest first."""
    weeks = list(
        (
            await session.exec(
                select(CheckinWeek)
                .where(
                    CheckinWeek.member_id == member_id,
                    CheckinWeek.opens_at <= now,
                    or_(
                        col(CheckinWeek.prompted_at).is_not(None),
                        col(CheckinWeek.score).is_not(None),
                        col(CheckinWeek.skipped),
                    ),
                )
                .order_by(col(CheckinWeek.opens_at).desc())
                .limit(HISTORY_WEEKS)
            )
        ).all()
    )
    early = (
        await session.exec(
            select(CheckinWeek).where(
                CheckinWeek.member_id == member_id,
                CheckinWeek.opens_at > now,
                col(CheckinWeek.score).is_not(None),
            )
        )
    ).first()
    weeks.reverse()
    if early is not None:  # answered ahead of its prompt: it counts as this week's
        weeks = [*weeks[-(HISTORY_WEEKS - 1) :], early] if weeks else [early]
    return weeks


# --- events -----------------------------------------------------------------------------------


async def events_part(
    services: Services, session: AsyncSession, member_id: int, now: datetime
) -> list[Message]:
    """The next events, each with my reply and the RSVP buttons."""
    upcoming = list(
        (
            await session.exec(
                select(Event)
                .where(Event.status == EventStatus.SCHEDULED, Event.ends_at > now)
                .order_by(col(Event.starts_at), col(Event.id))
                .limit(HOME_EVENTS + 1)
            )
        ).all()
    )
    if not upcoming:
        return [
            Message(
                "*Coming up*\nNothing is planned just now — new events are announced in the "
                "announcements channel."
            )
        ]
    shown = upcoming[:HOME_EVENTS]
    ids = [e.id for e in shown if e.id is not None]
    counts = await rsvp_counts(session, ids)
    mine = dict(
        (
            await session.exec(
                select(EventRsvp.event_id, EventRsvp.answer).where(
                    EventRsvp.member_id == member_id, col(EventRsvp.event_id).in_(ids)
                )
            )
        ).all()
    )
    more = " (more with /events)" if len(upcoming) > HOME_EVENTS else ""
    page = [Message(f"*Coming up*{more}")]
    work = Work(services, session, now)
    for event in shown:
        assert event.id is not None
        text = event_text(event, await series_of(session, event), work)
        reply = mine.get(event.id)
        text += f"\nYou replied: {ANSWER_LABELS[reply]}." if reply else "\nYou haven't replied."
        page.append(Message(text, event_buttons(event, counts[event.id])))
    return page


# --- coaching ---------------------------------------------------------------------------------


async def coach_part(session: AsyncSession, member_id: int, now: datetime) -> Message:
    """For a coach: on duty or not, offers waiting, and each open case with *Reply*."""
    profile = await session.get(CoachProfile, member_id)
    duty = "on duty" if profile is not None and profile.on_duty else "off duty"
    lines = [f"*Coaching* — you're {duty} (`/coach on`, `/coach off`)."]
    waiting = (
        await session.exec(
            select(func.count()).where(
                SupportOffer.coach_member_id == member_id,
                SupportOffer.status == OfferStatus.PENDING,
            )
        )
    ).one()
    if waiting:
        lines.append(
            f"{waiting} request{'s' if waiting != 1 else ''} waiting for your answer — "
            "Accept or Pass in our direct messages."
        )
    cases = await coach_cases(session, member_id)
    buttons: list[Button] = []
    if not cases:
        lines.append("You have no open conversations.")
    for case in cases[:HOME_CASES]:
        assert case.id is not None
        since = when(case.accepted_at or now, profile.timezone if profile else "UTC")
        lines.append(f"• {case.number} with {await shown_as(session, case)}, since {since}")
        buttons.append(Button(f"Reply to {case.number}", f"support.reply:{case.id}"))
    if len(cases) > HOME_CASES:
        lines.append(f"…and {len(cases) - HOME_CASES} more (see /coach cases).")
    return Message("\n".join(lines), tuple(buttons))
