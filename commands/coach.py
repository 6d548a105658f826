"""Coaches' own commands: go on or off duty, set a case limit and working hours, see one's cases
and who else is on duty. Only coaches may use ``/coach``; each sees only their own cases."""

from __future__ import annotations

from typing import Annotated

from sqlmodel import col, func, select

from bot.core import Arg, Context, Role
from bot.ui import Button, Message, Style
from commands.registry import registry
from commands.schedule import parse_time, parse_timezone
from commands.support import (
    CaseStatus,
    OfferStatus,
    coach_cases,
    lock_case,
    next_coach,
    offer,
    profile_of,
    record,
    route,
    shown_as,
)
from storage.members import members_with_role
from storage.support import CoachProfile, SupportCase, SupportOffer

COACH = {Role.COACH}
MAX_LIMIT = 20


async def my_profile(ctx: Context) -> CoachProfile:
    zone = ctx.actor.timezone or ctx.settings.network.timezone
    return await profile_of(ctx.session, ctx.member_id, ctx.now, zone)


def describe(profile: CoachProfile) -> str:
    limit = (
        f"at most {profile.case_limit} case{'s' if profile.case_limit != 1 else ''} at a time"
        if profile.case_limit
        else "no case limit"
    )
    hours = (
        f"offers only between {profile.hours_start} and {profile.hours_end} ({profile.timezone})"
        if profile.hours_start
        else "offers at any hour while you're on duty"
    )
    return f"You have {limit}, and {hours}."


@registry.command("coach", roles=COACH, hidden=True)
async def coach(ctx: Context) -> Message:
    """Coaches: go on or off duty, see your cases."""
    profile = await my_profile(ctx)
    state = "on duty" if profile.on_duty else "off duty"
    return Message(
        f"You're {state}. {describe(profile)}\n"
        "Use `/coach on`, `/coach off`, `/coach cases`, `/coach status`, "
        "`/coach limit <number|none>` or `/coach hours <HH:MM-HH:MM|any> [timezone]`."
    )


@registry.command("coach on", roles=COACH)
async def on(ctx: Context) -> Message:
    """Go on duty: support requests may be offered to you."""
    profile = await my_profile(ctx)
    profile.on_duty, profile.updated_at = True, ctx.now
    await ctx.session.flush()
    waiting = (
        await ctx.session.exec(
            select(SupportCase)
            .where(col(SupportCase.status).in_(CaseStatus.UNASSIGNED))
            .order_by(col(SupportCase.connected_at))
        )
    ).all()
    offered_me = 0
    for case in waiting:
        pending = (
            await ctx.session.exec(
                select(func.count()).where(
                    SupportOffer.case_id == case.id, SupportOffer.status == OfferStatus.PENDING
                )
            )
        ).one()
        if pending:
            continue
        chosen = await next_coach(ctx.session, case, ctx.now)
        if chosen is not None:
            await offer(ctx.services, ctx.session, case, chosen, ctx.now)
            offered_me += chosen.member_id == ctx.member_id
    minutes = ctx.settings.support.ack_minutes
    extra = " A request is waiting — I've just sent it to you." if offered_me else ""
    return Message(
        "You're on duty — thank you. I'll offer you support requests one at a time by DM; "
        f"please accept within {minutes} minutes, or pass so I can ask someone else. "
        f"{describe(profile)} Type /coach off when you stop.{extra}"
    )


@registry.command("coach off", roles=COACH)
async def off(ctx: Context) -> Message:
    """Go off duty: no new requests are offered to you."""
    profile = await my_profile(ctx)
    profile.on_duty, profile.updated_at = False, ctx.now
    pending = (
        await ctx.session.exec(
            select(SupportOffer).where(
                SupportOffer.coach_member_id == ctx.member_id,
                SupportOffer.status == OfferStatus.PENDING,
            )
        )
    ).all()
    for made in pending:
        await lock_case(ctx.session, made.case_id)
        await ctx.session.refresh(made)
        if made.status != OfferStatus.PENDING:
            continue  # timed out or answered meanwhile: already moved on
        made.status, made.answered_at = OfferStatus.WITHDRAWN, ctx.now
        case = await ctx.session.get(SupportCase, made.case_id)
        assert case is not None
        await record(ctx.session, made.case_id, ctx.now, "withdrawn", "coach", ctx.member_id)
        await ctx.edit(
            f"support:offer:{made.id}",
            Message(f"{case.number}: you went off duty, so I've asked someone else."),
        )
        await ctx.session.flush()
        if case.status in CaseStatus.UNASSIGNED:
            await route(ctx.services, ctx.session, case, ctx.now)
    mine = await coach_cases(ctx.session, ctx.member_id)
    still = (
        f" You still have {len(mine)} open conversation{'s' if len(mine) != 1 else ''} "
        "(see /coach cases)."
        if mine
        else ""
    )
    return Message(f"You're off duty. Thank you for your time today.{still}")


@registry.command("coach cases", roles=COACH)
async def cases(ctx: Context) -> Message:
    """Your open cases, and any offer waiting for your answer."""
    mine = await coach_cases(ctx.session, ctx.member_id)
    offers = (
        await ctx.session.exec(
            select(SupportOffer, SupportCase)
            .join(SupportCase, col(SupportCase.id) == SupportOffer.case_id)
            .where(
                SupportOffer.coach_member_id == ctx.member_id,
                SupportOffer.status == OfferStatus.PENDING,
            )
        )
    ).all()
    if not mine and not offers:
        return Message("You have no open cases and no offers waiting.")
    lines, buttons = ["Your cases:"], []
    for case in mine[:10]:
        urgent = " · urgent" if case.urgent else ""
        since = case.accepted_at or ctx.now
        lines.append(
            f"• {case.number} — {await shown_as(ctx.session, case)}{urgent}, "
            f"yours since {since:%a %d %b %H:%M} UTC"
        )
        buttons += [
            Button(f"Reply {case.number}", f"support.reply:{case.id}"),
            Button(f"Close {case.number}", f"support.close:{case.id}"),
        ]
    if len(mine) > 10:
        lines.append(f"…and {len(mine) - 10} more.")
    for made, case in offers[:2]:
        left = max(0, int((made.due_at - ctx.now).total_seconds() // 60))
        lines.append(f"• Offered to you: {case.number} (about {left} minutes left to accept)")
        buttons += [
            Button(f"Accept {case.number}", f"support.accept:{made.id}", Style.PRIMARY),
            Button(f"Pass {case.number}", f"support.pass:{made.id}"),
        ]
    return Message("\n".join(lines), tuple(buttons))


@registry.command("coach status", roles=COACH)
async def status(ctx: Context) -> Message:
    """Who is on duty now, and how many requests are waiting for a coach."""
    on_duty = (
        await ctx.session.exec(select(CoachProfile).where(col(CoachProfile.on_duty).is_(True)))
    ).all()
    coaches = {m.id: m for m in await members_with_role(ctx.session, Role.COACH.value)}
    names = sorted(coaches[p.member_id].name for p in on_duty if p.member_id in coaches)
    waiting = (
        await ctx.session.exec(
            select(func.count()).where(col(SupportCase.status).in_(CaseStatus.UNASSIGNED))
        )
    ).one()
    who = (
        f"On duty now ({len(names)}): {', '.join(names)}."
        if names
        else "Nobody is on duty right now."
    )
    you = (
        "You're on duty."
        if any(p.member_id == ctx.member_id for p in on_duty)
        else ("You're off duty.")
    )
    return Message(f"{who} {you}\nRequests waiting for a coach: {waiting}.")


def parse_limit(word: str) -> int | None:
    if word.lower() in ("none", "off", "no"):
        return None
    if not (word.isascii() and word.isdigit()) or len(word) > 6 or not 1 <= int(word) <= MAX_LIMIT:
        raise ValueError(f"the limit should be a number from 1 to {MAX_LIMIT}, or none")
    return int(word)


@registry.command("coach limit", roles=COACH)
async def limit(
    ctx: Context, number: Annotated[int | None, Arg(parse=parse_limit, metavar="number|none")]
) -> Message:
    """How many cases you'll hold at once (offers count too)."""
    profile = await my_profile(ctx)
    profile.case_limit, profile.updated_at = number, ctx.now
    return Message(f"Done. {describe(profile)}")


def parse_hours(word: str) -> tuple[str, str] | None:
    if word.lower() in ("any", "none", "off", "all"):
        return None
    start, sep, end = word.partition("-")
    if not sep:
        raise ValueError("hours look like 09:00-17:00 (or `any`)")
    first, last = parse_time(start), parse_time(end)
    if first == last:
        raise ValueError("the start and end of your hours are the same")
    return f"{first:%H:%M}", f"{last:%H:%M}"


@registry.command("coach hours", roles=COACH)
async def hours(
    ctx: Context,
    span: Annotated[tuple[str, str] | None, Arg(parse=parse_hours, metavar="HH:MM-HH:MM|any")],
    timezone: Annotated[str | None, Arg(parse=parse_timezone)] = None,
) -> Message:
    """When you'd like offers, e.g. `/coach hours 18:00-22:00` (past midnight is fine)."""
    profile = await my_profile(ctx)
    profile.hours_start, profile.hours_end = span if span else (None, None)
    if timezone:
        profile.timezone = timezone
    profile.updated_at = ctx.now
    return Message(f"Done. {describe(profile)}")
