"""Weekly check-ins: a private, one-tap wellbeing check-in at the time each member chose.

A check-in week runs from one scheduled prompt to the next. The prompt and its one reminder are
timestamps in rows (``storage.checkin``): each is claimed once, by compare-and-swap, in the same
transaction that queues its message, so a restart, a late tick or a second instance never sends
one twice or skips one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import or_, update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core import Arg, Context, Role, Services, check_form
from bot.errors import UserError
from bot.ui import Button, Form, FormField, Message, Priority, Reply, Style, ToMember
from commands.common import helplines
from commands.registry import registry
from commands.schedule import (
    describe_weekly,
    is_holiday,
    next_weekly,
    parse_time,
    parse_timezone,
    parse_weekday,
)
from storage.checkin import CheckinSubscription, CheckinWeek, SubscriptionStatus

log = structlog.get_logger("headsup.checkin")

SCORES = {1: ("😣", "Struggling"), 2: ("😕", "Low"), 3: ("😐", "Okay"), 4: ("🙂", "Good"),
          5: ("😄", "Thriving")}  # fmt: skip
SPARKS = "▁▂▃▄▅"
MAX_NOTE = 2000
MAX_PAUSE_WEEKS = 52
HISTORY_WEEKS = 12
REPORT_MIN_ANSWERS = 5  # k-anonymity: no figure ever includes a week with fewer answers
BATCH = 200
STALE = "That check-in button is from an earlier week, so it no longer changes anything."


def label(score: int) -> str:
    emoji, name = SCORES[score]
    return f"{emoji} {name}"


def answer_buttons(week_id: int) -> tuple[Button, ...]:
    return tuple(Button(label(s), f"checkin.answer:{week_id}:{s}") for s in SCORES)


def prompt_buttons(week_id: int) -> tuple[Button, ...]:
    return (
        *answer_buttons(week_id),
        Button("Skip this week", f"checkin.skip:{week_id}"),
        Button("Pause", "checkin.pause_menu"),
    )


def answered_buttons(week_id: int) -> tuple[Button, ...]:
    return (*answer_buttons(week_id), Button("Add a note", f"checkin.note:{week_id}"))


def when(moment: datetime, zone_name: str) -> str:
    """ "Monday 12 January at 08:00" on the member's own clock."""
    local = moment.astimezone(ZoneInfo(zone_name))
    return f"{local:%A} {local.day} {local:%B} at {local:%H:%M}"


def week_of(moment: datetime, zone_name: str) -> str:
    local = moment.astimezone(ZoneInfo(zone_name))
    return f"{local:%a} {local.day} {local:%b %Y}"


# --- storage helpers ------------------------------------------------------------------------


async def subscription_of(session: AsyncSession, member_id: int) -> CheckinSubscription | None:
    return await session.get(CheckinSubscription, member_id)


async def active_subscription(ctx: Context) -> CheckinSubscription:
    sub = await subscription_of(ctx.session, ctx.member_id)
    if sub is None or sub.status == SubscriptionStatus.STOPPED:
        raise UserError("Check-ins aren't on for you yet — type /checkin to opt in first.")
    return sub


async def current_week(ctx: Context, sub: CheckinSubscription) -> CheckinWeek:
    """The week an answer now counts for: the open one, or else the one the next prompt opens."""
    latest = (
        await ctx.session.exec(
            select(CheckinWeek)
            .where(CheckinWeek.member_id == ctx.member_id, CheckinWeek.opens_at <= ctx.now)
            .order_by(col(CheckinWeek.opens_at).desc())
            .limit(1)
        )
    ).first()
    if latest is not None and latest.prompted_at is not None and _is_open(latest, ctx.now):
        return latest
    return await _week_at(ctx.session, ctx.member_id, sub.next_prompt_at)


async def _week_at(session: AsyncSession, member_id: int, opens_at: datetime) -> CheckinWeek:
    week = (
        await session.exec(
            select(CheckinWeek).where(
                CheckinWeek.member_id == member_id, CheckinWeek.opens_at == opens_at
            )
        )
    ).first()
    if week is None:
        week = CheckinWeek(member_id=member_id, opens_at=opens_at)
        session.add(week)
        await session.flush()
    return week


def _is_open(week: CheckinWeek, now: datetime) -> bool:
    return week.closes_at is None or now < week.closes_at


async def own_open_week(ctx: Context, week_id: int) -> tuple[CheckinWeek, CheckinSubscription]:
    """The member's own week, still open, and their subscription; anything else is refused
    without saying whose it is."""
    week = await ctx.session.get(CheckinWeek, week_id)
    if week is None or week.member_id != ctx.member_id:
        raise UserError("That button no longer does anything — sorry.")
    if not _is_open(week, ctx.now):
        raise UserError(STALE + " Type /checkin for this week's.")
    sub = await subscription_of(ctx.session, ctx.member_id)
    if sub is None or sub.status == SubscriptionStatus.STOPPED:
        raise UserError("Check-ins are off for you — type /checkin to opt back in.")
    return week, sub


# --- commands --------------------------------------------------------------------------------


@registry.command("checkin")
async def checkin_now(ctx: Context) -> Reply | Message:
    """Check in now (the first time, you opt in)."""
    sub = await subscription_of(ctx.session, ctx.member_id)
    if sub is None or sub.status == SubscriptionStatus.STOPPED:
        return consent(ctx, sub)
    if sub.status == SubscriptionStatus.PAUSED:
        until = f"until {when(sub.paused_until, sub.timezone)}" if sub.paused_until else "for now"
        return Message(
            f"Your check-ins are paused {until}. Resume them whenever you like.",
            (Button("Resume check-ins", "checkin.resume", Style.PRIMARY),),
        )
    week = await current_week(ctx, sub)
    return check_in_message(week, sub)


def check_in_message(week: CheckinWeek, sub: CheckinSubscription) -> Message:
    assert week.id is not None
    if week.score is not None:
        return Message(
            f"You've checked in for this week: {label(week.score)}. You can change it until "
            f"your next check-in ({when(_closes(week, sub), sub.timezone)}).",
            answered_buttons(week.id),
        )
    return Message(
        "How are you doing this week? Just tap one — only you will see your answer.",
        prompt_buttons(week.id),
    )


def _closes(week: CheckinWeek, sub: CheckinSubscription) -> datetime:
    if week.closes_at is not None:
        return week.closes_at
    return next_weekly(week.opens_at, sub.weekday, parse_time(sub.time), sub.timezone)


def consent(ctx: Context, sub: CheckinSubscription | None) -> Message:
    c = ctx.settings.checkin
    weekday = sub.weekday if sub else c.weekday
    at = sub.time if sub else c.time.strftime("%H:%M")
    zone = _default_zone(ctx)
    return Message(
        "Weekly check-ins are a private, one-tap way to notice how you're doing.\n"
        "Your answers are private: only you see them. Coordinators only ever see anonymous "
        f"totals, and nothing for a week with fewer than {REPORT_MIN_ANSWERS} answers. "
        "You can pause or stop at any time.\n"
        f"Your check-in would come on {describe_weekly(weekday, at, zone)}.",
        (
            Button("Yes, check in with me weekly", "checkin.opt_in", Style.PRIMARY),
            Button("Not now", "checkin.not_now"),
        ),
    )


def _default_zone(ctx: Context) -> str:
    for candidate in (ctx.member.timezone, ctx.actor.timezone):
        if candidate:
            try:
                return parse_timezone(candidate)
            except ValueError:
                continue
    return ctx.settings.network.timezone


@registry.action("checkin.opt_in")
async def opt_in(ctx: Context) -> Reply:
    """Consent given: start weekly check-ins."""
    sub = await subscription_of(ctx.session, ctx.member_id)
    if sub is not None and sub.status != SubscriptionStatus.STOPPED:
        return Reply(update=Message("You're already checking in weekly — thank you."))
    c = ctx.settings.checkin
    zone = _default_zone(ctx)
    if sub is None:
        sub = CheckinSubscription(
            member_id=ctx.member_id,
            weekday=c.weekday,
            time=c.time.strftime("%H:%M"),
            timezone=zone,
            next_prompt_at=ctx.now,
            consented_at=ctx.now,
            updated_at=ctx.now,
        )
        ctx.session.add(sub)
    sub.status = SubscriptionStatus.ACTIVE
    sub.paused_until = None
    sub.consented_at = sub.updated_at = ctx.now
    sub.next_prompt_at = next_weekly(ctx.now, sub.weekday, parse_time(sub.time), sub.timezone)
    await ctx.session.flush()
    log.info("checkin.opted_in", member_id=ctx.member_id)
    week = await current_week(ctx, sub)
    return Reply(
        update=Message(
            "Thank you — you're in. Your check-in will come on "
            f"{describe_weekly(sub.weekday, sub.time, sub.timezone)}. Change it any time with "
            "`/checkin settings <day> <HH:MM> [timezone]`."
        ),
        messages=[check_in_message(week, sub)],
    )


@registry.action("checkin.not_now")
async def not_now(ctx: Context) -> Reply:
    """Consent declined: nothing is stored."""
    return Reply(update=Message("That's fine — nothing has changed. /checkin whenever you like."))


@registry.command("checkin settings")
async def settings(
    ctx: Context,
    day: Annotated[int, Arg(parse=parse_weekday, metavar="day")],
    at: Annotated[time, Arg(parse=parse_time, metavar="HH:MM")],
    timezone: Annotated[str | None, Arg(parse=parse_timezone, metavar="timezone")] = None,
) -> str:
    """When your weekly check-in comes: a day, a time, and optionally your timezone."""
    sub = await active_subscription(ctx)
    zone = timezone or sub.timezone
    sub.weekday, sub.time, sub.timezone = day, at.strftime("%H:%M"), zone
    sub.updated_at = ctx.now
    ctx.member.timezone = zone
    await _reschedule(ctx.session, sub, ctx.now)
    return (
        f"Done — your check-in will come on {describe_weekly(day, sub.time, zone)}. "
        f"The next one is {when(sub.next_prompt_at, zone)}."
    )


async def _reschedule(session: AsyncSession, sub: CheckinSubscription, now: datetime) -> None:
    """A changed day or time applies from its next occurrence — this week's, if still ahead."""
    old = sub.next_prompt_at
    new = next_weekly(now, sub.weekday, parse_time(sub.time), sub.timezone)
    sub.next_prompt_at = new
    if new == old:
        return
    # The open week now closes at the new time; an early answer moves to the week it opens.
    await session.exec(
        update(CheckinWeek)
        .where(
            col(CheckinWeek.member_id) == sub.member_id,
            col(CheckinWeek.closes_at) == old,
        )
        .values(closes_at=new)
    )
    await session.exec(
        update(CheckinWeek)
        .where(
            col(CheckinWeek.member_id) == sub.member_id,
            col(CheckinWeek.opens_at) == old,
            col(CheckinWeek.prompted_at).is_(None),
        )
        .values(opens_at=new)
    )


def weeks_parser(purpose: str) -> Callable[[str], int]:
    """A parser for a number of weeks from 1 to 52; `purpose` completes "you can … 1 to 52"."""

    def parse(text: str) -> int:
        try:
            weeks = int(text)
        except ValueError:
            raise ValueError(f"{text!r} isn't a number of weeks") from None
        if not 1 <= weeks <= MAX_PAUSE_WEEKS:
            raise ValueError(f"{purpose} 1 to {MAX_PAUSE_WEEKS} weeks")
        return weeks

    return parse


@registry.command("checkin pause")
async def pause(
    ctx: Context,
    weeks: Annotated[
        int | None, Arg(parse=weeks_parser("you can pause for"), metavar="weeks")
    ] = None,
) -> str:
    """Pause your check-ins, for a number of weeks or until you resume."""
    return await pause_for(ctx, weeks)


async def pause_for(ctx: Context, weeks: int | None) -> str:
    sub = await active_subscription(ctx)
    sub.status = SubscriptionStatus.PAUSED
    sub.paused_until = ctx.now + timedelta(weeks=weeks) if weeks else None
    sub.updated_at = ctx.now
    await _cancel_reminders(ctx.session, ctx.member_id)
    log.info("checkin.paused", member_id=ctx.member_id, weeks=weeks)
    until = (
        f"until {when(sub.paused_until, sub.timezone)}"
        if sub.paused_until
        else "until you type /checkin resume"
    )
    return f"Paused — no check-ins {until}. Look after yourself."


@registry.action("checkin.pause_menu")
async def pause_menu(ctx: Context) -> Message:
    """The *Pause* button: for how long?"""
    await active_subscription(ctx)
    return Message(
        "Pause your check-ins for how long?",
        (
            Button("1 week", "checkin.pause_for:1"),
            Button("2 weeks", "checkin.pause_for:2"),
            Button("4 weeks", "checkin.pause_for:4"),
            Button("Until I resume", "checkin.pause_for:0"),
        ),
    )


@registry.action("checkin.pause_for")
async def pause_button(ctx: Context, weeks: int) -> Reply:
    """One of the pause lengths."""
    if not 0 <= weeks <= MAX_PAUSE_WEEKS:
        raise UserError("That button no longer does anything — sorry.")
    return Reply(update=Message(await pause_for(ctx, weeks or None)))


@registry.command("checkin resume")
async def resume(ctx: Context) -> str:
    """Resume paused check-ins."""
    return await _resume(ctx)


@registry.action("checkin.resume")
async def resume_button(ctx: Context) -> Reply:
    """The *Resume check-ins* button."""
    return Reply(update=Message(await _resume(ctx)))


async def _resume(ctx: Context) -> str:
    sub = await active_subscription(ctx)
    if sub.status == SubscriptionStatus.ACTIVE:
        return (
            f"Your check-ins are already on — the next is {when(sub.next_prompt_at, sub.timezone)}."
        )
    sub.status = SubscriptionStatus.ACTIVE
    sub.paused_until = None
    sub.updated_at = ctx.now
    if sub.next_prompt_at <= ctx.now:
        await _reschedule(ctx.session, sub, ctx.now)
    log.info("checkin.resumed", member_id=ctx.member_id)
    return f"Welcome back. Your next check-in is {when(sub.next_prompt_at, sub.timezone)}."


@registry.command("checkin stop")
async def stop(ctx: Context) -> str:
    """Stop weekly check-ins altogether."""
    sub = await active_subscription(ctx)
    sub.status = SubscriptionStatus.STOPPED
    sub.paused_until = None
    sub.updated_at = ctx.now
    await _cancel_reminders(ctx.session, ctx.member_id)
    log.info("checkin.stopped", member_id=ctx.member_id)
    return (
        "Check-ins are off — you won't hear from me about them again. Your past answers stay "
        "private to you (/headsup forget-me deletes them). /checkin brings them back any time."
    )


async def _cancel_reminders(session: AsyncSession, member_id: int) -> None:
    await session.exec(
        update(CheckinWeek)
        .where(
            col(CheckinWeek.member_id) == member_id,
            col(CheckinWeek.reminder_sent_at).is_(None),
        )
        .values(reminder_due_at=None)
    )


@registry.command("checkin history")
async def history(ctx: Context) -> str:
    """Your own last 12 weeks: a sparkline and a list."""
    sub = await subscription_of(ctx.session, ctx.member_id)
    zone = sub.timezone if sub else ctx.settings.network.timezone
    weeks = list(
        (
            await ctx.session.exec(
                select(CheckinWeek)
                .where(
                    CheckinWeek.member_id == ctx.member_id,
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
    if not weeks:
        return "No check-ins yet. Type /checkin whenever you'd like to start."
    weeks.reverse()
    spark = "".join(SPARKS[w.score - 1] if w.score else "·" for w in weeks)
    span = "week" if len(weeks) == 1 else f"{len(weeks)} weeks"
    lines = [f"Your last {span} (only you can see this):", spark]
    for w in weeks:
        answer = label(w.score) if w.score else ("skipped" if w.skipped else "no answer")
        note = " — with a note" if w.note else ""
        lines.append(f"• Week of {week_of(w.opens_at, zone)}: {answer}{note}")
    return "\n".join(lines)


@registry.command("checkin report", roles={Role.COORDINATOR})
async def report(
    ctx: Context,
    weeks: Annotated[int, Arg(parse=weeks_parser("a report covers"), metavar="weeks")] = 8,
) -> str:
    """Coordinators: anonymous weekly totals (nothing for a week with fewer than 5 answers)."""
    zone = ZoneInfo(ctx.settings.network.timezone)
    today = ctx.now.astimezone(zone).date()
    this_monday = today - timedelta(days=today.weekday())
    first_monday = this_monday - timedelta(weeks=weeks - 1)
    since = datetime.combine(first_monday, time(0), tzinfo=zone)
    # Counted in the database (a few hundred groups, not every answer), then put into the
    # network's weeks here, where the timezone is known.
    rows = (
        await ctx.session.exec(
            select(CheckinWeek.opens_at, CheckinWeek.score, func.count())
            .where(
                col(CheckinWeek.score).is_not(None),
                CheckinWeek.opens_at >= since,
                CheckinWeek.opens_at <= ctx.now,
            )
            .group_by(CheckinWeek.opens_at, CheckinWeek.score)
        )
    ).all()
    by_week: dict[object, Counter[int]] = {}
    for opens_at, score, count in rows:
        local = opens_at.astimezone(zone).date()
        monday = local - timedelta(days=local.weekday())
        by_week.setdefault(monday, Counter())[score] += count
    lines = [f"Check-in totals for the last {weeks} weeks (anonymous):"]
    shown: Counter[int] = Counter()
    for i in range(weeks):
        monday = first_monday + timedelta(weeks=i)
        counts = by_week.get(monday, Counter())
        total = sum(counts.values())
        heading = f"• Week of {monday:%a} {monday.day} {monday:%b}"
        if total < REPORT_MIN_ANSWERS:
            lines.append(f"{heading}: fewer than {REPORT_MIN_ANSWERS} answers")
            continue
        shown.update(counts)
        spread = " · ".join(f"{label(s)} {counts.get(s, 0)}" for s in SCORES)
        lines.append(f"{heading}: {total} answers — {spread}")
    total = sum(shown.values())
    if total:
        average = sum(s * n for s, n in shown.items()) / total
        lines.append(
            f"Across the weeks shown: {total} answers, average {average:.1f} "
            "(1 Struggling … 5 Thriving)."
        )
    else:
        lines.append(f"No week yet has {REPORT_MIN_ANSWERS} or more answers to show.")
    return "\n".join(lines)


# --- answering -------------------------------------------------------------------------------


@registry.action("checkin.answer")
async def answer(ctx: Context, week_id: int, score: int) -> Reply:
    """One of the five answers."""
    if score not in SCORES:
        raise UserError("That button no longer does anything — sorry.")
    week, sub = await own_open_week(ctx, week_id)
    week.score, week.skipped, week.answered_at = score, False, ctx.now
    week.reminder_due_at = None
    log.info("checkin.answered", member_id=ctx.member_id, week_id=week.id)
    reply = Reply(
        update=Message(
            f"Thank you for checking in — you said {label(score)}. You can change it until "
            f"your next check-in ({when(_closes(week, sub), sub.timezone)}).",
            answered_buttons(week_id),
        )
    )
    if week.offered_support_at is None and await _needs_offer(ctx, week):
        week.offered_support_at = ctx.now
        reply.messages.append(support_offer(ctx))
    return reply


async def _needs_offer(ctx: Context, week: CheckinWeek) -> bool:
    """At or below `low_score`, or a second low week running ("low": at or below Low)."""
    assert week.score is not None
    low_score = ctx.settings.checkin.low_score
    if week.score <= low_score:
        return True
    low_week = max(low_score, 2)
    if week.score > low_week:
        return False
    previous = (
        await ctx.session.exec(
            select(CheckinWeek)
            .where(CheckinWeek.member_id == ctx.member_id, CheckinWeek.opens_at < week.opens_at)
            .order_by(col(CheckinWeek.opens_at).desc())
            .limit(1)
        )
    ).first()
    return previous is not None and previous.score is not None and previous.score <= low_week


def support_offer(ctx: Context) -> Message:
    return Message(
        "Thank you for being honest about how things are. You don't have to carry this on your "
        "own. If it would help to talk, a volunteer coach can listen — privately, and you can "
        "stay anonymous. Nobody else is told unless you choose.\n"
        f"{helplines(ctx.settings)}",
        (Button("Talk to a coach", "cmd:support", Style.PRIMARY),),
    )


@registry.action("checkin.skip")
async def skip(ctx: Context, week_id: int) -> Reply:
    """*Skip this week*."""
    week, _ = await own_open_week(ctx, week_id)
    week.skipped, week.score, week.answered_at = True, None, ctx.now
    week.reminder_due_at = None
    log.info("checkin.skipped", member_id=ctx.member_id, week_id=week.id)
    return Reply(
        update=Message(
            "No problem — this week is skipped. If you change your mind before your next "
            "check-in, just tap an answer.",
            answer_buttons(week_id),
        )
    )


@registry.action("checkin.note")
async def note(ctx: Context, week_id: int) -> Form:
    """*Add a note*: a private note on this week's check-in."""
    week, _ = await own_open_week(ctx, week_id)
    existing = ctx.services.cipher.decrypt(week.note) if week.note else ""
    return note_form(week_id, existing)


def note_form(week_id: int, existing: str = "") -> Form:
    return Form(
        action=f"checkin.save_note:{week_id}",
        title="Add a note",
        fields=(
            FormField(
                "note",
                "Anything you'd like to remember about this week? Only you will see it",
                max_length=MAX_NOTE,
                multiline=True,
                value=existing,
            ),
        ),
        submit_label="Save",
    )


@registry.form("checkin.save_note")
async def save_note(ctx: Context, week_id: int, *, values: dict[str, str]) -> str:
    """The note form, submitted."""
    week, _ = await own_open_week(ctx, week_id)
    text = check_form(note_form(week_id), values)["note"]
    if not text:
        week.note, week.note_at = None, None
        return "Your note for this week is removed."
    week.note, week.note_at = ctx.services.cipher.encrypt(text), ctx.now
    log.info("checkin.note_saved", member_id=ctx.member_id, week_id=week.id)
    return "Saved — only you can see your note."


# --- due work: prompts and reminders ------------------------------------------------------------


async def _next_prompt_due(services: Services) -> datetime | None:
    async with services.database.session() as session:
        return (
            await session.exec(
                select(func.min(CheckinSubscription.next_prompt_at)).where(_promptable())
            )
        ).first()


def _promptable():
    return or_(
        col(CheckinSubscription.status) == SubscriptionStatus.ACTIVE,
        (col(CheckinSubscription.status) == SubscriptionStatus.PAUSED)
        & col(CheckinSubscription.paused_until).is_not(None),
    )


@registry.due("checkin.prompts", next_due=_next_prompt_due)
async def send_due_prompts(services: Services, now: datetime) -> int:
    """Open each member's week whose prompt time has come, and queue its prompt."""
    sent = 0
    for _ in range(1000):  # bounded: each round moves every row it sees into the future
        async with services.database.session() as session:
            due = (
                await session.exec(
                    select(CheckinSubscription.member_id, CheckinSubscription.next_prompt_at)
                    .where(_promptable(), CheckinSubscription.next_prompt_at <= now)
                    .order_by(col(CheckinSubscription.next_prompt_at))
                    .limit(BATCH)
                )
            ).all()
        for member_id, due_at in due:
            sent += await _open_week(services, member_id, due_at, now)
        if len(due) < BATCH:
            break
    return sent


async def _open_week(services: Services, member_id: int, due_at: datetime, now: datetime) -> int:
    """Claim one due prompt (compare-and-swap on its time) and queue it, in one transaction."""
    async with services.database.session() as session:
        sub = await subscription_of(session, member_id)
        if sub is None or sub.next_prompt_at != due_at:
            return 0
        at = parse_time(sub.time)
        # After downtime, only the latest missed occurrence opens a week: one prompt, not many.
        opens = due_at
        closes = next_weekly(opens, sub.weekday, at, sub.timezone)
        while closes <= now:
            opens, closes = closes, next_weekly(closes, sub.weekday, at, sub.timezone)
        claimed = await session.exec(
            update(CheckinSubscription)
            .where(
                col(CheckinSubscription.member_id) == member_id,
                col(CheckinSubscription.next_prompt_at) == due_at,
            )
            .values(next_prompt_at=closes)
        )
        if claimed.rowcount != 1:
            await session.rollback()
            return 0  # another instance took it
        # The open week (if any) closes now; any early answer waits in the week this opens.
        await session.exec(
            update(CheckinWeek)
            .where(
                col(CheckinWeek.member_id) == member_id,
                col(CheckinWeek.opens_at) < opens,
                or_(col(CheckinWeek.closes_at).is_(None), col(CheckinWeek.closes_at) > opens),
            )
            .values(closes_at=opens)
        )
        if sub.status == SubscriptionStatus.PAUSED:
            if sub.paused_until is not None and sub.paused_until <= opens:
                sub.status, sub.paused_until = SubscriptionStatus.ACTIVE, None
                log.info("checkin.pause_ended", member_id=member_id)
            else:
                await session.commit()
                return 0
        holiday = is_holiday(opens, sub.timezone, services.settings.checkin.skip_holidays)
        if holiday:
            log.info("checkin.holiday_skipped", member_id=member_id)
            await session.commit()
            return 0
        week = await _week_at(session, member_id, opens)
        week.closes_at, week.prompted_at = closes, now
        answered = week.score is not None or week.skipped
        reminder = opens + timedelta(hours=services.settings.checkin.reminder_after_hours)
        if not answered and now < reminder < closes:
            week.reminder_due_at = reminder
        assert week.id is not None
        await services.outbox.send(
            session, now, ToMember(member_id), prompt_message(week, sub), priority=Priority.BULK
        )
        await session.commit()
    log.info("checkin.prompted", member_id=member_id, week_id=week.id)
    return 1


def prompt_message(week: CheckinWeek, sub: CheckinSubscription) -> Message:
    assert week.id is not None
    if week.score is not None:
        return Message(
            f"It's check-in time. You already checked in for this week: {label(week.score)}. "
            "You can change it until your next check-in.",
            answered_buttons(week.id),
        )
    return Message(
        "Hello — it's time for your weekly check-in. How are you doing this week? "
        "Just tap one; only you will see your answer.",
        prompt_buttons(week.id),
    )


async def _next_reminder_due(services: Services) -> datetime | None:
    async with services.database.session() as session:
        return (
            await session.exec(
                select(func.min(CheckinWeek.reminder_due_at)).where(
                    col(CheckinWeek.reminder_sent_at).is_(None)
                )
            )
        ).first()


@registry.due("checkin.reminders", next_due=_next_reminder_due)
async def send_due_reminders(services: Services, now: datetime) -> int:
    """One gentle reminder for each week still unanswered after `reminder_after_hours`."""
    async with services.database.session() as session:
        due = (
            await session.exec(
                select(CheckinWeek.id).where(
                    col(CheckinWeek.reminder_due_at) <= now,
                    col(CheckinWeek.reminder_sent_at).is_(None),
                )
            )
        ).all()
    sent = 0
    for week_id in due:
        sent += await _remind(services, week_id, now)
    return sent


async def _remind(services: Services, week_id: int, now: datetime) -> int:
    async with services.database.session() as session:
        claimed = await session.exec(
            update(CheckinWeek)
            .where(col(CheckinWeek.id) == week_id, col(CheckinWeek.reminder_sent_at).is_(None))
            .values(reminder_sent_at=now)
        )
        if claimed.rowcount != 1:
            await session.rollback()
            return 0
        week = await session.get(CheckinWeek, week_id)
        assert week is not None
        sub = await subscription_of(session, week.member_id)
        still_wanted = (
            sub is not None
            and sub.status == SubscriptionStatus.ACTIVE
            and week.score is None
            and not week.skipped
            and _is_open(week, now)
        )
        if still_wanted:
            await services.outbox.send(
                session,
                now,
                ToMember(week.member_id),
                Message(
                    "A gentle reminder: your check-in for this week is still open, whenever "
                    "you're ready. There's no wrong answer.",
                    prompt_buttons(week_id),
                ),
                priority=Priority.BULK,
            )
        await session.commit()
    if still_wanted:
        log.info("checkin.reminded", member_id=week.member_id, week_id=week_id)
    return int(still_wanted)
