"""Coaches' own commands — `/coach`, `on`, `off`, `limit`, `hours`, `cases`, `status` — through the
console with the injected clock (Monday 2026-01-05 09:00 UTC, which is 09:00 in London).

Console users "coach" and "coach2" are coaches, "coordinator" is a coordinator, anyone else is a
member.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from storage.models import Identity
from storage.support import CaseStatus, CoachProfile, OfferStatus, SupportCase, SupportOffer
from tests.harness import ConsoleBot

OFFER = "A member is asking for support"
ALERT = "[#coordinators]"
_HEADER = re.compile(r"^\[(?:edited )?(?:DM|ephemeral) ([^\]]+)\]$|^\[(?:edited )?#[^\]]+\]$", re.M)


def seen_by(out: str, name: str) -> str:
    """Every block of `out` that went to `name` (their DMs and ephemerals, edits included)."""
    heads = list(_HEADER.finditer(out))
    blocks = []
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(out)
        if head.group(1) == name:
            blocks.append(out[head.start() : end])
    return "".join(blocks)


async def member_id(bot: ConsoleBot, user: str) -> int:
    async with bot.app.database.session() as session:
        identity = (await session.exec(select(Identity).where(Identity.user_id == user))).one()
        return identity.member_id


async def profiles(bot: ConsoleBot) -> list[CoachProfile]:
    async with bot.app.database.session() as session:
        return list((await session.exec(select(CoachProfile))).all())


async def profile(bot: ConsoleBot, user: str = "coach") -> CoachProfile:
    wanted = await member_id(bot, user)
    async with bot.app.database.session() as session:
        found = await session.get(CoachProfile, wanted)
        assert found is not None
        return found


async def offers(bot: ConsoleBot) -> list[SupportOffer]:
    async with bot.app.database.session() as session:
        return list((await session.exec(select(SupportOffer).order_by(SupportOffer.id))).all())


async def case(bot: ConsoleBot, case_id: int = 1) -> SupportCase:
    async with bot.app.database.session() as session:
        found = await session.get(SupportCase, case_id)
        assert found is not None
        return found


async def ask(bot: ConsoleBot, member: str = "alice", words: str = "I am not coping") -> str:
    """`member` asks for support and connects; returns everything that printed."""
    return await bot.say(f"/support {words}", ":click connect", as_=member)


# --- who may use /coach ----------


@pytest.mark.parametrize("user", ["alice", "coordinator"])
@pytest.mark.parametrize("line", ["/coach on", "/coach off", "/coach limit 2", "/coach"])
async def test_non_coaches_are_refused_kindly_and_nothing_is_stored(
    bot: ConsoleBot, user: str, line: str
):
    """A member or a coordinator is told /coach is only for coaches; no duty row is written."""
    out = await bot.say(line, as_=user)
    assert f"[ephemeral {user}]" in out and "only for coaches" in out
    assert "You're on duty" not in out and "Done." not in out
    assert await profiles(bot) == []


async def test_non_coach_asking_for_cases_learns_nothing(bot: ConsoleBot):
    """`/coach cases` and `/coach status` from a member reveal no case and no coach."""
    await bot.say("/coach on", as_="coach")
    await ask(bot, "bob", "my private trouble")
    out = await bot.say("/coach cases", "/coach status", as_="alice")
    assert out.count("only for coaches") == 2
    assert "H-1001" not in out and "private trouble" not in out and "On duty" not in out


# --- on and off duty ----------


async def test_coach_on_sets_on_duty_and_names_the_ack_minutes(make_bot):
    """`/coach on` stores on_duty and tells the coach how long they have to accept."""
    bot = await make_bot(support={"ack_minutes": 5})
    out = await bot.say("/coach on", as_="coach")
    assert "You're on duty" in out and "please accept within 5 minutes" in out
    assert (await profile(bot)).on_duty is True


async def test_coach_off_clears_on_duty(bot: ConsoleBot):
    """`/coach off` after `/coach on` leaves the coach off duty, and says so."""
    await bot.say("/coach on", as_="coach")
    out = await bot.say("/coach off")
    assert "You're off duty" in out
    assert (await profile(bot)).on_duty is False


async def test_off_duty_coach_is_not_offered_requests(bot: ConsoleBot):
    """A coach who went off duty gets no offer; the request is escalated instead."""
    await bot.say("/coach on", "/coach off", as_="coach")
    out = await ask(bot)
    assert OFFER not in out and ALERT in out
    assert (await case(bot)).status == CaseStatus.ESCALATED


async def test_going_on_duty_picks_up_an_escalated_request(bot: ConsoleBot):
    """A request escalated while nobody was on duty is offered to the coach who comes on."""
    await ask(bot)
    assert (await case(bot)).status == CaseStatus.ESCALATED
    out = await bot.say("/coach on", as_="coach")
    assert "A request is waiting — I've just sent it to you." in out
    offer_dm = seen_by(out, "coach")
    assert OFFER in offer_dm and "H-1001" in offer_dm and "[1] Accept  [2] Pass" in offer_dm
    assert [(o.status, o.coach_member_id) for o in await offers(bot)] == [
        (OfferStatus.PENDING, await member_id(bot, "coach"))
    ]


async def test_going_on_duty_twice_offers_a_waiting_request_once(bot: ConsoleBot):
    """A second `/coach on` doesn't repeat an offer the coach already has pending."""
    await ask(bot)
    await bot.say("/coach on", as_="coach")
    out = await bot.say("/coach on")
    assert OFFER not in out and "A request is waiting" not in out
    assert len(await offers(bot)) == 1


async def test_going_on_duty_with_nothing_waiting_offers_nothing(bot: ConsoleBot):
    """With no request waiting, `/coach on` makes no offer and doesn't claim one was sent."""
    out = await bot.say("/coach on", as_="coach")
    assert "A request is waiting" not in out and OFFER not in out
    assert await offers(bot) == []


async def test_going_off_duty_passes_a_pending_offer_to_the_next_coach(bot: ConsoleBot):
    """`/coach off` with an offer pending withdraws it (editing the offer) and asks coach2."""
    await bot.say("/coach on", as_="coach")
    await bot.say("/coach on", as_="coach2")
    out = await ask(bot)
    assert OFFER in seen_by(out, "coach") and OFFER not in seen_by(out, "coach2")
    out = await bot.say("/coach off", as_="coach")
    assert "[edited DM coach]\nH-1001: you went off duty, so I've asked someone else." in out
    assert OFFER in seen_by(out, "coach2")
    assert [o.status for o in await offers(bot)] == [OfferStatus.WITHDRAWN, OfferStatus.PENDING]


async def test_going_off_duty_with_no_other_coach_escalates(bot: ConsoleBot):
    """The last coach going off duty with an offer pending escalates the request honestly."""
    await bot.say("/coach on", as_="coach")
    await ask(bot)
    out = await bot.say("/coach off", as_="coach")
    assert "you went off duty" in seen_by(out, "coach")
    assert ALERT in out and "[1] Take it" in out
    assert "it may take longer" in seen_by(out, "alice")
    assert (await case(bot)).status == CaseStatus.ESCALATED


async def test_going_off_duty_reminds_of_open_conversations(bot: ConsoleBot):
    """Off duty with an accepted case still open: the coach is reminded it's theirs."""
    await bot.say("/coach on", as_="coach")
    await ask(bot)
    await bot.say(":click accept", as_="coach")
    out = await bot.say("/coach off")
    assert "You still have 1 open conversation (see /coach cases)." in out
    assert (await case(bot)).status == CaseStatus.ACTIVE


# --- limit ----------


async def test_limit_sets_a_case_limit(bot: ConsoleBot):
    """`/coach limit 2` stores the limit and repeats it back."""
    out = await bot.say("/coach limit 2", as_="coach")
    assert "Done. You have at most 2 cases at a time" in out
    assert (await profile(bot)).case_limit == 2


async def test_limit_none_clears_the_limit(bot: ConsoleBot):
    """`/coach limit none` after a limit removes it."""
    await bot.say("/coach limit 2", as_="coach")
    out = await bot.say("/coach limit none")
    assert "no case limit" in out
    assert (await profile(bot)).case_limit is None


@pytest.mark.parametrize("word", ["0", "21", "x"])
async def test_bad_limit_gets_usage_and_changes_nothing(bot: ConsoleBot, word: str):
    """A limit outside 1–20 (or not a number) is explained kindly; the old limit stays."""
    await bot.say("/coach limit 3", as_="coach")
    out = await bot.say(f"/coach limit {word}")
    assert "the limit should be a number from 1 to 20, or none" in out
    assert "Usage: `/coach limit <number|none>`" in out
    assert (await profile(bot)).case_limit == 3


async def test_limit_without_a_value_asks_for_one(bot: ConsoleBot):
    """`/coach limit` alone asks for the number and stores no profile."""
    out = await bot.say("/coach limit", as_="coach")
    assert "I need the number|none" in out and "Usage: `/coach limit <number|none>`" in out
    assert await profiles(bot) == []


async def test_a_full_coach_is_not_offered_another_request(bot: ConsoleBot):
    """A coach at their limit of 1 is skipped: the second request goes to the coordinators."""
    await bot.say("/coach limit 1", "/coach on", as_="coach")
    await ask(bot, "alice")
    await bot.say(":click accept", as_="coach")
    out = await ask(bot, "bob")
    assert OFFER not in seen_by(out, "coach") and ALERT in out
    assert (await case(bot, 2)).status == CaseStatus.ESCALATED


# --- hours ----------


async def test_hours_are_stored_and_repeated_back(bot: ConsoleBot):
    """`/coach hours 18:00-22:00` stores both ends in the coach's zone."""
    out = await bot.say("/coach hours 18:00-22:00", as_="coach")
    assert "offers only between 18:00 and 22:00 (Europe/London)" in out
    stored = await profile(bot)
    assert (stored.hours_start, stored.hours_end, stored.timezone) == (
        "18:00",
        "22:00",
        "Europe/London",
    )


async def test_hours_past_midnight_with_a_timezone(bot: ConsoleBot):
    """`/coach hours 22:00-06:00 Europe/London` keeps a span that crosses midnight."""
    await bot.say("/coach hours 10:00-12:00 America/New_York", as_="coach")
    out = await bot.say("/coach hours 22:00-06:00 Europe/London")
    assert "between 22:00 and 06:00 (Europe/London)" in out
    stored = await profile(bot)
    assert (stored.hours_start, stored.hours_end, stored.timezone) == (
        "22:00",
        "06:00",
        "Europe/London",
    )


async def test_hours_any_clears_the_hours(bot: ConsoleBot):
    """`/coach hours any` goes back to offers at any hour."""
    await bot.say("/coach hours 18:00-22:00", as_="coach")
    out = await bot.say("/coach hours any")
    assert "offers at any hour while you're on duty" in out
    stored = await profile(bot)
    assert stored.hours_start is None and stored.hours_end is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("25:00-26:00", "'25:00' isn't a time I understand"),
        ("9-5", "'9' isn't a time I understand"),
        ("10:00-10:00", "the start and end of your hours are the same"),
        ("18:00-22:00 Mars/Olympus", "I don't know the timezone 'Mars/Olympus'"),
        ("18:00", "hours look like 09:00-17:00 (or `any`)"),
    ],
)
async def test_bad_hours_are_explained_and_change_nothing(bot: ConsoleBot, text: str, why: str):
    """Impossible times, a missing dash, an empty span or an unknown zone: a kind answer."""
    await bot.say("/coach hours 08:00-12:00", as_="coach")
    out = await bot.say(f"/coach hours {text}")
    assert why in out and "Usage: `/coach hours <HH:MM-HH:MM|any> [timezone]`" in out
    stored = await profile(bot)
    assert (stored.hours_start, stored.hours_end, stored.timezone) == (
        "08:00",
        "12:00",
        "Europe/London",
    )


async def test_coach_outside_their_hours_is_not_offered(bot: ConsoleBot):
    """At 09:00 London a coach with hours 18:00-22:00 is skipped and the request escalates."""
    await bot.say("/coach hours 18:00-22:00", "/coach on", as_="coach")
    out = await ask(bot)
    assert OFFER not in out and ALERT in out


async def test_coach_inside_hours_past_midnight_is_offered(make_bot):
    """At 23:30 London a coach with hours 22:00-06:00 is offered the request."""
    bot = await make_bot(start=datetime(2026, 1, 5, 23, 30, tzinfo=UTC))
    await bot.say("/coach hours 22:00-06:00 Europe/London", "/coach on", as_="coach")
    out = await ask(bot)
    assert OFFER in seen_by(out, "coach") and ALERT not in out


# --- cases ----------


async def test_cases_empty_state(bot: ConsoleBot):
    """With nothing open and nothing offered, `/coach cases` says so plainly."""
    out = await bot.say("/coach cases", as_="coach")
    assert "You have no open cases and no offers waiting." in out


async def test_cases_lists_a_pending_offer_with_accept_and_pass(bot: ConsoleBot):
    """An offer awaiting the coach shows with its time left and Accept/Pass buttons."""
    await bot.say("/coach on", as_="coach")
    await ask(bot)
    out = await bot.say("/coach cases", as_="coach")
    assert "• Offered to you: H-1001 (about 10 minutes left to accept)" in out
    assert "[1] Accept H-1001  [2] Pass H-1001" in out


async def test_accept_from_cases_takes_the_case(bot: ConsoleBot):
    """Pressing Accept in `/coach cases` makes the case the coach's."""
    await bot.say("/coach on", as_="coach")
    await ask(bot)
    await bot.say("/coach cases", ":click accept h-1001", as_="coach")
    found = await case(bot)
    assert found.status == CaseStatus.ACTIVE
    assert found.coach_member_id == await member_id(bot, "coach")


async def test_cases_lists_only_my_own_open_cases(bot: ConsoleBot):
    """Each coach's `/coach cases` lists their case with Reply/Close — never the other's."""
    await bot.say("/coach on", as_="coach")
    await bot.say("/coach on", as_="coach2")
    await ask(bot, "alice", "about the inspection")
    await bot.say(":click accept", as_="coach")
    await ask(bot, "bob", "about the governors")
    await bot.say(":click accept", as_="coach2")
    mine = await bot.say("/coach cases", as_="coach")
    assert "• H-1001 — Member H-1001, yours since Mon 05 Jan 09:00 UTC" in mine
    assert "[1] Reply H-1001  [2] Close H-1001" in mine
    assert "H-1002" not in mine and "governors" not in mine
    theirs = await bot.say("/coach cases", as_="coach2")
    assert "H-1002" in theirs and "H-1001" not in theirs


async def test_cases_leave_out_closed_cases(bot: ConsoleBot):
    """A case the member has closed no longer appears in `/coach cases`."""
    await bot.say("/coach on", as_="coach")
    await ask(bot)
    await bot.say(":click accept", as_="coach")
    await bot.say(":click close this conversation", as_="alice")
    out = await bot.say("/coach cases", as_="coach")
    assert "You have no open cases and no offers waiting." in out


async def test_cases_show_the_members_name_only_once_shared(bot: ConsoleBot):
    """An anonymous member appears as "Member H-1001"; after sharing, by name."""
    await bot.say("/coach on", as_="coach")
    await ask(bot)
    await bot.say(":click accept", as_="coach")
    assert "alice" not in await bot.say("/coach cases", as_="coach")
    await bot.say(":click share my name", as_="alice")
    assert "• H-1001 — alice (H-1001)" in await bot.say("/coach cases", as_="coach")


# --- status ----------


async def test_status_lists_coaches_on_duty_and_the_waiting_count(bot: ConsoleBot):
    """`/coach status` names who is on duty and how many requests wait — nothing about them."""
    await bot.say("/coach on", as_="coach")
    await ask(bot, "alice", "my deputy has walked out")
    out = await bot.say("/coach status", as_="coach2")
    assert "On duty now (1): coach. You're off duty." in out
    assert "Requests waiting for a coach: 1." in out
    assert "alice" not in out and "H-1001" not in out and "deputy" not in out


async def test_status_when_nobody_is_on_duty(bot: ConsoleBot):
    """With nobody on duty, `/coach status` says so and counts zero waiting."""
    out = await bot.say("/coach status", as_="coach")
    assert "Nobody is on duty right now. You're off duty." in out
    assert "Requests waiting for a coach: 0." in out


async def test_status_counts_only_unassigned_requests(bot: ConsoleBot):
    """An accepted case no longer counts as waiting; the coach is shown as on duty."""
    await bot.say("/coach on", as_="coach")
    await ask(bot)
    await bot.say(":click accept", as_="coach")
    out = await bot.say("/coach status", as_="coach")
    assert "On duty now (1): coach. You're on duty." in out
    assert "Requests waiting for a coach: 0." in out


# --- the bare command and help ----------


async def test_bare_coach_shows_state_and_subcommands(bot: ConsoleBot):
    """`/coach` alone says off or on duty, the limit and hours, and lists the subcommands."""
    out = await bot.say("/coach", as_="coach")
    assert "You're off duty. You have no case limit" in out
    for sub in ("/coach on", "/coach off", "/coach cases", "/coach status", "/coach limit"):
        assert sub in out
    await bot.say("/coach on", "/coach limit 4", "/coach hours 18:00-22:00")
    out = await bot.say("/coach")
    assert "You're on duty. You have at most 4 cases at a time" in out
    assert "between 18:00 and 22:00" in out


async def test_unknown_subcommand_gets_a_kind_answer(bot: ConsoleBot):
    """`/coach bogus` says it isn't known and lists what /coach can be followed by."""
    out = await bot.say("/coach bogus", as_="coach")
    assert "I don't know /coach bogus" in out
    assert "cases, hours, limit, off, on, status" in out
    assert await profiles(bot) == []


async def test_help_lists_coach_subcommands_for_a_coach(bot: ConsoleBot):
    """A coach's `/headsup help` lists each /coach subcommand with its help line."""
    out = await bot.say("/headsup help", as_="coach")
    for usage in (
        "`/coach on` — Go on duty",
        "`/coach off` — Go off duty",
        "`/coach cases` — Your open cases",
        "`/coach status` — Who is on duty",
        "`/coach limit <number|none>`",
        "`/coach hours <HH:MM-HH:MM|any> [timezone]`",
    ):
        assert usage in out


async def test_help_names_coach_commands_only_as_others_for_a_member(bot: ConsoleBot):
    """A member's help mentions /coach as the coaches' — never as something they can run."""
    out = await bot.say("/headsup help", as_="alice")
    assert "Coaches also use: /coach cases, /coach hours" in out
    assert "• `/coach" not in out
