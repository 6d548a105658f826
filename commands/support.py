"""Support: a member asks privately for help; one volunteer coach at a time is offered the case.

The flow, and where each step's state lives (``storage.support``):

1. ``/support``, the DM menu and *Talk to a coach* answer first with the signposting (the
   command's preface), then *Connect me with a coach* / *Not now* and *Share my name* / *Stay
   anonymous*. The member's words wait, encrypted, in a draft case until they choose.
2. *Connect* stores the case (``H-<n>``) and routes it in the same transaction; the member is told
   "a coach will be with you" only once that has committed.
3. Routing offers the case to one coach — on duty, within their hours and case limit, least
   recently offered — with a deadline (``SupportOffer.due_at``). *Pass* or no answer by then: the
   next coach. Nobody left: the coordinators are alerted with *Take it*, again every
   ``ack_minutes`` (``SupportCase.realert_due_at``) until someone takes it.
4. Accepted: DMs are relayed both ways. A coach's plain DM goes to the case they last acted on;
   every relayed message carries a *Reply* button for its own case.
5. Either side closes; the member may give 1–5 feedback and ask for a follow-up.

Every deadline is claimed by compare-and-swap in the transaction that queues its messages, so a
restart or a second instance neither loses nor repeats a step. Every step goes into the case's
audit trail, never with anyone's words.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import delete, update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.config import Settings
from bot.core import Arg, Context, Role, Services, check_form
from bot.errors import UserError
from bot.text import quote_user_text, shorten
from bot.ui import (
    MAX_TEXT,
    Button,
    Channel,
    Form,
    FormField,
    Message,
    Priority,
    Reply,
    Style,
    ToChannel,
    ToMember,
)
from commands.common import helplines, signposting
from commands.registry import registry
from commands.schedule import parse_time
from storage.members import identity_of
from storage.models import Identity, Member, OutboxMessage
from storage.support import (
    CaseEvent,
    CaseMessage,
    CaseStatus,
    CoachProfile,
    OfferStatus,
    SupportCase,
    SupportOffer,
)

log = structlog.get_logger("headsup.support")

DRAFT_LIFETIME = timedelta(hours=24)  # an unanswered "Connect me?" is forgotten after this
WORDS_IN_OFFER = 1000  # characters of the member's words shown in an offer or alert
GONE = "That button no longer does anything — sorry."
CLOSED = (
    "This conversation ({number}) has been closed, so that button no longer does anything. "
    "If you'd like to talk again, just type /support."
)


# --- small helpers ---------------------------------------------------------------------------


def is_urgent(settings: Settings, text: str) -> bool:
    """Whether the text holds any configured words of immediate risk (case and spacing aside)."""
    plain = re.sub(r"\s+", " ", text.replace("’", "'").lower())
    return any(re.sub(r"\s+", " ", w.lower()) in plain for w in settings.support.urgent_words)


def chunks(text: str, size: int = MAX_TEXT - 100) -> list[str]:
    """Text cut into pieces a platform can carry, at line or word breaks where possible."""
    pieces: list[str] = []
    while len(text) > size:
        cut = max(text.rfind("\n", 0, size), text.rfind(" ", 0, size))
        cut = cut if cut > size // 2 else size
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    return [*pieces, text] if text or not pieces else pieces


async def record(
    session: AsyncSession,
    case_id: int,
    now: datetime,
    kind: str,
    role: str,
    member_id: int | None = None,
    detail: str = "",
) -> None:
    """Add a step to the case's audit trail (who, when, what — never anyone's words)."""
    session.add(
        CaseEvent(
            case_id=case_id,
            at=now,
            kind=kind,
            actor_role=role,
            actor_member_id=member_id,
            detail=detail,
        )
    )
    log.info(f"support.{kind}", case_id=case_id, member_id=member_id)


def words_of(services: Services, case: SupportCase) -> str:
    return services.cipher.decrypt(case.words) if case.words else ""


async def shown_as(session: AsyncSession, case: SupportCase) -> str:
    """How the member appears to coaches: "Member H-1042", or their name if they shared it."""
    if case.share_name and case.member_id is not None:
        member = await session.get(Member, case.member_id)
        if member is not None and member.name:
            return f"{quote_user_text(member.name)} ({case.number})"
    return f"Member {case.number}"


def quoted_words(services: Services, case: SupportCase, limit: int = WORDS_IN_OFFER) -> str:
    words = words_of(services, case)
    if not words:
        return "They haven't said more yet — they may tell you once you're connected."
    shown = quote_user_text(shorten(words, limit))
    more = " (the rest comes when you accept)" if len(words) > limit else ""
    return "In their words:\n> " + shown.replace("\n", "\n> ") + more


async def profile_of(session: AsyncSession, member_id: int, now: datetime, zone: str):
    """The coach's duty settings, created (off duty) the first time they are needed."""
    profile = await session.get(CoachProfile, member_id)
    if profile is None:
        profile = CoachProfile(member_id=member_id, timezone=zone, updated_at=now)
        session.add(profile)
        await session.flush()
    return profile


async def open_case_of(session: AsyncSession, member_id: int) -> SupportCase | None:
    """The member's own open case (waiting, escalated or active), if any."""
    return (
        await session.exec(
            select(SupportCase)
            .where(
                SupportCase.member_id == member_id,
                col(SupportCase.status).in_(CaseStatus.OPEN),
            )
            .order_by(col(SupportCase.id).desc())
        )
    ).first()


async def lock_case(session: AsyncSession, case_id: int) -> None:
    """Hold the case's row until commit. Everything that changes a case and its offers locks the
    case first (on PostgreSQL; SQLite has one writer anyway), so racing steps queue, never
    deadlock."""
    await session.exec(
        select(SupportCase.id).where(col(SupportCase.id) == case_id).with_for_update()
    )


async def own_case(ctx: Context, case_id: int) -> SupportCase:
    """The asking member's own case; anyone else's is refused without saying whose it is."""
    case = await ctx.session.get(SupportCase, case_id)
    if case is None or case.member_id != ctx.member_id:
        raise UserError(GONE)
    return case


# --- intake ---------------------------------------------------------------------------------


@registry.command("support", preface=signposting)
async def support(
    ctx: Context, text: Annotated[str, Arg(rest=True, metavar="what is happening")] = ""
) -> Message:
    """Ask privately for a volunteer coach — only you and your coach will see it."""
    existing = await open_case_of(ctx.session, ctx.member_id)
    if existing is not None:
        return await join(ctx, existing, text)
    draft = (
        await ctx.session.exec(
            select(SupportCase).where(
                SupportCase.member_id == ctx.member_id, SupportCase.status == CaseStatus.DRAFT
            )
        )
    ).first()
    if draft is None:
        draft = SupportCase(member_id=ctx.member_id, created_at=ctx.now)
        ctx.session.add(draft)
    draft.created_at = ctx.now
    if text:
        draft.words = ctx.services.cipher.encrypt(text)
    await ctx.session.flush()
    return choice_message(draft)


def choice_message(case: SupportCase) -> Message:
    assert case.id is not None
    who = (
        "You've chosen to share your name with your coach."
        if case.share_name
        else f"You'll stay anonymous: your coach will know you only as Member {case.number}, "
        "unless you choose to share your name."
    )
    return Message(
        "Would you like me to connect you with one of our volunteer coaches? They're fellow "
        "school leaders, here to listen without judgement. What you say stays between you and "
        f"them.\n{who}",
        (
            Button("Connect me with a coach", f"support.connect:{case.id}", Style.PRIMARY),
            Button("Not now", f"support.not_now:{case.id}"),
            Button("Share my name", f"support.share:{case.id}:yes"),
            Button("Stay anonymous", f"support.share:{case.id}:no"),
        ),
    )


async def join(ctx: Context, case: SupportCase, text: str) -> Message:
    """A second request while one is open joins it: the words are added, never a new case."""
    if text:
        await add_words(ctx, case, text)
    if case.status == CaseStatus.ACTIVE:
        return Message(
            f"You're already talking with a coach ({case.number}). "
            + (
                "I've passed what you wrote on to them. "
                if text
                else "Anything you send me here goes straight to them. "
            ),
            (Button("Close this conversation", f"support.close:{case.id}"),),
        )
    return Message(
        f"Your request {case.number} is already with us — I'm still finding a coach, and I'll "
        "message you here as soon as one accepts. "
        + ("I've added what you wrote to it. " if text else ""),
        (Button("Withdraw my request", f"support.close:{case.id}"),),
    )


async def add_words(ctx: Context, case: SupportCase, text: str) -> None:
    """More words from the member: relayed if a coach has the case, else added to it."""
    if case.status == CaseStatus.ACTIVE:
        await relay(ctx, case, "member", text)
        return
    before = words_of(ctx.services, case)
    combined = f"{before}\n\n{text}" if before else text
    case.words = ctx.services.cipher.encrypt(combined)
    await record(ctx.session, case.id, ctx.now, "added", "member", ctx.member_id)
    if is_urgent(ctx.settings, text) and not case.urgent:
        case.urgent = True
        await alert_coordinators(ctx.services, ctx.session, case, ctx.now, urgent=True)


@registry.action("support.share")
async def share(ctx: Context, case_id: int, choice: str) -> Reply:
    """*Share my name* / *Stay anonymous*, before connecting."""
    case = await own_case(ctx, case_id)
    if choice not in ("yes", "no"):
        raise UserError(GONE)
    if case.status != CaseStatus.DRAFT:
        return Reply.of(
            "Your request is already with a coach. You can share your name from the "
            "conversation at any time."
        )
    case.share_name = choice == "yes"
    return Reply(update=choice_message(case))


@registry.action("support.not_now")
async def not_now(ctx: Context, case_id: int) -> Reply:
    """*Not now*: the draft and its words are deleted."""
    case = await own_case(ctx, case_id)
    if case.status != CaseStatus.DRAFT:
        raise UserError("Your request is already with us — nothing has changed.")
    await ctx.session.delete(case)
    return Reply(
        update=Message(
            "That's fine — nothing has been passed on, and what you wrote has been deleted. "
            "If you'd like to talk to a coach later, just type /support. Take care."
        )
    )


@registry.action("support.connect")
async def connect(ctx: Context, case_id: int) -> Reply:
    """*Connect me with a coach*: store the case and offer it to a coach."""
    case = await own_case(ctx, case_id)
    if case.status != CaseStatus.DRAFT:
        if case.status in CaseStatus.OPEN:
            return Reply.of(
                f"Your request {case.number} is already with us — no need to ask again."
            )
        raise UserError(CLOSED.format(number=case.number))
    existing = await open_case_of(ctx.session, ctx.member_id)
    if existing is not None:
        await ctx.session.delete(case)
        return Reply(update=await join(ctx, existing, words_of(ctx.services, case)))
    claimed = await ctx.session.exec(
        update(SupportCase)
        .where(col(SupportCase.id) == case_id, col(SupportCase.status) == CaseStatus.DRAFT)
        .values(status=CaseStatus.WAITING, connected_at=ctx.now, created_at=ctx.now)
    )
    if claimed.rowcount != 1:
        raise UserError("Your request is already with us — no need to ask again.")
    await ctx.session.refresh(case)
    await record(ctx.session, case_id, ctx.now, "created", "member", ctx.member_id)
    services, now = ctx.services, ctx.now
    lines = [
        f"Thank you. Your request is {case.number}, and it's safely with us. A coach will be "
        "with you as soon as they can — I'll message you here when one accepts."
    ]
    case.urgent = is_urgent(ctx.settings, words_of(services, case))
    outcome = await route(services, ctx.session, case, now, tell_member=False)
    if case.urgent:
        if outcome == "offered":  # escalating has alerted the coordinators already
            await alert_coordinators(services, ctx.session, case, now, urgent=True)
        lines.append(
            "What you wrote tells me things may be very hard right now, so I've also told the "
            "coordinators. Please don't wait for a coach if you might be in danger:\n"
            f"{ctx.settings.support.emergency}"
        )
    if outcome == "escalated":
        lines.append(delay_notice(ctx.settings))
    return Reply(
        update=Message(
            "\n\n".join(lines), (Button("Withdraw my request", f"support.close:{case_id}"),)
        )
    )


def delay_notice(settings: Settings) -> str:
    return (
        "I'm sorry — our coaches are all busy or away right now, so it may take longer than "
        "usual. I've asked the coordinators to help find someone. If you need to talk to "
        f"someone now:\n{helplines(settings)}"
    )


# --- routing ----------------------------------------------------------------------------------


def within_hours(profile: CoachProfile, now: datetime) -> bool:
    if not profile.hours_start or not profile.hours_end:
        return True
    local = now.astimezone(ZoneInfo(profile.timezone)).time()
    start, end = parse_time(profile.hours_start), parse_time(profile.hours_end)
    if start <= end:
        return start <= local < end
    return local >= start or local < end  # hours past midnight


async def coach_load(session: AsyncSession, member_id: int) -> int:
    """Cases a coach holds: accepted and open, plus offers awaiting their answer."""
    active = (
        await session.exec(
            select(func.count()).where(
                SupportCase.coach_member_id == member_id,
                SupportCase.status == CaseStatus.ACTIVE,
            )
        )
    ).one()
    offered = (
        await session.exec(
            select(func.count()).where(
                SupportOffer.coach_member_id == member_id,
                SupportOffer.status == OfferStatus.PENDING,
            )
        )
    ).one()
    return active + offered


async def next_coach(
    session: AsyncSession, case: SupportCase, now: datetime
) -> CoachProfile | None:
    """The coach to offer `case` to: on duty, still a coach, reachable, within their hours and
    limit, not yet offered this case, not the member themself — least recently offered first."""
    tried = set(
        (
            await session.exec(
                select(SupportOffer.coach_member_id).where(SupportOffer.case_id == case.id)
            )
        ).all()
    )
    on_duty = (
        await session.exec(
            select(CoachProfile, Member)
            .join(Member, col(Member.id) == CoachProfile.member_id)
            .where(col(CoachProfile.on_duty).is_(True))
        )
    ).all()
    # Where each is reached: their first identity (as identity_of), all in one query.
    reached: dict[int, Identity] = {}
    for identity in await session.exec(
        select(Identity)
        .where(col(Identity.member_id).in_([p.member_id for p, _ in on_duty]))
        .order_by(col(Identity.id))
    ):
        reached.setdefault(identity.member_id, identity)
    candidates = []
    for profile, member in on_duty:
        if profile.member_id in tried or profile.member_id == case.member_id:
            continue
        if Role.COACH.value not in member.role_names():
            continue
        identity = reached.get(profile.member_id)
        if identity is None or identity.dm_failed_at is not None:
            continue
        if not within_hours(profile, now):
            continue
        if profile.case_limit is not None and (
            await coach_load(session, profile.member_id) >= profile.case_limit
        ):
            continue
        candidates.append(profile)
    candidates.sort(key=lambda p: (p.last_offered_at is not None, p.last_offered_at, p.member_id))
    return candidates[0] if candidates else None


async def route(
    services: Services,
    session: AsyncSession,
    case: SupportCase,
    now: datetime,
    *,
    tell_member: bool = True,
) -> str:
    """Offer an unassigned case to the next coach, or escalate it: "offered" | "escalated"."""
    coach = await next_coach(session, case, now)
    if coach is not None:
        await offer(services, session, case, coach, now)
        return "offered"
    if case.status == CaseStatus.WAITING:
        await escalate(services, session, case, now, tell_member=tell_member)
    return "escalated"


async def offer(
    services: Services,
    session: AsyncSession,
    case: SupportCase,
    coach: CoachProfile,
    now: datetime,
) -> None:
    minutes = services.settings.support.ack_minutes
    made = SupportOffer(
        case_id=case.id,
        coach_member_id=coach.member_id,
        offered_at=now,
        due_at=now + timedelta(minutes=minutes),
    )
    session.add(made)
    await session.flush()
    coach.last_offered_at = now
    await record(session, case.id, now, "offered", "system", coach.member_id, f"offer {made.id}")
    urgency = "URGENT — words of immediate risk. " if case.urgent else ""
    await services.outbox.send(
        session,
        now,
        ToMember(coach.member_id),
        Message(
            f"🔔 {urgency}A member is asking for support: {case.number}.\n"
            f"From: {await shown_as(session, case)}\n"
            f"{quoted_words(services, case)}\n\n"
            f"Could you take it? If you can't, press Pass and I'll ask another coach — and if "
            f"I haven't heard within {minutes} minutes I'll do that anyway.",
            (
                Button("Accept", f"support.accept:{made.id}", Style.PRIMARY),
                Button("Pass", f"support.pass:{made.id}"),
            ),
        ),
        priority=Priority.URGENT,
        key=f"support:offer:{made.id}",
    )


async def escalate(
    services: Services,
    session: AsyncSession,
    case: SupportCase,
    now: datetime,
    *,
    tell_member: bool,
) -> None:
    """No coach left: the coordinators are asked to take it, and the member told honestly."""
    case.status = CaseStatus.ESCALATED
    case.escalated_at = now
    case.realert_due_at = now + timedelta(minutes=services.settings.support.ack_minutes)
    await record(session, case.id, now, "escalated", "system")
    await alert_coordinators(services, session, case, now, urgent=False)
    if tell_member and case.member_id is not None:
        await services.outbox.send(
            session,
            now,
            ToMember(case.member_id),
            Message(f"About your request {case.number}: {delay_notice(services.settings)}"),
            priority=Priority.URGENT,
        )


async def alert_coordinators(
    services: Services, session: AsyncSession, case: SupportCase, now: datetime, *, urgent: bool
) -> None:
    """Post the case (number and words, the name only if shared) with *Take it*."""
    risk = " The member's words suggest immediate risk." if case.urgent else ""
    if urgent:
        also = " A coach is being asked too —" if case.status == CaseStatus.WAITING else ""
        head = f"🚨 Urgent support request {case.number}:{risk}{also} if you can help now, take it."
    elif case.realerts:
        waited = int((now - (case.connected_at or now)).total_seconds() // 60)
        head = f"⏰ Still waiting for a coach: {case.number}, for {waited} minutes now.{risk}"
    else:
        mark = "🚨 Urgent support" if case.urgent else "⚠️ Support"
        head = f"{mark} request {case.number} needs someone: no coach is free to take it.{risk}"
    case.coordinators_alerted_at = case.coordinators_alerted_at or now
    await services.outbox.send(
        session,
        now,
        ToChannel(Channel.COORDINATORS),
        Message(
            f"{head}\nFrom: {await shown_as(session, case)}\n{quoted_words(services, case)}",
            (Button("Take it", f"support.take:{case.id}", Style.PRIMARY),),
        ),
        priority=Priority.URGENT,
        key=f"support:alert:{case.id}",
    )
    await record(session, case.id, now, "alerted", "system", detail="urgent" if urgent else "")


async def withdraw_offers(
    services: Services, session: AsyncSession, case: SupportCase, now: datetime, why: str
) -> None:
    """Withdraw every offer still pending on a case, editing each offer message to say why."""
    pending = (
        await session.exec(
            select(SupportOffer).where(
                SupportOffer.case_id == case.id, SupportOffer.status == OfferStatus.PENDING
            )
        )
    ).all()
    for o in pending:
        o.status, o.answered_at = OfferStatus.WITHDRAWN, now
        await record(session, case.id, now, "withdrawn", "system", o.coach_member_id)
        await services.outbox.edit(
            session, now, f"support:offer:{o.id}", Message(f"{case.number}: {why}")
        )


# --- accepting --------------------------------------------------------------------------------


async def claim_case(ctx: Context, case: SupportCase) -> bool:
    """Assign an unassigned case to the asker; exactly one of any concurrent claims wins."""
    claimed = await ctx.session.exec(
        update(SupportCase)
        .where(
            col(SupportCase.id) == case.id,
            col(SupportCase.status).in_(CaseStatus.UNASSIGNED),
        )
        .values(
            status=CaseStatus.ACTIVE,
            coach_member_id=ctx.member_id,
            accepted_at=ctx.now,
            realert_due_at=None,
        )
    )
    if claimed.rowcount != 1:
        return False
    await ctx.session.refresh(case)
    return True


async def own_offer(ctx: Context, offer_id: int) -> tuple[SupportOffer, SupportCase]:
    """The asking coach's own offer, read again under the case's lock, and its case; anyone
    else's is refused without saying whose it is."""
    made = await ctx.session.get(SupportOffer, offer_id)
    if made is None or made.coach_member_id != ctx.member_id:
        raise UserError(GONE)
    await lock_case(ctx.session, made.case_id)
    await ctx.session.refresh(made)
    case = await ctx.session.get(SupportCase, made.case_id)
    assert case is not None
    return made, case


@registry.action("support.accept", roles={Role.COACH})
async def accept(ctx: Context, offer_id: int) -> Reply:
    """*Accept* on an offer: the case is yours, if it is still waiting for you."""
    made, case = await own_offer(ctx, offer_id)
    if made.status == OfferStatus.ACCEPTED:
        return Reply.of(f"You've already accepted {case.number} — it's yours. Thank you.")
    if made.status != OfferStatus.PENDING:
        raise UserError(
            f"Thank you for answering — that offer has ended and {case.number} has been passed "
            "on, so there's nothing you need to do."
        )
    claimed = await ctx.session.exec(
        update(SupportOffer)
        .where(col(SupportOffer.id) == offer_id, col(SupportOffer.status) == OfferStatus.PENDING)
        .values(status=OfferStatus.ACCEPTED, answered_at=ctx.now)
    )
    if claimed.rowcount != 1 or not await claim_case(ctx, case):
        raise UserError(
            f"Thank you — {case.number} has just been taken by someone else, so there's nothing "
            "you need to do."
        )
    await record(ctx.session, case.id, ctx.now, "accepted", "coach", ctx.member_id)
    return await begin(ctx, case, f"You accepted {case.number}. Thank you.")


@registry.action("support.take", roles={Role.COORDINATOR})
async def take(ctx: Context, case_id: int) -> Reply:
    """*Take it* on a coordinator alert."""
    case = await ctx.session.get(SupportCase, case_id)
    if case is None or case.coordinators_alerted_at is None:
        raise UserError(GONE)
    if case.status == CaseStatus.ACTIVE and case.coach_member_id == ctx.member_id:
        return Reply.of(f"You've already taken {case.number} — it's yours. Thank you.")
    if not await claim_case(ctx, case):
        raise UserError(
            f"Thank you — {case.number} has already been taken"
            + (" or closed." if case.status == CaseStatus.CLOSED else " by someone else.")
        )
    await record(ctx.session, case.id, ctx.now, "taken", "coordinator", ctx.member_id)
    return await begin(ctx, case, None)


async def begin(ctx: Context, case: SupportCase, update_text: str | None) -> Reply:
    """The case is accepted: tidy the other messages about it and tell both sides."""
    assert case.id is not None
    services, session, now = ctx.services, ctx.session, ctx.now
    await withdraw_offers(services, session, case, now, "taken by someone else, thank you.")
    if case.coordinators_alerted_at is not None:
        await ctx.edit(
            f"support:alert:{case.id}",
            Message(f"✅ {case.number} has been taken — thank you."),
        )
    profile = await profile_of(session, ctx.member_id, now, ctx.settings.network.timezone)
    profile.current_case_id = case.id
    if case.member_id is not None:
        who = (
            "You chose to share your name with them."
            if case.share_name
            else f"They know you only as Member {case.number}."
        )
        buttons = [Button("Close this conversation", f"support.close:{case.id}")]
        if not case.share_name:
            buttons.insert(0, Button("Share my name", f"support.reveal:{case.id}"))
        await ctx.send(
            ToMember(case.member_id),
            Message(
                f"Good news — a coach has accepted your request {case.number} and will message "
                f"you here soon. Anything you send me now goes straight to them. {who}",
                tuple(buttons),
            ),
            priority=Priority.URGENT,
            key=case_key(case.id),
        )
    words = words_of(services, case)
    intro = (
        f"{case.number} is yours. Anything you send me now goes to "
        f"{await shown_as(session, case)}, and their messages come to you here."
    )
    texts = [intro]
    if words:
        quoted = ["> " + quote_user_text(p).replace("\n", "\n> ") for p in chunks(words)]
        if len(intro) + len(quoted[0]) < MAX_TEXT - 100:
            texts = [f"{intro}\nIn their words:\n{quoted[0]}", *quoted[1:]]
        else:
            texts = [f"{intro}\nIn their words:", *quoted]
    messages = [Message(t) for t in texts[:-1]] + [Message(texts[-1], case_buttons(case))]
    if update_text is None:
        return Reply(messages=messages)
    return Reply(messages=messages, update=Message(update_text))


def case_buttons(case: SupportCase) -> tuple[Button, ...]:
    return (
        Button("Reply", f"support.reply:{case.id}"),
        Button("Close", f"support.close:{case.id}"),
    )


@registry.action("support.pass", roles={Role.COACH})
async def pass_(ctx: Context, offer_id: int) -> Reply:
    """*Pass* on an offer: the next coach is asked at once."""
    made, case = await own_offer(ctx, offer_id)
    if made.status != OfferStatus.PENDING:
        return Reply.of(f"Thank you — {case.number} is no longer waiting on you.")
    made.status, made.answered_at = OfferStatus.PASSED, ctx.now
    await record(ctx.session, case.id, ctx.now, "passed", "coach", ctx.member_id)
    if case.status in CaseStatus.UNASSIGNED:
        await route(ctx.services, ctx.session, case, ctx.now)
    return Reply(
        update=Message(
            f"You passed on {case.number} — thank you for saying so quickly. I'm asking "
            "someone else."
        )
    )


# --- the conversation -------------------------------------------------------------------------


async def relay(ctx: Context, case: SupportCase, sender: str, text: str) -> None:
    """Pass `text` to the other side of an active case, with a *Reply* button for the case."""
    assert case.id is not None
    to = case.coach_member_id if sender == "member" else case.member_id
    if to is None or await identity_of(ctx.session, to) is None:
        other = "your coach" if sender == "member" else f"Member {case.number}"
        raise UserError(
            f"I can't reach {other} any more — they may have left the network. Nothing was "
            "sent. You can close the conversation with the button on any of its messages."
        )
    label = await shown_as(ctx.session, case) if sender == "member" else "Coach"
    pieces = chunks(quote_user_text(text))
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        await ctx.send(
            ToMember(to),
            Message(f"{label}: {piece}", case_buttons(case) if last else ()),
            key=case_key(case.id),
        )
    await record(ctx.session, case.id, ctx.now, "relayed", sender, ctx.member_id)
    if ctx.settings.support.keep_transcripts:
        ctx.session.add(
            CaseMessage(
                case_id=case.id, at=ctx.now, sender=sender, text=ctx.services.cipher.encrypt(text)
            )
        )


async def coach_cases(session: AsyncSession, member_id: int) -> list[SupportCase]:
    return list(
        (
            await session.exec(
                select(SupportCase)
                .where(
                    SupportCase.coach_member_id == member_id,
                    SupportCase.status == CaseStatus.ACTIVE,
                )
                .order_by(col(SupportCase.accepted_at))
            )
        ).all()
    )


@registry.direct_message(order=10)
async def relay_direct_message(ctx: Context, text: str) -> Reply | Message | None:
    """A DM during a support conversation goes to the other side; otherwise it isn't ours."""
    if ctx.reply_to is not None:
        replied = await case_replied_to(ctx, ctx.reply_to)
        if replied is not None:
            case, side = await side_of(ctx, replied)
            if case.status == CaseStatus.ACTIVE:
                await relay(ctx, case, side, text)
                if side == "coach":
                    profile = await profile_of(
                        ctx.session, ctx.member_id, ctx.now, ctx.settings.network.timezone
                    )
                    profile.current_case_id = case.id
                return Reply()
    mine = await open_case_of(ctx.session, ctx.member_id)
    coaching = await coach_cases(ctx.session, ctx.member_id)
    profile = await ctx.session.get(CoachProfile, ctx.member_id)
    current = profile.current_case_id if profile else None
    as_coach = bool(coaching) and (mine is None or any(c.id == current for c in coaching))
    if as_coach:
        case = next((c for c in coaching if c.id == current), coaching[-1])
        await relay(ctx, case, "coach", text)
        if profile is not None:
            profile.current_case_id = case.id
        if len(coaching) > 1:
            others = ", ".join(c.number for c in coaching if c.id != case.id)
            return Message(
                f"Sent to {await shown_as(ctx.session, case)}. You also have {others} open — "
                "press Reply under one of their messages to answer them."
            )
        return Reply()
    if mine is None:
        return None
    if mine.status == CaseStatus.ACTIVE:
        await relay(ctx, mine, "member", text)
        return Reply()
    await add_words(ctx, mine, text)
    return Message(
        f"Thank you — I've added that to your request {mine.number}. I'm still finding a coach "
        "and will message you here as soon as one accepts.\n"
        f"If you need to talk to someone now:\n{helplines(ctx.settings)}"
    )


def case_key(case_id: int | None) -> str:
    """The outbox key of the messages that belong to a case's conversation."""
    return f"support:case:{case_id}"


async def case_replied_to(ctx: Context, message_id: str) -> int | None:
    """The case a reply is about: the one whose message (a relay, or the offer) the asker
    received as `message_id` on their platform; None when it is no such message."""
    key = (
        await ctx.session.exec(
            select(OutboxMessage.message_key).where(
                OutboxMessage.platform == ctx.actor.platform,
                OutboxMessage.recipient == ctx.actor.user_id,
                OutboxMessage.platform_message_id == message_id,
                col(OutboxMessage.message_key).is_not(None),
            )
        )
    ).first()
    kind, _, number = (key or "").removeprefix("support:").partition(":")
    if not number.isdigit():
        return None
    if kind == "case":
        return int(number)
    if kind == "offer":
        made = await ctx.session.get(SupportOffer, int(number))
        return made.case_id if made is not None else None
    return None


def reply_form(case: SupportCase, to: str) -> Form:
    assert case.id is not None
    return Form(
        action=f"support.send:{case.id}",
        title=f"Reply to {to}"[:45],
        fields=(
            FormField("message", "Your message", required=True, max_length=4000, multiline=True),
        ),
        submit_label="Send",
    )


async def side_of(ctx: Context, case_id: int) -> tuple[SupportCase, str]:
    """The case and which side the asker is on; anyone not on it is refused, revealing nothing."""
    case = await ctx.session.get(SupportCase, case_id)
    if case is None:
        raise UserError(GONE)
    if case.member_id == ctx.member_id and case.member_id is not None:
        side = "member"
    elif case.coach_member_id == ctx.member_id and case.coach_member_id is not None:
        side = "coach"
    else:
        raise UserError(GONE)
    if case.status == CaseStatus.CLOSED:
        raise UserError(CLOSED.format(number=case.number))
    return case, side


@registry.action("support.reply")
async def reply(ctx: Context, case_id: int) -> Form:
    """*Reply* under a relayed message: answer that case (and make it the current one)."""
    case, side = await side_of(ctx, case_id)
    if case.status != CaseStatus.ACTIVE:
        raise UserError(f"{case.number} isn't with a coach yet — I'll message you when it is.")
    if side == "coach":
        profile = await profile_of(
            ctx.session, ctx.member_id, ctx.now, ctx.settings.network.timezone
        )
        profile.current_case_id = case.id
        return reply_form(case, await shown_as(ctx.session, case))
    return reply_form(case, "your coach")


@registry.form("support.send")
async def send(ctx: Context, case_id: int, *, values: dict[str, str]) -> Reply:
    """The reply form, submitted: relay it."""
    case, side = await side_of(ctx, case_id)
    if case.status != CaseStatus.ACTIVE:
        raise UserError(f"{case.number} isn't with a coach yet — nothing was sent.")
    text = check_form(reply_form(case, ""), values)["message"]
    await relay(ctx, case, side, text)
    to = "your coach" if side == "member" else await shown_as(ctx.session, case)
    return Reply.of(f"Sent to {to}.")


@registry.action("support.reveal")
async def reveal(ctx: Context, case_id: int) -> Reply:
    """*Share my name*, during the conversation: the coach is told who they're talking to."""
    case, side = await side_of(ctx, case_id)
    if side != "member":
        raise UserError(GONE)
    if case.share_name:
        return Reply.of("Your coach already knows your name.")
    case.share_name = True
    await record(ctx.session, case.id, ctx.now, "name_shared", "member", ctx.member_id)
    if case.coach_member_id is not None:
        await ctx.send(
            ToMember(case.coach_member_id),
            Message(
                f"Member {case.number} has chosen to share their name with you: "
                f"{quote_user_text(ctx.member.name)}.",
                case_buttons(case),
            ),
        )
    return Reply.of("Done — your coach now knows your name.")


# --- closing, feedback, follow-up -------------------------------------------------------------


@registry.action("support.close")
async def close(ctx: Context, case_id: int) -> Reply:
    """*Close* (or *Withdraw my request*), by the member or their coach."""
    case, side = await side_of(ctx, case_id)
    was_active = case.status == CaseStatus.ACTIVE
    await close_case(ctx.services, ctx.session, case, ctx.now, side, ctx.member_id)
    if side == "coach":
        return Reply.of(f"{case.number} is closed. Thank you for being there for them.")
    if not was_active:
        return Reply.of(
            f"Your request {case.number} is withdrawn, and no coach will be asked now. If you'd "
            "like to talk to someone later, just type /support. Take care."
        )
    return Reply(messages=[feedback_message(case, ctx.settings)])


async def close_case(
    services: Services,
    session: AsyncSession,
    case: SupportCase,
    now: datetime,
    by: str,
    by_member: int | None,
) -> None:
    assert case.id is not None
    was_active = case.status == CaseStatus.ACTIVE
    case.status, case.closed_at, case.closed_by = CaseStatus.CLOSED, now, by
    case.realert_due_at = None
    await record(session, case.id, now, "closed", by, by_member)
    await withdraw_offers(services, session, case, now, "the member withdrew it — thank you.")
    if case.coordinators_alerted_at is not None and not was_active:
        await services.outbox.edit(
            session, now, f"support:alert:{case.id}", Message(f"{case.number} has been closed.")
        )
    if by == "member" and was_active and case.coach_member_id is not None:
        await services.outbox.send(
            session,
            now,
            ToMember(case.coach_member_id),
            Message(f"{await shown_as(session, case)} has closed the conversation. Thank you."),
        )
    if by != "member" and case.member_id is not None:
        await services.outbox.send(
            session,
            now,
            ToMember(case.member_id),
            Message(
                f"Your coach has closed the conversation {case.number}. Thank you for reaching out."
            ),
            priority=Priority.NORMAL,
        )
        await services.outbox.send(
            session, now, ToMember(case.member_id), feedback_message(case, services.settings)
        )


def feedback_message(case: SupportCase, settings: Settings, note: str = "") -> Message:
    """After a close: optional 1–5 feedback and the offer of a follow-up, whichever are left."""
    assert case.id is not None
    lines, buttons = [note] if note else [], []
    if case.feedback is None:
        lines.append(
            f"{case.number} is closed. If you'd like to tell us, how helpful was it? "
            "(1 = not at all, 5 = very) — entirely optional."
        )
        buttons += [Button(str(n), f"support.feedback:{case.id}:{n}") for n in range(1, 6)]
    if case.followup_due_at is None and not case.followup_declined:
        days = settings.support.followup_days
        lines.append(f"Would you like me to check in with you in {days} days, to see how you are?")
        buttons += [
            Button("Yes, follow up", f"support.followup:{case.id}:yes", Style.PRIMARY),
            Button("No, thank you", f"support.followup:{case.id}:no"),
        ]
    return Message("\n".join(lines) or "Thank you. Take good care.", tuple(buttons))


async def own_closed_case(ctx: Context, case_id: int) -> SupportCase:
    case = await own_case(ctx, case_id)
    if case.status != CaseStatus.CLOSED:
        raise UserError(GONE)
    return case


@registry.action("support.feedback")
async def feedback(ctx: Context, case_id: int, score: int) -> Reply:
    """1–5 feedback on a closed case."""
    case = await own_closed_case(ctx, case_id)
    if not 1 <= score <= 5:
        raise UserError(GONE)
    first = case.feedback is None
    case.feedback = score
    if first:
        await record(ctx.session, case_id, ctx.now, "feedback", "member", ctx.member_id)
    return Reply(
        update=feedback_message(case, ctx.settings, "Thank you for telling us — it helps.")
    )


@registry.action("support.followup")
async def followup(ctx: Context, case_id: int, choice: str) -> Reply:
    """Whether the member would like a follow-up message after `followup_days`."""
    case = await own_closed_case(ctx, case_id)
    if choice not in ("yes", "no"):
        raise UserError(GONE)
    if case.followup_due_at is not None or case.followup_declined:
        return Reply.of("Thank you — I have your answer already.")
    if choice == "yes":
        days = ctx.settings.support.followup_days
        case.followup_due_at = ctx.now + timedelta(days=days)
        await record(ctx.session, case_id, ctx.now, "followup_asked", "member", ctx.member_id)
        note = f"I'll message you in {days} days. Take good care until then."
    else:
        case.followup_declined = True
        note = "No problem. You can always type /support if you need us."
    return Reply(update=feedback_message(case, ctx.settings, note))


# --- due work ---------------------------------------------------------------------------------


async def _min(services: Services, column, *where) -> datetime | None:
    async with services.database.session() as session:
        return (await session.exec(select(func.min(column)).where(*where))).first()


async def _next_offer_due(services: Services) -> datetime | None:
    return await _min(services, SupportOffer.due_at, SupportOffer.status == OfferStatus.PENDING)


@registry.due("support.offers", next_due=_next_offer_due)
async def expire_offers(services: Services, now: datetime) -> int:
    """Offers not accepted in time move on to the next coach (or the coordinators)."""
    async with services.database.session() as session:
        due = (
            await session.exec(
                select(SupportOffer.id, SupportOffer.case_id).where(
                    SupportOffer.status == OfferStatus.PENDING, col(SupportOffer.due_at) <= now
                )
            )
        ).all()
    moved = 0
    for offer_id, case_id in due:
        async with services.database.session() as session:
            await lock_case(session, case_id)
            claimed = await session.exec(
                update(SupportOffer)
                .where(
                    col(SupportOffer.id) == offer_id,
                    col(SupportOffer.status) == OfferStatus.PENDING,
                )
                .values(status=OfferStatus.TIMED_OUT, answered_at=now)
            )
            if claimed.rowcount != 1:
                await session.rollback()
                continue
            made = await session.get(SupportOffer, offer_id)
            assert made is not None
            case = await session.get(SupportCase, made.case_id)
            assert case is not None
            await record(session, case.id, now, "timed_out", "system", made.coach_member_id)
            minutes = services.settings.support.ack_minutes
            await services.outbox.edit(
                session,
                now,
                f"support:offer:{offer_id}",
                Message(
                    f"{case.number}: no answer within {minutes} minutes, so I've asked someone "
                    "else. No need to do anything."
                ),
            )
            if case.status in CaseStatus.UNASSIGNED:
                await route(services, session, case, now)
            await session.commit()
            moved += 1
    return moved


async def _next_realert_due(services: Services) -> datetime | None:
    return await _min(
        services, SupportCase.realert_due_at, SupportCase.status == CaseStatus.ESCALATED
    )


@registry.due("support.realerts", next_due=_next_realert_due)
async def realert(services: Services, now: datetime) -> int:
    """Escalated cases nobody has taken: alert the coordinators again, every `ack_minutes`."""
    async with services.database.session() as session:
        due = (
            await session.exec(
                select(SupportCase.id, SupportCase.realert_due_at).where(
                    SupportCase.status == CaseStatus.ESCALATED,
                    col(SupportCase.realert_due_at) <= now,
                )
            )
        ).all()
    sent = 0
    interval = timedelta(minutes=services.settings.support.ack_minutes)
    for case_id, due_at in due:
        async with services.database.session() as session:
            claimed = await session.exec(
                update(SupportCase)
                .where(
                    col(SupportCase.id) == case_id,
                    col(SupportCase.status) == CaseStatus.ESCALATED,
                    col(SupportCase.realert_due_at) == due_at,
                )
                .values(realert_due_at=now + interval, realerts=SupportCase.realerts + 1)
            )
            if claimed.rowcount != 1:
                await session.rollback()
                continue
            case = await session.get(SupportCase, case_id)
            assert case is not None
            await alert_coordinators(services, session, case, now, urgent=False)
            pending = (
                await session.exec(
                    select(func.count()).where(
                        SupportOffer.case_id == case_id,
                        SupportOffer.status == OfferStatus.PENDING,
                    )
                )
            ).one()
            if not pending:  # a coach may have come free since
                coach = await next_coach(session, case, now)
                if coach is not None:
                    await offer(services, session, case, coach, now)
            await session.commit()
            sent += 1
    return sent


async def _next_followup_due(services: Services) -> datetime | None:
    return await _min(
        services, SupportCase.followup_due_at, col(SupportCase.followup_sent_at).is_(None)
    )


@registry.due("support.followups", next_due=_next_followup_due)
async def send_followups(services: Services, now: datetime) -> int:
    """The follow-up message a member asked for when their case closed."""
    async with services.database.session() as session:
        due = (
            await session.exec(
                select(SupportCase.id).where(
                    col(SupportCase.followup_due_at) <= now,
                    col(SupportCase.followup_sent_at).is_(None),
                )
            )
        ).all()
    sent = 0
    for case_id in due:
        async with services.database.session() as session:
            claimed = await session.exec(
                update(SupportCase)
                .where(col(SupportCase.id) == case_id, col(SupportCase.followup_sent_at).is_(None))
                .values(followup_sent_at=now)
            )
            if claimed.rowcount != 1:
                await session.rollback()
                continue
            case = await session.get(SupportCase, case_id)
            assert case is not None
            if case.member_id is not None:
                await services.outbox.send(
                    session,
                    now,
                    ToMember(case.member_id),
                    Message(
                        f"Hello — it's been a little while since your conversation with a coach "
                        f"({case.number}), and I said I'd check in. How are things? If you'd like "
                        "to talk again, I'm here.",
                        (Button("Talk to a coach", "cmd:support"),),
                    ),
                )
                sent += 1
            await record(session, case_id, now, "followed_up", "system")
            await session.commit()
    return sent


async def _next_draft_expiry(services: Services) -> datetime | None:
    oldest = await _min(services, SupportCase.created_at, SupportCase.status == CaseStatus.DRAFT)
    return None if oldest is None else oldest + DRAFT_LIFETIME


@registry.due("support.drafts", next_due=_next_draft_expiry)
async def forget_drafts(services: Services, now: datetime) -> int:
    """Words from a request never connected are deleted after a day."""
    async with services.database.session() as session:
        result = await session.exec(
            delete(SupportCase).where(
                col(SupportCase.status) == CaseStatus.DRAFT,
                col(SupportCase.created_at) <= now - DRAFT_LIFETIME,
            )
        )
        await session.commit()
    return result.rowcount or 0
