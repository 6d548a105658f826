"""Privacy: a member's copy of their data, deleting it on request, and retention.

- ``/headsup export`` answers with a JSON file of everything stored about the asker.
- ``/headsup forget-me`` explains, then deletes everything after a confirm button. An open
  support case is closed first and its coach told, without a name; cases they coach go back to
  routing. Support cases stay only as anonymous shells (``storage.privacy``).
- A due job purges check-in notes after ``privacy.note_retention_days`` and a closed case's words
  and kept transcript after ``privacy.case_text_retention_days``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import structlog
from sqlalchemy import delete, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core import Arg, Context, Services
from bot.errors import UserError
from bot.ui import Attachment, Button, Message, Reply, Style, ToMember
from commands.checkin import SCORES
from commands.events import Work, refresh_announcement
from commands.registry import registry
from commands.support import close_case, lock_case, record, route
from storage.checkin import CheckinSubscription, CheckinWeek
from storage.events import Event, EventDraft, EventRsvp, EventSeries, EventStatus, event_code
from storage.models import Identity, Member, OutboxMessage, OutboxStatus
from storage.platform_events import KEEP_FOR, forget_old_events, oldest_event_seen
from storage.privacy import (
    BATCH,
    checkpoint,
    drop_coach_lines,
    erase_member,
    oldest_closed_case_text,
    oldest_note,
    purge_case_words,
    purge_notes,
    purge_transcripts,
)
from storage.support import (
    CaseEvent,
    CaseMessage,
    CaseStatus,
    CoachProfile,
    OfferStatus,
    SupportCase,
    SupportOffer,
    case_number,
)

log = structlog.get_logger("headsup.privacy")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STALE = "That button no longer does anything — nothing has been changed."
CLOSED_BY = {"member": "you", "coach": "your coach", "system": "automatically"}


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# --- export ---------------------------------------------------------------------------------


@registry.command("headsup export")
async def export(ctx: Context) -> Message:
    """A copy of everything stored about you, as a file."""
    data = await gather(ctx.services, ctx.session, ctx.member_id, ctx.now)
    content = json.dumps(data, indent=2, ensure_ascii=False).encode()
    filename = f"headsup-export-{ctx.now:%Y-%m-%d}.json"
    log.info("privacy.exported", member_id=ctx.member_id, size=len(content))
    return Message(
        f"Here's everything {ctx.settings.network.name} stores about you, as a file. It "
        "includes your private notes and anything you wrote when asking for support, so please "
        "keep it somewhere safe. /headsup forget-me deletes it all.",
        attachment=Attachment(filename, content, "application/json"),
    )


async def gather(
    services: Services, session: AsyncSession, member_id: int, now: datetime
) -> dict[str, Any]:
    """Everything stored about one member, readable: notes and words decrypted, coaches shown
    only as "Coach", nobody else's data."""
    member = await session.get(Member, member_id)
    assert member is not None
    network = services.settings.network.name
    return {
        "generated_at": now.isoformat(),
        "about": (
            f"Everything {network} stores about you at generated_at. Your check-in notes and "
            "what you wrote when asking for support are stored encrypted; they are shown here "
            'decrypted, so keep this file safe. Coaches appear only as "Coach", and nobody '
            "else's data is included. /headsup forget-me deletes all of this."
        ),
        "member": {
            "name": member.name,
            "roles": sorted(member.role_names()),
            "timezone": member.timezone,
            "first_seen_at": iso(member.created_at),
            "last_seen_at": iso(member.last_seen_at),
        },
        "identities": await _identities(session, member_id),
        "checkins": await _checkins(services, session, member_id),
        "support": await _support(services, session, member_id),
        "as_coach": await _as_coach(session, member_id),
        "events": await _events(session, member_id),
        "messages_to_you": await _deliveries(session, member_id),
    }


async def _identities(session: AsyncSession, member_id: int) -> list[dict[str, Any]]:
    rows = await session.exec(
        select(Identity).where(Identity.member_id == member_id).order_by(col(Identity.id))
    )
    return [
        {
            "platform": i.platform,
            "user_id": i.user_id,
            "display_name": i.display_name,
            "direct_message_channel": i.dm_channel_id,
            "direct_messages_failed_at": iso(i.dm_failed_at),
        }
        for i in rows
    ]


async def _checkins(services: Services, session: AsyncSession, member_id: int) -> dict[str, Any]:
    sub = await session.get(CheckinSubscription, member_id)
    weeks = await session.exec(
        select(CheckinWeek)
        .where(CheckinWeek.member_id == member_id)
        .order_by(col(CheckinWeek.opens_at))
    )
    return {
        "subscription": None
        if sub is None
        else {
            "status": sub.status,
            "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"][
                sub.weekday
            ],
            "time": sub.time,
            "timezone": sub.timezone,
            "next_check_in_at": iso(sub.next_prompt_at),
            "paused_until": iso(sub.paused_until),
            "agreed_at": iso(sub.consented_at),
            "updated_at": iso(sub.updated_at),
        },
        "weeks": [
            {
                "week_opens_at": iso(w.opens_at),
                "week_closes_at": iso(w.closes_at),
                "asked_at": iso(w.prompted_at),
                "answer": SCORES[w.score][1] if w.score in SCORES else None,
                "score": w.score,
                "skipped": w.skipped,
                "answered_at": iso(w.answered_at),
                "note": services.cipher.decrypt(w.note) if w.note else None,
                "note_written_at": iso(w.note_at),
                "reminder_sent_at": iso(w.reminder_sent_at),
                "support_offered_at": iso(w.offered_support_at),
            }
            for w in weeks
        ],
    }


async def _support(services: Services, session: AsyncSession, member_id: int) -> dict[str, Any]:
    cases = (
        await session.exec(
            select(SupportCase)
            .where(SupportCase.member_id == member_id)
            .order_by(col(SupportCase.id))
        )
    ).all()
    found = []
    for case in cases:
        assert case.id is not None
        steps = await session.exec(
            select(CaseEvent)
            .where(CaseEvent.case_id == case.id, CaseEvent.actor_member_id == member_id)
            .order_by(col(CaseEvent.id))
        )
        messages = await session.exec(
            select(CaseMessage).where(CaseMessage.case_id == case.id).order_by(col(CaseMessage.id))
        )
        found.append(
            {
                "case": case.number,
                "status": case.status,
                "your_words": services.cipher.decrypt(case.words) if case.words else None,
                "marked_urgent": case.urgent,
                "name_shared_with_coach": case.share_name,
                "asked_at": iso(case.created_at),
                "connected_at": iso(case.connected_at),
                "coach": "Coach" if case.accepted_at is not None else None,
                "accepted_at": iso(case.accepted_at),
                "closed_at": iso(case.closed_at),
                "closed_by": CLOSED_BY.get(case.closed_by or ""),
                "feedback": case.feedback,
                "follow_up_due_at": iso(case.followup_due_at),
                "follow_up_sent_at": iso(case.followup_sent_at),
                "follow_up_declined": case.followup_declined,
                "your_steps": [{"at": iso(s.at), "step": s.kind} for s in steps],
                "kept_messages": [
                    {
                        "at": iso(m.at),
                        "from": "you" if m.sender == "member" else "Coach",
                        "text": services.cipher.decrypt(m.text),
                    }
                    for m in messages
                ],
            }
        )
    return {"cases": found}


async def _as_coach(session: AsyncSession, member_id: int) -> dict[str, Any]:
    profile = await session.get(CoachProfile, member_id)
    coached = await session.exec(
        select(SupportCase.id, SupportCase.accepted_at, SupportCase.closed_at)
        .where(SupportCase.coach_member_id == member_id)
        .order_by(col(SupportCase.id))
    )
    offers = await session.exec(
        select(SupportOffer)
        .where(SupportOffer.coach_member_id == member_id)
        .order_by(col(SupportOffer.id))
    )
    return {
        "profile": None
        if profile is None
        else {
            "on_duty": profile.on_duty,
            "case_limit": profile.case_limit,
            "hours": f"{profile.hours_start}-{profile.hours_end}"
            if profile.hours_start and profile.hours_end
            else None,
            "timezone": profile.timezone,
            "last_offered_a_case_at": iso(profile.last_offered_at),
            "updated_at": iso(profile.updated_at),
        },
        "cases_coached": [
            {"case": case_number(case_id), "accepted_at": iso(accepted), "closed_at": iso(closed)}
            for case_id, accepted, closed in coached
        ],
        "offers": [
            {
                "case": case_number(o.case_id),
                "offered_at": iso(o.offered_at),
                "answer": o.status,
                "answered_at": iso(o.answered_at),
            }
            for o in offers
        ],
    }


async def _events(session: AsyncSession, member_id: int) -> dict[str, Any]:
    replies = await session.exec(
        select(EventRsvp, Event)
        .join(Event, col(Event.id) == EventRsvp.event_id)
        .where(EventRsvp.member_id == member_id)
        .order_by(col(Event.starts_at))
    )
    drafts = await session.exec(
        select(EventDraft).where(EventDraft.member_id == member_id).order_by(col(EventDraft.id))
    )
    created = await session.exec(
        select(Event).where(Event.created_by == member_id).order_by(col(Event.starts_at))
    )
    series = await session.exec(
        select(EventSeries).where(EventSeries.created_by == member_id).order_by(col(EventSeries.id))
    )
    return {
        "replies": [
            {
                "event": event_code(r.event_id),
                "title": e.title,
                "starts_at": iso(e.starts_at),
                "cancelled": e.status == EventStatus.CANCELLED,
                "answer": r.answer,
                "answered_at": iso(r.answered_at),
            }
            for r, e in replies
        ],
        "unfinished_edits": [
            {
                "event": event_code(d.event_id),
                "submitted_at": iso(d.created_at),
                "values": json.loads(d.form_values),
            }
            for d in drafts
        ],
        "events_you_created": [
            {"event": event_code(e.id or 0), "title": e.title, "starts_at": iso(e.starts_at)}
            for e in created
        ],
        "weekly_series_you_created": [
            {
                "title": s.title,
                "weekly_at": f"{s.local_time} ({s.timezone})",
                "until": s.until.isoformat(),
                "status": s.status,
            }
            for s in series
        ],
    }


async def _deliveries(session: AsyncSession, member_id: int) -> dict[str, int]:
    """How many messages to them are recorded, by state (their text is never kept once sent)."""
    statuses = await session.exec(
        select(OutboxMessage.status).where(OutboxMessage.member_id == member_id)
    )
    return dict(sorted(Counter(statuses).items()))


# --- forget me --------------------------------------------------------------------------------


def created_stamp(member: Member) -> int:
    """The member's creation time in microseconds: a forget button is bound to this member,
    not to a newer one who may be given the same id after it."""
    return (member.created_at - EPOCH) // timedelta(microseconds=1)


@registry.command("headsup forget-me")
async def forget_me(ctx: Context) -> Message:
    """Delete everything stored about you (you'll be asked to confirm)."""
    network = ctx.settings.network.name
    return Message(
        f"This deletes everything {network} stores about you: your check-ins and notes, your "
        "event replies, what you wrote when asking for support (and any kept messages), your "
        "coach settings if you have them, and your name and account id here.\n"
        "If a support conversation of yours is open, it will be closed, and your coach told "
        "that you have left — not who you are. A record that each support case happened "
        "stays, with nothing that identifies you.\n"
        "This can't be undone. You may like to keep a copy first with /headsup export. "
        "Messages already in your chat history stay there until you delete them yourself.",
        (
            Button(
                "Delete everything",
                f"privacy.forget:{ctx.member_id}:{created_stamp(ctx.member)}",
                Style.DANGER,
            ),
            Button("Keep my data", "privacy.keep"),
        ),
    )


@registry.action("privacy.keep")
async def keep(ctx: Context) -> Reply:
    """*Keep my data*: nothing is deleted."""
    return Reply(update=Message("That's fine — nothing has been deleted."))


@registry.action("privacy.forget")
async def forget_confirmed(
    ctx: Context, member_id: int, stamp: Annotated[int, Arg(parse=int)]
) -> Reply:
    """*Delete everything*: forget the member who was shown the button, and only them."""
    if member_id != ctx.member_id or stamp != created_stamp(ctx.member):
        raise UserError(STALE)
    counts = await forget(ctx.services, ctx.session, member_id, ctx.now)
    # Commit now, so the write-ahead log can then be emptied of what was deleted.
    await ctx.session.commit()
    await checkpoint(ctx.services.database)
    log.info("privacy.forgotten", **counts)
    return Reply(
        update=Message(
            f"Done — everything {ctx.settings.network.name} stored about you has been deleted. "
            "Thank you for being part of the network. If you come back, you'll start afresh. "
            "Take care."
        )
    )


async def forget(
    services: Services, session: AsyncSession, member_id: int, now: datetime
) -> dict[str, int]:
    """Close what is open, hand back what they coach, then erase them; return counts."""
    own = (
        await session.exec(
            select(SupportCase).where(
                SupportCase.member_id == member_id, SupportCase.status != CaseStatus.DRAFT
            )
        )
    ).all()
    await drop_pending_about(services, session, member_id, list(own))
    for case in own:
        await close_for_departure(services, session, case, now)
    await release_coached(services, session, member_id, now)
    await session.flush()
    erased = await erase_member(session, member_id)
    work = Work(services, session, now)
    for event_id in sorted(set(erased.rsvp_event_ids)):
        event = await session.get(Event, event_id)
        if event is not None and event.status == EventStatus.SCHEDULED and event.ends_at > now:
            await refresh_announcement(work, event)
    return erased.counts


async def drop_pending_about(
    services: Services, session: AsyncSession, member_id: int, cases: list[SupportCase]
) -> None:
    """Delete messages about the member's cases still waiting to go to someone else (an offer,
    an alert, a relay), so none of their words or their name is delivered after they leave."""
    if not cases:
        return
    case_ids = [c.id for c in cases if c.id is not None]
    offers = (
        await session.exec(
            select(SupportOffer.id, SupportOffer.coach_member_id).where(
                col(SupportOffer.case_id).in_(case_ids)
            )
        )
    ).all()
    keys = [f"support:alert:{i}" for i in case_ids] + [f"support:offer:{o}" for o, _ in offers]
    coaches = {c.coach_member_id for c in cases if c.coach_member_id} | {m for _, m in offers}
    mentions = re.compile(
        "|".join(
            [rf"(?<![\w-]){re.escape(case_number(i))}(?!\d)" for i in case_ids]
            + [rf'"support\.\w+:{i}[":]' for i in case_ids]
        )
    )
    waiting = (
        await session.exec(
            select(OutboxMessage).where(
                col(OutboxMessage.status) == OutboxStatus.PENDING,
                or_(
                    col(OutboxMessage.message_key).in_(keys),
                    col(OutboxMessage.edit_of).in_(keys),
                    col(OutboxMessage.kind) == "channel",
                    col(OutboxMessage.member_id).in_(coaches),
                ),
            )
        )
    ).all()
    doomed = [
        row.id
        for row in waiting
        if row.message_key in keys
        or row.edit_of in keys
        or (row.payload and mentions.search(services.cipher.decrypt(row.payload)))
    ]
    if doomed:
        await session.exec(delete(OutboxMessage).where(col(OutboxMessage.id).in_(doomed)))


async def close_for_departure(
    services: Services, session: AsyncSession, case: SupportCase, now: datetime
) -> None:
    """Close the member's open case; an assigned coach is told kindly that they have left."""
    assert case.id is not None
    await lock_case(session, case.id)
    await session.refresh(case)
    if case.status not in CaseStatus.OPEN:
        return
    coach = case.coach_member_id if case.status == CaseStatus.ACTIVE else None
    await close_case(services, session, case, now, "system", None)
    await record(session, case.id, now, "member_left", "system")
    if coach is not None:
        await services.outbox.send(
            session,
            now,
            ToMember(coach),
            Message(
                f"{case.number} is now closed: the member has left "
                f"{services.settings.network.name} and asked for their data to be deleted, so "
                "there's nothing more you need to do. Thank you for the care you gave them."
            ),
        )


async def release_coached(
    services: Services, session: AsyncSession, member_id: int, now: datetime
) -> None:
    """A departing coach's waiting offers are withdrawn and their open cases go back to routing,
    so no member is left waiting on someone who has gone."""
    profile = await session.get(CoachProfile, member_id)
    if profile is not None:
        profile.on_duty = False  # never offered anything again, even within this change
    offered = (
        await session.exec(
            select(SupportOffer).where(
                SupportOffer.coach_member_id == member_id,
                SupportOffer.status == OfferStatus.PENDING,
            )
        )
    ).all()
    active = (
        await session.exec(
            select(SupportCase).where(
                SupportCase.coach_member_id == member_id,
                SupportCase.status == CaseStatus.ACTIVE,
            )
        )
    ).all()
    await session.flush()
    for made in offered:
        await lock_case(session, made.case_id)
        await session.refresh(made)
        if made.status != OfferStatus.PENDING:
            continue
        made.status, made.answered_at = OfferStatus.WITHDRAWN, now
        await record(session, made.case_id, now, "withdrawn", "system")
        case = await session.get(SupportCase, made.case_id)
        if case is not None and case.status in CaseStatus.UNASSIGNED:
            await route(services, session, case, now)
    for case in active:
        assert case.id is not None
        await lock_case(session, case.id)
        await session.refresh(case)
        if case.status != CaseStatus.ACTIVE or case.coach_member_id != member_id:
            continue
        case.status, case.coach_member_id, case.accepted_at = CaseStatus.WAITING, None, None
        await drop_coach_lines(session, [case.id])  # the next coach starts afresh
        await record(session, case.id, now, "coach_left", "system")
        if case.member_id is not None:
            await services.outbox.send(
                session,
                now,
                ToMember(case.member_id),
                Message(
                    f"About your conversation {case.number}: your coach has had to leave "
                    f"{services.settings.network.name}, so I'm finding you another coach now. "
                    "I'll message you here as soon as one accepts."
                ),
            )
        await route(services, session, case, now)


# --- retention --------------------------------------------------------------------------------


async def _next_purge_due(services: Services) -> datetime | None:
    keep = services.settings.privacy
    async with services.database.session() as session:
        note = await oldest_note(session)
        closed = await oldest_closed_case_text(session)
    due = []
    if note is not None:
        due.append(note + timedelta(days=keep.note_retention_days))
    if closed is not None:
        due.append(closed + timedelta(days=keep.case_text_retention_days))
    return min(due, default=None)


@registry.due("privacy.retention", next_due=_next_purge_due)
async def purge_expired(services: Services, now: datetime) -> int:
    """Check-in notes and closed cases' words and kept messages past their retention time are
    deleted, a batch per transaction; running it again finds nothing more to do."""
    keep = services.settings.privacy
    note_cutoff = now - timedelta(days=keep.note_retention_days)
    case_cutoff = now - timedelta(days=keep.case_text_retention_days)
    purged: Counter[str] = Counter()
    for name, purge, cutoff in (
        ("notes", purge_notes, note_cutoff),
        ("case_words", purge_case_words, case_cutoff),
        ("transcript_messages", purge_transcripts, case_cutoff),
    ):
        while True:
            async with services.database.session() as session:
                done = await purge(session, cutoff, BATCH)
                await session.commit()
            purged[name] += done
            if done < BATCH:
                break
    total = sum(purged.values())
    if total:
        log.info("privacy.purged", **purged)
        await checkpoint(services.database, "PASSIVE")
    return total


async def _next_event_ids_due(services: Services) -> datetime | None:
    async with services.database.session() as session:
        oldest = await oldest_event_seen(session)
    return None if oldest is None else oldest + KEEP_FOR


@registry.due("privacy.forget_event_ids", next_due=_next_event_ids_due)
async def forget_old_event_ids(services: Services, now: datetime) -> int:
    """Platform event ids kept to recognise a repeated delivery go once no platform would
    repeat them (``storage.platform_events.KEEP_FOR``)."""
    async with services.database.session() as session:
        forgotten = await forget_old_events(session, now)
        await session.commit()
    return forgotten
