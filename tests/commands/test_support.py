"""Support requests through the console: intake, routing, deadlines, escalation and races.

Console users "coach" and "coach2" are coaches, "coordinator" is a coordinator; alice and bob are
members. The clock starts at Monday 2026-01-05 09:00 UTC and `ack_minutes` is 10 unless set.
"""

import asyncio
import io
import re
from datetime import timedelta

import pytest
from sqlmodel import col, select

from bot.app import App
from bot.core import Actor, Role
from commands.support import WORDS_IN_OFFER, expire_offers, realert
from storage.models import Identity
from storage.support import CaseEvent, CaseStatus, OfferStatus, SupportCase, SupportOffer
from tests.harness import ConsoleBot, make_settings

SIGNPOST = "not an emergency service"
EMERGENCY = "call 999"
HELPLINES = ("08000 562 561", "116 123", "Text SHOUT to 85258", "111, option 2")
CHOICE = "Would you like me to connect you with one of our volunteer coaches?"
OFFER = "A member is asking for support"
SAFE = "it's safely with us"
DELAY = "it may take longer than usual"
REALERT = "Still waiting for a coach"
GONE_ELSEWHERE = "that offer has ended"

_HEADER = re.compile(r"^\[((?:edited )?(?:(?:DM|ephemeral) \S+|#\S+))\]$", re.MULTILINE)


# --- helpers ----------------------------------------------------------------------------------


def blocks(out: str) -> list[tuple[str, str]]:
    """The printed messages as (where, text), "edited " dropped from where."""
    found = list(_HEADER.finditer(out))
    return [
        (m.group(1).removeprefix("edited "), out[m.end() : nxt.start() if nxt else len(out)])
        for m, nxt in zip(found, [*found[1:], None], strict=True)
    ]


def seen_in(out: str, where: str) -> str:
    """Everything printed to one place ("DM coach", "#coordinators", "ephemeral alice")."""
    return "".join(text for place, text in blocks(out) if place == where)


def seen_by(out: str, user: str) -> str:
    """Everything one console user was shown, in their DMs and ephemerals."""
    return seen_in(out, f"DM {user}") + seen_in(out, f"ephemeral {user}")


async def on_duty(bot: ConsoleBot, *names: str) -> None:
    for name in names:
        await bot.say("/coach on", as_=name)


async def connect(bot: ConsoleBot, text: str = "", as_: str = "alice") -> str:
    """`/support text` then *Connect me with a coach*; everything printed."""
    return await bot.say(f"/support {text}".rstrip(), ":click connect me", as_=as_)


async def cases(bot: ConsoleBot) -> list[SupportCase]:
    async with bot.app.database.session() as session:
        return list((await session.exec(select(SupportCase).order_by(col(SupportCase.id)))).all())


async def offers(bot: ConsoleBot) -> list[SupportOffer]:
    async with bot.app.database.session() as session:
        return list((await session.exec(select(SupportOffer).order_by(col(SupportOffer.id)))).all())


async def kinds(bot: ConsoleBot, case_id: int = 1) -> list[str]:
    """The case's audit trail, as event kinds in order."""
    async with bot.app.database.session() as session:
        rows = await session.exec(
            select(CaseEvent.kind)
            .where(CaseEvent.case_id == case_id)
            .order_by(col(CaseEvent.at), col(CaseEvent.id))
        )
        return list(rows.all())


async def member_id(bot: ConsoleBot, name: str) -> int:
    async with bot.app.database.session() as session:
        identity = (
            await session.exec(
                select(Identity).where(Identity.platform == "console", Identity.user_id == name)
            )
        ).one()
        return identity.member_id


def actor(name: str) -> Actor:
    """A console user as the console platform would describe them."""
    roles = {"coach": {Role.COACH}, "coach2": {Role.COACH}, "coordinator": {Role.COORDINATOR}}
    return Actor("console", name, name, frozenset(roles.get(name, set())))


def words(bot: ConsoleBot, case: SupportCase) -> str:
    assert case.words is not None
    return bot.app.cipher.decrypt(case.words)


def texts(reply) -> str:
    parts = [m.text for m in reply.messages]
    if reply.update is not None:
        parts.append(reply.update.text)
    return "\n".join(parts)


# --- signposting first ------------------------------------------------------------------------


async def test_support_signposts_before_the_choice(bot: ConsoleBot):
    """/support answers first with the emergency line, every helpline and "not an emergency
    service", then the choice message."""
    out = await bot.say("/support things are hard", as_="alice")
    first, second = blocks(out)[:2]
    assert first[0] == second[0] == "ephemeral alice"
    assert EMERGENCY in first[1] and SIGNPOST in first[1]
    assert all(line in first[1] for line in HELPLINES)
    assert CHOICE in second[1]
    assert "[1] Connect me with a coach  [2] Not now  [3] Share my name  [4] Stay anonymous" in out


async def test_dm_menu_talk_to_a_coach_signposts_first(bot: ConsoleBot):
    """The DM menu's *Talk to a coach* shows the signposting before the choice."""
    menu = await bot.say("hello", as_="alice")
    assert "Talk to a coach" in menu
    out = await bot.say(":click talk to a coach")
    assert SIGNPOST in out and CHOICE in out
    assert out.index(EMERGENCY) < out.index(SIGNPOST) < out.index(CHOICE)
    assert all(line in out for line in HELPLINES)


async def test_checkin_talk_to_a_coach_signposts_first(bot: ConsoleBot):
    """The check-in's *Talk to a coach* (cmd:support) shows the signposting before the choice."""
    await bot.say("/checkin", ":click yes", as_="alice")
    await bot.advance("7d")
    await bot.say(":click struggling")
    out = await bot.say(":click talk to a coach")
    assert out.index(SIGNPOST) < out.index(CHOICE)
    assert all(line in out.split(CHOICE)[0] for line in (EMERGENCY, *HELPLINES))


async def test_too_long_text_is_refused_kindly_after_the_signposting(bot: ConsoleBot):
    """5,001 characters: the signposting still comes first, then a kind "too long"; nothing
    is stored."""
    out = await bot.say("/support " + "x" * 5001, as_="alice")
    assert out.index(SIGNPOST) < out.index("a bit long for me")
    assert "5,001 characters" in out and CHOICE not in out
    assert await cases(bot) == []


async def test_five_thousand_characters_are_stored_whole_and_shortened_in_the_offer(
    bot: ConsoleBot,
):
    """5,000 characters are accepted and stored whole; the coach's offer shows a shortened
    version."""
    text = ("I feel overwhelmed. " * 250)[:4990] + " LASTWORDS"
    assert len(text) == 5000
    await on_duty(bot, "coach")
    out = await connect(bot, text)
    assert SAFE in out
    (case,) = await cases(bot)
    assert words(bot, case) == text
    offer = seen_in(out, "DM coach")
    assert "LASTWORDS" not in offer and "(the rest comes when you accept)" in offer
    quoted = offer.split("In their words:\n> ")[1].split(" (the rest")[0]
    assert len(quoted) == WORDS_IN_OFFER and quoted.endswith("…")


async def test_empty_support_works_and_the_offer_says_nothing_more_yet(bot: ConsoleBot):
    """A bare /support connects too; the coach is told they haven't said more yet."""
    await on_duty(bot, "coach")
    out = await connect(bot)
    assert CHOICE in out and SAFE in out
    assert "They haven't said more yet" in seen_in(out, "DM coach")
    (case,) = await cases(bot)
    assert case.words is None and case.status == CaseStatus.WAITING


async def test_signposting_appears_when_the_database_is_down():
    """With the database unreachable, /support still answers with the signposting first."""
    settings = make_settings("postgresql+asyncpg://postgres@127.0.0.1:1/x")
    app = App(settings, console_in=io.StringIO(""), console_out=io.StringIO())
    try:
        reply = await app.core.command(actor("alice"), "support", "please help")
    finally:
        await app.database.close()
    first, second = (m.text for m in reply.messages)
    assert SIGNPOST in first and all(line in first for line in HELPLINES)
    assert "temporarily unavailable" in second and EMERGENCY in second


# --- drafts -----------------------------------------------------------------------------------


async def test_nothing_is_routed_before_connect(bot: ConsoleBot):
    """Before *Connect* the words wait in a draft: no offer, no coach DM."""
    await on_duty(bot, "coach", "coach2")
    out = await bot.say("/support I'm not sleeping", as_="alice")
    assert "[DM coach" not in out and "[#coordinators]" not in out
    (case,) = await cases(bot)
    assert case.status == CaseStatus.DRAFT
    assert await offers(bot) == [] and await kinds(bot) == []


async def test_not_now_deletes_the_draft(bot: ConsoleBot):
    """*Not now* deletes the draft and its words."""
    out = await bot.say("/support I'm not sleeping", ":click not now", as_="alice")
    assert "what you wrote has been deleted" in out
    assert await cases(bot) == []


async def test_an_unanswered_draft_is_deleted_after_a_day(bot: ConsoleBot):
    """A draft never connected is gone 25 hours later."""
    await bot.say("/support I'm not sleeping", as_="alice")
    assert len(await cases(bot)) == 1
    await bot.advance("25h")
    assert await cases(bot) == []


async def test_the_members_words_are_encrypted_at_rest(bot: ConsoleBot):
    """The stored words are ciphertext that decrypts back to them."""
    await bot.say("/support governors are making my life miserable", as_="alice")
    (case,) = await cases(bot)
    assert case.words and "governors" not in case.words
    assert words(bot, case) == "governors are making my life miserable"


# --- connecting -------------------------------------------------------------------------------


async def test_connect_stores_the_case_before_saying_it_is_safe(bot: ConsoleBot):
    """*Connect* answers "safely with us" with H-1001, and the case is stored as waiting."""
    await on_duty(bot, "coach")
    out = await connect(bot, "I need to talk")
    assert "Your request is H-1001, and it's safely with us" in out
    (case,) = await cases(bot)
    assert case.id == 1 and case.status == CaseStatus.WAITING and case.connected_at is not None


async def test_connect_offers_exactly_one_coach_anonymously(bot: ConsoleBot):
    """One coach gets the offer DM with Accept/Pass, the words and "Member H-1001" — no name."""
    await on_duty(bot, "coach", "coach2")
    out = await connect(bot, "I need to talk")
    assert out.count(OFFER) == 1
    offer = seen_in(out, "DM coach")
    assert "From: Member H-1001" in offer and "> I need to talk" in offer
    assert "[1] Accept  [2] Pass" in offer
    assert "alice" not in offer
    assert len(await offers(bot)) == 1


async def test_connect_records_created_and_offered(bot: ConsoleBot):
    """The audit trail holds "created" then "offered", and never the words."""
    await on_duty(bot, "coach")
    await connect(bot, "I need to talk")
    assert await kinds(bot) == ["created", "offered"]
    async with bot.app.database.session() as session:
        details = (await session.exec(select(CaseEvent.detail))).all()
    assert not any("talk" in d for d in details)


async def test_share_my_name_before_connecting_shows_it_to_the_coach(bot: ConsoleBot):
    """*Share my name* before connecting: the offer comes "From: alice (H-1001)"."""
    await on_duty(bot, "coach")
    await bot.say("/support I need to talk", ":click share my name", as_="alice")
    out = await bot.say(":click connect me")
    assert "From: alice (H-1001)" in seen_in(out, "DM coach")


async def test_anonymous_member_is_never_named_to_coaches_or_coordinators(bot: ConsoleBot):
    """Through offer, time-out, escalation, take and relay, "alice" never reaches a coach or
    the coordinators."""
    await on_duty(bot, "coach")
    await connect(bot, "I need to talk")
    await bot.advance("11m")
    await bot.advance("10m")
    await bot.say(":click take it", as_="coordinator")
    await bot.say("are you there?", as_="alice")
    out = bot.transcript
    assert "Member H-1001: are you there?" in seen_by(out, "coordinator")
    for where in ("DM coach", "ephemeral coach", "#coordinators"):
        assert "alice" not in seen_in(out, where)
    assert "alice" not in seen_by(out, "coordinator")


# --- routing choices --------------------------------------------------------------------------


async def test_least_recently_offered_coach_goes_first(bot: ConsoleBot):
    """Two cases in a row go to two different coaches."""
    await on_duty(bot, "coach", "coach2")
    first = await connect(bot, "first", as_="alice")
    second = await connect(bot, "second", as_="bob")
    assert OFFER in seen_in(first, "DM coach") and "[DM coach2]" not in first
    assert OFFER in seen_in(second, "DM coach2") and "[DM coach]" not in second
    assert [o.coach_member_id for o in await offers(bot)] == [
        await member_id(bot, "coach"),
        await member_id(bot, "coach2"),
    ]


async def test_a_coach_off_duty_is_never_offered(bot: ConsoleBot):
    """A coach who went off duty is skipped, even when nobody else is left."""
    await on_duty(bot, "coach2")
    await bot.say("/coach off", as_="coach2")
    await on_duty(bot, "coach")
    await connect(bot, "I need to talk")
    await bot.advance("30m")
    assert OFFER not in seen_in(bot.transcript, "DM coach2")
    assert (await cases(bot))[0].status == CaseStatus.ESCALATED


async def test_a_coach_outside_their_hours_is_not_offered(bot: ConsoleBot):
    """A coach whose hours are 18:00–22:00 gets no offer at 09:00."""
    out = await bot.say("/coach hours 18:00-22:00", as_="coach")
    assert "between 18:00 and 22:00" in out
    await on_duty(bot, "coach", "coach2")
    await connect(bot, "I need to talk")
    await bot.advance("11m")
    assert OFFER in seen_in(bot.transcript, "DM coach2")
    assert OFFER not in seen_in(bot.transcript, "DM coach")
    assert (await cases(bot))[0].status == CaseStatus.ESCALATED


async def test_a_coach_within_their_hours_is_offered(bot: ConsoleBot):
    """A coach whose hours are 08:00–10:00 is offered a case at 09:00."""
    await bot.say("/coach hours 08:00-10:00", as_="coach")
    await on_duty(bot, "coach")
    out = await connect(bot, "I need to talk")
    assert OFFER in seen_in(out, "DM coach")


async def test_a_coach_at_their_limit_is_not_offered(bot: ConsoleBot):
    """A coach with `/coach limit 1` and an active case is not offered a second."""
    await bot.say("/coach limit 1", as_="coach")
    await on_duty(bot, "coach")
    await connect(bot, "first", as_="alice")
    await bot.say(":click accept", as_="coach")
    out = await connect(bot, "second", as_="bob")
    assert OFFER not in out
    assert [c.status for c in await cases(bot)] == [CaseStatus.ACTIVE, CaseStatus.ESCALATED]


async def test_a_coach_is_never_offered_their_own_request(bot: ConsoleBot):
    """A coach asking for support is not offered their own case."""
    await on_duty(bot, "coach")
    out = await connect(bot, "I need someone too", as_="coach")
    assert SAFE in out and OFFER not in out
    assert await offers(bot) == []
    assert (await cases(bot))[0].status == CaseStatus.ESCALATED


async def test_a_coach_coming_on_duty_is_offered_the_waiting_case(bot: ConsoleBot):
    """A case escalated for want of coaches goes to the first coach who comes on duty."""
    await connect(bot, "I need to talk")
    out = await bot.say("/coach on", as_="coach")
    assert "A request is waiting — I've just sent it to you" in out
    assert OFFER in seen_in(out, "DM coach")
    assert len(await offers(bot)) == 1


async def test_going_off_duty_passes_a_pending_offer_on(bot: ConsoleBot):
    """`/coach off` with an offer pending withdraws it and offers the next coach."""
    await on_duty(bot, "coach", "coach2")
    await connect(bot, "I need to talk")
    out = await bot.say("/coach off", as_="coach")
    assert "you went off duty, so I've asked someone else" in seen_in(out, "DM coach")
    assert OFFER in seen_in(out, "DM coach2")
    assert [o.status for o in await offers(bot)] == [OfferStatus.WITHDRAWN, OfferStatus.PENDING]


# --- deadlines --------------------------------------------------------------------------------


async def test_no_answer_in_time_moves_to_the_next_coach(bot: ConsoleBot):
    """After ack_minutes the next coach is offered, and the first coach's offer says so."""
    await on_duty(bot, "coach", "coach2")
    await connect(bot, "I need to talk")
    assert OFFER not in await bot.advance("9m")
    out = await bot.advance("2m")
    assert OFFER in seen_in(out, "DM coach2")
    assert "no answer within 10 minutes, so I've asked someone else" in seen_in(out, "DM coach")
    assert [o.status for o in await offers(bot)] == [OfferStatus.TIMED_OUT, OfferStatus.PENDING]
    assert "timed_out" in await kinds(bot)


async def test_ack_minutes_is_configurable(make_bot):
    """With ack_minutes 5, the next coach is offered after 5 minutes."""
    bot = await make_bot(support={"ack_minutes": 5})
    await on_duty(bot, "coach", "coach2")
    await connect(bot, "I need to talk")
    assert OFFER not in await bot.advance("4m")
    assert OFFER in seen_in(await bot.advance("1m"), "DM coach2")


async def test_pass_offers_the_next_coach_at_once(bot: ConsoleBot):
    """*Pass* sends the case to the next coach straight away."""
    await on_duty(bot, "coach", "coach2")
    await connect(bot, "I need to talk")
    out = await bot.say(":click pass", as_="coach")
    assert "You passed on H-1001" in out
    assert OFFER in seen_in(out, "DM coach2")
    assert [o.status for o in await offers(bot)] == [OfferStatus.PASSED, OfferStatus.PENDING]
    assert "passed" in await kinds(bot)


async def test_nobody_left_alerts_coordinators_and_tells_the_member(bot: ConsoleBot):
    """When every coach has passed: a coordinator alert with *Take it*, and the member is told
    honestly it may take longer, with the helplines."""
    await on_duty(bot, "coach")
    await connect(bot, "I need to talk")
    out = await bot.say(":click pass", as_="coach")
    alert = seen_in(out, "#coordinators")
    assert "H-1001 needs someone" in alert and "> I need to talk" in alert
    assert "[1] Take it" in alert
    told = seen_in(out, "DM alice")
    assert DELAY in told and all(line in told for line in (EMERGENCY, *HELPLINES))
    assert (await cases(bot))[0].status == CaseStatus.ESCALATED
    assert "escalated" in await kinds(bot)


async def test_escalation_is_realerted_every_ack_minutes_until_taken(bot: ConsoleBot):
    """An escalated case is re-alerted every ack_minutes, and never after it is taken."""
    await connect(bot, "I need to talk")
    assert REALERT not in await bot.advance("9m")
    assert (await bot.advance("1m")).count(REALERT) == 1
    assert (await bot.advance("10m")).count(REALERT) == 1
    await bot.say(":click take it", as_="coordinator")
    assert REALERT not in await bot.advance("1h")
    assert (await cases(bot))[0].realerts == 2


async def test_nobody_on_duty_escalates_at_connect(bot: ConsoleBot):
    """With no coach on duty, *Connect* escalates at once and says it may take longer."""
    out = await connect(bot, "I need to talk")
    assert SAFE in out and DELAY in out
    assert "[1] Take it" in seen_in(out, "#coordinators")
    assert (await cases(bot))[0].status == CaseStatus.ESCALATED
    assert await kinds(bot) == ["created", "escalated", "alerted"]


# --- answering offers -------------------------------------------------------------------------


async def test_accept_connects_coach_and_member(bot: ConsoleBot):
    """*Accept* makes the case active: the member is told, the coach gets the words."""
    await on_duty(bot, "coach")
    await connect(bot, "I need to talk")
    out = await bot.say(":click accept", as_="coach")
    assert "Good news — a coach has accepted your request H-1001" in seen_in(out, "DM alice")
    assert "H-1001 is yours" in out and "> I need to talk" in out
    (case,) = await cases(bot)
    assert case.status == CaseStatus.ACTIVE
    assert case.coach_member_id == await member_id(bot, "coach")
    assert "accepted" in await kinds(bot)


async def test_late_accept_on_a_timed_out_offer_is_refused_kindly(bot: ConsoleBot):
    """Accepting after the offer timed out says it has gone elsewhere and changes nothing."""
    await on_duty(bot, "coach", "coach2")
    await connect(bot, "I need to talk")
    await bot.advance("11m")
    first = (await offers(bot))[0]
    reply = await bot.app.core.press(actor("coach"), f"support.accept:{first.id}")
    assert GONE_ELSEWHERE in texts(reply)
    (case,) = await cases(bot)
    assert case.status == CaseStatus.WAITING and case.coach_member_id is None
    assert [o.status for o in await offers(bot)] == [OfferStatus.TIMED_OUT, OfferStatus.PENDING]
    assert "accepted" not in await kinds(bot)


async def test_accepting_twice_says_already_accepted(bot: ConsoleBot):
    """A second *Accept* from the same coach says they already have it."""
    await on_duty(bot, "coach")
    await connect(bot, "I need to talk")
    await bot.say(":click accept", as_="coach")
    (made,) = await offers(bot)
    reply = await bot.app.core.press(actor("coach"), f"support.accept:{made.id}")
    assert "You've already accepted H-1001" in texts(reply)
    assert (await kinds(bot)).count("accepted") == 1


async def test_take_it_by_a_non_coordinator_is_refused(bot: ConsoleBot):
    """*Take it* pressed by a member or a coach is refused and changes nothing."""
    await connect(bot, "I need to talk")
    for name in ("bob", "coach"):
        reply = await bot.app.core.press(actor(name), "support.take:1")
        assert "only for coordinators" in texts(reply)
    (case,) = await cases(bot)
    assert case.status == CaseStatus.ESCALATED and case.coach_member_id is None


async def test_take_it_after_a_coach_accepted_says_already_taken(bot: ConsoleBot):
    """A coordinator pressing *Take it* after a coach accepted is told it is taken."""
    await on_duty(bot, "coach")
    await connect(bot, "I can't go on")
    await bot.say(":click accept", as_="coach")
    reply = await bot.app.core.press(actor("coordinator"), "support.take:1")
    assert "H-1001 has already been taken" in texts(reply)
    assert (await cases(bot))[0].coach_member_id == await member_id(bot, "coach")
    assert "taken" not in await kinds(bot)


# --- restarts ---------------------------------------------------------------------------------


async def test_restart_before_the_deadline_offers_the_next_coach_once(bot: ConsoleBot):
    """A restart between offer and deadline: after it, the next coach is offered exactly once
    and nothing is sent twice."""
    await on_duty(bot, "coach", "coach2")
    await connect(bot, "I need to talk")
    await bot.advance("5m")
    await bot.restart()
    await bot.advance("30m")
    out = bot.transcript
    assert seen_in(out, "DM coach").count(OFFER) == 1
    assert seen_in(out, "DM coach2").count(OFFER) == 1
    assert out.count(SAFE) == 1
    assert len(await offers(bot)) == 2
    assert (await kinds(bot)).count("offered") == 2


async def test_restart_during_escalation_keeps_realerting_without_doubling(bot: ConsoleBot):
    """A restart mid-escalation: re-alerts go on, one every ack_minutes."""
    await connect(bot, "I need to talk")
    await bot.advance("10m")
    await bot.restart()
    out = await bot.advance("20m")
    assert out.count(REALERT) == 2
    assert bot.transcript.count(REALERT) == 3
    assert (await cases(bot))[0].realerts == 3


# --- races ------------------------------------------------------------------------------------


async def second_pending_offer(bot: ConsoleBot) -> dict[str, int]:
    """Give coach2 a pending offer on case 1 beside coach's: the offer ids by coach."""
    coach2 = await member_id(bot, "coach2")
    async with bot.app.database.session() as session:
        (first,) = (await session.exec(select(SupportOffer))).all()
        second = SupportOffer(
            case_id=first.case_id,
            coach_member_id=coach2,
            offered_at=first.offered_at,
            due_at=first.due_at,
        )
        session.add(second)
        await session.commit()
        assert first.id is not None and second.id is not None
        return {"coach": first.id, "coach2": second.id}


@pytest.mark.parametrize("first", ["coach", "coach2"])
async def test_two_concurrent_accepts_have_exactly_one_winner(bot: ConsoleBot, first: str):
    """Two coaches accepting the same case at once: one wins, the other is told kindly."""
    await on_duty(bot, "coach", "coach2")
    await connect(bot, "I need to talk")
    ids = await second_pending_offer(bot)
    order = [first, *(n for n in ids if n != first)]
    replies = dict(
        zip(
            order,
            await asyncio.gather(
                *(bot.app.core.press(actor(n), f"support.accept:{ids[n]}") for n in order)
            ),
            strict=True,
        )
    )
    won = [n for n, r in replies.items() if "You accepted H-1001" in texts(r)]
    assert len(won) == 1
    (lost,) = (texts(r) for n, r in replies.items() if n != won[0])
    assert "taken by someone else" in lost or GONE_ELSEWHERE in lost
    (case,) = await cases(bot)
    assert case.status == CaseStatus.ACTIVE
    assert case.coach_member_id == await member_id(bot, won[0])
    assert (await kinds(bot)).count("accepted") == 1
    statuses = {o.coach_member_id: o.status for o in await offers(bot)}
    assert sorted(statuses.values()) == [OfferStatus.ACCEPTED, OfferStatus.WITHDRAWN]


@pytest.mark.parametrize("coach_first", [True, False])
async def test_coordinator_take_racing_a_coach_accept_has_exactly_one_winner(
    bot: ConsoleBot, coach_first: bool
):
    """*Take it* and *Accept* at once on an urgent case: exactly one of them gets it, and the
    other is told kindly."""
    await on_duty(bot, "coach")
    await connect(bot, "I can't go on")
    (made,) = await offers(bot)
    presses = [
        bot.app.core.press(actor("coach"), f"support.accept:{made.id}"),
        bot.app.core.press(actor("coordinator"), "support.take:1"),
    ]
    accept, take = await asyncio.gather(*(presses if coach_first else presses[::-1]))
    if not coach_first:
        accept, take = take, accept
    coach_won = "You accepted H-1001" in texts(accept)
    taker_won = "H-1001 is yours" in texts(take)
    assert coach_won != taker_won
    lost = texts(take if coach_won else accept)
    assert "taken by someone else" in lost or GONE_ELSEWHERE in lost
    winner = "coach" if coach_won else "coordinator"
    (case,) = await cases(bot)
    assert case.status == CaseStatus.ACTIVE
    assert case.coach_member_id == await member_id(bot, winner)
    trail = await kinds(bot)
    assert trail.count("accepted") + trail.count("taken") == 1


async def test_accept_at_the_deadline_has_one_outcome(bot: ConsoleBot):
    """*Accept* racing the offer's time-out: either the coach has the case or it moved on to
    the coordinators — never both, and never an error."""
    await on_duty(bot, "coach")
    await connect(bot, "I need to talk")
    (made,) = await offers(bot)
    bot.clock.advance(timedelta(minutes=10))
    _, reply = await asyncio.gather(
        expire_offers(bot.app.services, bot.clock.now()),
        bot.app.core.press(actor("coach"), f"support.accept:{made.id}"),
    )
    (case,) = await cases(bot)
    (made,) = await offers(bot)
    trail = await kinds(bot)
    if "You accepted H-1001" in texts(reply):
        assert case.status == CaseStatus.ACTIVE and made.status == OfferStatus.ACCEPTED
        assert "timed_out" not in trail and "escalated" not in trail
    else:
        assert "nothing you need to do" in texts(reply)
        assert case.status == CaseStatus.ESCALATED and made.status == OfferStatus.TIMED_OUT
        assert "accepted" not in trail


async def test_pass_at_the_deadline_offers_the_next_coach_once(bot: ConsoleBot):
    """*Pass* racing the offer's time-out: the next coach is offered exactly once and the case
    is not escalated while their offer stands."""
    await on_duty(bot, "coach", "coach2")
    await connect(bot, "I need to talk")
    (made,) = await offers(bot)
    bot.clock.advance(timedelta(minutes=10))
    _, reply = await asyncio.gather(
        expire_offers(bot.app.services, bot.clock.now()),
        bot.app.core.press(actor("coach"), f"support.pass:{made.id}"),
    )
    assert "Sorry" not in texts(reply)
    coach2 = await member_id(bot, "coach2")
    assert [o.coach_member_id for o in await offers(bot)][1:] == [coach2]
    (case,) = await cases(bot)
    assert case.status == CaseStatus.WAITING
    trail = await kinds(bot)
    assert trail.count("offered") == 2 and "escalated" not in trail
    assert trail.count("passed") + trail.count("timed_out") == 1


async def test_going_off_duty_at_the_deadline_offers_the_next_coach_once(bot: ConsoleBot):
    """`/coach off` racing the offer's time-out: the next coach is offered exactly once and the
    case is not escalated while their offer stands."""
    await on_duty(bot, "coach", "coach2")
    await connect(bot, "I need to talk")
    bot.clock.advance(timedelta(minutes=10))
    _, reply = await asyncio.gather(
        expire_offers(bot.app.services, bot.clock.now()),
        bot.app.core.command(actor("coach"), "coach", "off"),
    )
    assert "You're off duty" in texts(reply)
    coach2 = await member_id(bot, "coach2")
    assert [o.coach_member_id for o in await offers(bot)][1:] == [coach2]
    (case,) = await cases(bot)
    assert case.status == CaseStatus.WAITING
    trail = await kinds(bot)
    assert trail.count("offered") == 2 and "escalated" not in trail


async def test_coming_on_duty_at_a_realert_offers_the_case_once(bot: ConsoleBot):
    """`/coach on` racing an escalated case's re-alert: the coach is offered it exactly once."""
    await bot.say("/coach off", as_="coach")
    await connect(bot, "I need to talk")
    bot.clock.advance(timedelta(minutes=10))
    await asyncio.gather(
        realert(bot.app.services, bot.clock.now()),
        bot.app.core.command(actor("coach"), "coach", "on"),
    )
    assert len(await offers(bot)) == 1
    assert (await kinds(bot)).count("offered") == 1


async def test_take_at_the_deadline_always_takes(bot: ConsoleBot):
    """*Take it* racing the coach offer's time-out: the coordinator has the case either way."""
    await on_duty(bot, "coach")
    await connect(bot, "I can't go on")
    bot.clock.advance(timedelta(minutes=10))
    _, reply = await asyncio.gather(
        expire_offers(bot.app.services, bot.clock.now()),
        bot.app.core.press(actor("coordinator"), "support.take:1"),
    )
    assert "H-1001 is yours" in texts(reply)
    (case,) = await cases(bot)
    assert case.status == CaseStatus.ACTIVE
    assert case.coach_member_id == await member_id(bot, "coordinator")
    assert [o.status for o in await offers(bot)] in (
        [OfferStatus.TIMED_OUT],
        [OfferStatus.WITHDRAWN],
    )


# --- urgent words -----------------------------------------------------------------------------


async def test_urgent_words_alert_the_coordinators_at_once(bot: ConsoleBot):
    """Saying "I can't go on" makes the case urgent: the coordinators are alerted with the words and
    *Take it*, the coach's offer says URGENT, and the member sees the emergency line again."""
    await on_duty(bot, "coach")
    await bot.say("/support I can't go on", as_="alice")
    out = await bot.say(":click connect me")
    (case,) = await cases(bot)
    assert case.urgent and case.status == CaseStatus.WAITING
    alert = seen_in(out, "#coordinators")
    assert "Urgent support request H-1001" in alert and "> I can't go on" in alert
    assert "[1] Take it" in alert and "alice" not in alert
    assert "URGENT" in seen_in(out, "DM coach")
    assert EMERGENCY in seen_in(out, "ephemeral alice")


async def test_a_configured_urgent_word_marks_the_case_urgent(make_bot):
    """A custom `support.urgent_words` entry is matched regardless of case and spacing."""
    bot = await make_bot(support={"urgent_words": ["custom risk"]})
    await on_duty(bot, "coach")
    out = await connect(bot, "there is a Custom  Risk here")
    assert "Urgent support request H-1001" in seen_in(out, "#coordinators")
    assert (await cases(bot))[0].urgent


async def test_urgent_case_with_no_coach_free_alerts_the_coordinators_once(bot: ConsoleBot):
    """Urgent words and nobody on duty: one alert, marked urgent, that doesn't claim a coach is
    being asked."""
    out = await connect(bot, "I want to end my life")
    assert out.count("[#coordinators]") == 1
    alert = seen_in(out, "#coordinators")
    assert "Urgent support request H-1001 needs someone" in alert
    assert "A coach is being asked" not in alert


async def test_ordinary_words_do_not_alert_the_coordinators(bot: ConsoleBot):
    """Without urgent words, connecting with a coach on duty alerts nobody else."""
    await on_duty(bot, "coach")
    out = await connect(bot, "a tough week with governors")
    assert "[#coordinators]" not in out
    assert not (await cases(bot))[0].urgent


# --- joining an open case ---------------------------------------------------------------------


async def test_second_support_while_waiting_joins_the_case(bot: ConsoleBot):
    """A second /support while the first waits adds its words: no new case."""
    await on_duty(bot, "coach")
    await connect(bot, "first part")
    out = await bot.say("/support second part")
    assert out.index(SIGNPOST) < out.index("already with us")
    assert "I've added what you wrote" in out
    (case,) = await cases(bot)
    assert words(bot, case) == "first part\n\nsecond part"
    assert "added" in await kinds(bot)


async def test_a_dm_while_waiting_adds_to_the_request(bot: ConsoleBot):
    """A plain DM while the case waits is added to its words, with the helplines."""
    await on_duty(bot, "coach")
    await connect(bot, "first part")
    out = await bot.say("and another thing", as_="alice")
    assert "I've added that to your request H-1001" in out
    assert all(line in out for line in HELPLINES)
    (case,) = await cases(bot)
    assert words(bot, case) == "first part\n\nand another thing"


async def test_second_support_while_active_relays_to_the_coach(bot: ConsoleBot):
    """/support while a coach has the case passes the words to the coach."""
    await on_duty(bot, "coach")
    await connect(bot, "first part")
    await bot.say(":click accept", as_="coach")
    out = await bot.say("/support are you still there?", as_="alice")
    assert "I've passed what you wrote on to them" in out
    assert "Member H-1001: are you still there?" in seen_in(out, "DM coach")
    assert len(await cases(bot)) == 1
