"""The coordinators' daily digest of open support cases, through the console.

The clock starts at Monday 2026-01-05 09:00 UTC (Europe/London is on UTC in January), so the
first digest is due on Tuesday at 08:00.
"""

import asyncio
from datetime import UTC, datetime, timedelta

from sqlmodel import col, select

from bot.ui import MAX_TEXT
from commands.digest import describe_age, digest_text, next_digest, post_digest
from storage.models import OutboxMessage
from storage.support import CaseStatus, SupportCase
from tests.harness import ConsoleBot

TUESDAY_8 = datetime(2026, 1, 6, 8, 0, tzinfo=UTC)
HEADLINE = "support requests are open"
ONE_OPEN = "One support request is open"


def coordinators(out: str) -> list[str]:
    """The text of each message printed to #coordinators."""
    parts = out.split("[#coordinators]\n")[1:]
    return [part.split("\n[", 1)[0] for part in parts]


def digests(out: str) -> list[str]:
    return [text for text in coordinators(out) if text.startswith("Good morning.")]


async def add_case(
    bot: ConsoleBot,
    status: str,
    since: datetime,
    *,
    urgent: bool = False,
) -> int:
    """Store a case directly (no messages): open since `since`, with no deadlines pending."""
    async with bot.app.database.session() as session:
        case = SupportCase(
            status=status,
            urgent=urgent,
            created_at=since,
            connected_at=None if status == CaseStatus.DRAFT else since,
        )
        session.add(case)
        await session.commit()
        assert case.id is not None
        return case.id


async def digest_rows(bot: ConsoleBot) -> list[str]:
    """The message keys of every digest row in the outbox."""
    async with bot.app.database.session() as session:
        keys = await session.exec(
            select(OutboxMessage.message_key).where(
                col(OutboxMessage.message_key).startswith("digest:")
            )
        )
        return list(keys.all())


async def test_digest_lists_open_cases_at_eight(bot: ConsoleBot):
    """At 08:00 the coordinators get every open case: number, where it stands, and its age."""
    await add_case(bot, CaseStatus.ACTIVE, datetime(2026, 1, 2, 9, 0, tzinfo=UTC))
    await add_case(bot, CaseStatus.WAITING, datetime(2026, 1, 6, 5, 0, tzinfo=UTC))
    await add_case(bot, CaseStatus.ESCALATED, datetime(2026, 1, 5, 6, 30, tzinfo=UTC), urgent=True)
    out = await bot.advance_to(TUESDAY_8)
    (digest,) = digests(out)
    assert "3 support requests are open" in digest
    lines = [line for line in digest.splitlines() if line.startswith("•")]
    assert lines == [
        "• H-1003 (urgent) — no coach yet — waiting for someone to take it; open 1 day 1 hour",
        "• H-1002 — offered to a coach, not yet accepted; open 3 hours",
        "• H-1001 — a coach has it; open 3 days 23 hours",
    ]


async def test_digest_never_shows_a_name_or_words(bot: ConsoleBot):
    """A case whose member shared their name: the digest has its number, not the name or words."""
    await bot.say("/coach on", as_="coach")
    await bot.say(
        "/support the governors want me out", ":click share my name", ":click connect me",
        as_="alice",
    )  # fmt: skip
    await bot.say(":click accept", as_="coach")
    out = await bot.advance_to(TUESDAY_8)
    (digest,) = digests(out)
    assert "H-1001 — a coach has it" in digest
    for private in ("alice", "governors", "coach2"):
        assert private not in digest


async def test_closed_and_unconnected_cases_are_left_out(bot: ConsoleBot):
    """Closed cases and requests never connected are not in the digest."""
    await add_case(bot, CaseStatus.CLOSED, datetime(2026, 1, 5, 7, 0, tzinfo=UTC))
    await add_case(bot, CaseStatus.DRAFT, datetime(2026, 1, 6, 7, 0, tzinfo=UTC))
    await add_case(bot, CaseStatus.ACTIVE, datetime(2026, 1, 5, 7, 0, tzinfo=UTC))
    out = await bot.advance_to(TUESDAY_8)
    (digest,) = digests(out)
    assert ONE_OPEN in digest
    assert "H-1003" in digest and "H-1001" not in digest and "H-1002" not in digest


async def test_a_morning_with_nothing_open_posts_nothing(bot: ConsoleBot):
    """No open case: no digest, and nothing in the outbox for it."""
    await add_case(bot, CaseStatus.CLOSED, datetime(2026, 1, 5, 7, 0, tzinfo=UTC))
    out = await bot.advance("2d")
    assert coordinators(out) == []
    assert await digest_rows(bot) == []


async def test_digest_comes_each_morning(bot: ConsoleBot):
    """A case open for three mornings is in three digests, one a day."""
    await add_case(bot, CaseStatus.ACTIVE, datetime(2026, 1, 5, 8, 30, tzinfo=UTC))
    out = await bot.advance("3d")
    assert len(digests(out)) == 3
    assert await digest_rows(bot) == [
        "digest:2026-01-06",
        "digest:2026-01-07",
        "digest:2026-01-08",
    ]


async def test_digest_follows_the_network_timezone(make_bot):
    """With the network in New York, the digest comes at 08:00 there (13:00 UTC), not at 08:00
    in London."""
    bot = await make_bot(network={"timezone": "America/New_York"})
    await add_case(bot, CaseStatus.WAITING, datetime(2026, 1, 5, 8, 30, tzinfo=UTC))
    assert digests(await bot.advance_to(datetime(2026, 1, 5, 12, 59, tzinfo=UTC))) == []
    assert len(digests(await bot.advance_to(datetime(2026, 1, 5, 13, 0, tzinfo=UTC)))) == 1
    assert digests(await bot.advance_to(TUESDAY_8)) == []
    assert await digest_rows(bot) == ["digest:2026-01-05"]


async def test_a_second_tick_posts_no_second_digest(bot: ConsoleBot):
    """Running the job again the same morning posts nothing more."""
    await add_case(bot, CaseStatus.ACTIVE, datetime(2026, 1, 5, 7, 0, tzinfo=UTC))
    await bot.advance_to(TUESDAY_8)
    assert await post_digest(bot.app.services, TUESDAY_8 + timedelta(minutes=1)) == 0
    out = await bot.advance("10m")
    assert digests(out) == []
    assert len(await digest_rows(bot)) == 1


async def test_a_restart_the_same_morning_posts_no_second_digest(bot: ConsoleBot):
    """Restarting at 08:05, after the digest went out, sends it no second time."""
    await add_case(bot, CaseStatus.ACTIVE, datetime(2026, 1, 5, 7, 0, tzinfo=UTC))
    await bot.advance_to(TUESDAY_8)
    await bot.advance("5m")
    await bot.restart()
    out = await bot.advance("10m")
    assert digests(out) == []
    assert len(await digest_rows(bot)) == 1


async def test_two_instances_post_one_digest(bot: ConsoleBot, db):
    """Two instances on one database running the job at the same moment: one digest."""
    await add_case(bot, CaseStatus.ACTIVE, datetime(2026, 1, 5, 7, 0, tzinfo=UTC))
    other = await ConsoleBot.create(db.url, db.schema, start=TUESDAY_8)
    try:
        bot.clock.advance(TUESDAY_8 - bot.clock.now())
        done = await asyncio.gather(
            post_digest(bot.app.services, TUESDAY_8), post_digest(other.app.services, TUESDAY_8)
        )
        assert sorted(done) == [0, 1]
        assert await digest_rows(bot) == ["digest:2026-01-06"]
    finally:
        await other.stop()


async def test_a_restart_soon_after_eight_still_posts(make_bot):
    """Started at 08:30 with a case open (down at 08:00), the morning's digest still comes."""
    bot = await make_bot(start=TUESDAY_8 + timedelta(minutes=30))
    await add_case(bot, CaseStatus.ESCALATED, datetime(2026, 1, 5, 7, 0, tzinfo=UTC))
    out = await bot.say(":echo started")
    assert len(digests(out)) == 1


async def test_a_start_after_nine_waits_for_tomorrow(bot: ConsoleBot):
    """Started at 09:00 with a case open, no digest until the next morning's 08:00."""
    await add_case(bot, CaseStatus.ESCALATED, datetime(2026, 1, 5, 7, 0, tzinfo=UTC))
    assert digests(await bot.advance("22h59m")) == []
    assert len(digests(await bot.advance("1m"))) == 1


async def test_next_due_is_the_next_eight_network_time(make_bot):
    """`next_due` gives the next 08:00 in the network's zone, in summer time too."""
    winter = await make_bot()
    assert await next_digest(winter.app.services) == TUESDAY_8
    summer = await make_bot(start=datetime(2026, 7, 1, 7, 30, tzinfo=UTC))
    assert await next_digest(summer.app.services) == datetime(2026, 7, 2, 7, 0, tzinfo=UTC)


def test_a_long_digest_fits_one_message():
    """Two hundred open cases: the digest stays within one message and says how many more."""
    since = TUESDAY_8 - timedelta(days=2)
    cases = [(n, CaseStatus.ACTIVE, False, since) for n in range(1, 201)]
    text = digest_text(cases, TUESDAY_8)
    assert len(text) <= MAX_TEXT
    assert "200 support requests are open" in text
    shown = sum(1 for line in text.splitlines() if line.startswith("•"))
    assert 10 < shown < 200
    assert f"…and {200 - shown} more." in text


def test_ages_are_told_in_plain_words():
    """Ages read as minutes, hours, or days and hours, singular where it is one."""
    assert describe_age(timedelta(minutes=1)) == "1 minute"
    assert describe_age(timedelta(minutes=59, seconds=59)) == "59 minutes"
    assert describe_age(timedelta(hours=1, minutes=30)) == "1 hour"
    assert describe_age(timedelta(days=1)) == "1 day"
    assert describe_age(timedelta(days=2, hours=1)) == "2 days 1 hour"
