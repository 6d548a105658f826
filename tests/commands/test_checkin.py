"""Weekly check-ins, through the console with the injected clock.

The harness starts at Monday 2026-01-05 09:00 UTC (= Europe/London). With the default schedule
(Monday 08:00), a member who opts in then gets their first prompt on Monday 12 January 08:00.
"""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import col, select

from commands.checkin import MAX_NOTE
from storage.checkin import CheckinSubscription, CheckinWeek
from storage.models import OutboxMessage
from tests.harness import ConsoleBot

PROMPT = "it's time for your weekly check-in"
REMINDER = "A gentle reminder"
FIRST_PROMPT = datetime(2026, 1, 12, 8, tzinfo=UTC)


async def opt_in(bot: ConsoleBot, name: str) -> str:
    return await bot.say("/checkin", ":click yes", as_=name)


async def weeks_of(bot: ConsoleBot) -> list[CheckinWeek]:
    async with bot.app.database.session() as session:
        return list(
            (await session.exec(select(CheckinWeek).order_by(col(CheckinWeek.opens_at)))).all()
        )


async def subscription(bot: ConsoleBot, member_id: int = 1) -> CheckinSubscription | None:
    async with bot.app.database.session() as session:
        return await session.get(CheckinSubscription, member_id)


async def count_prompts(bot: ConsoleBot) -> int:
    return bot.transcript.count(PROMPT)


# --- opting in ----------


async def test_first_checkin_asks_consent_in_plain_words(bot: ConsoleBot):
    """The first /checkin explains privacy and asks before anything is stored."""
    out = await bot.say("/checkin", as_="alice")
    assert "only you see them" in out and "fewer than 5 answers" in out
    assert "[1] Yes, check in with me weekly  [2] Not now" in out
    assert await subscription(bot) is None


async def test_not_now_stores_nothing(bot: ConsoleBot):
    """Declining consent leaves no subscription behind."""
    out = await bot.say("/checkin", ":click not now", as_="alice")
    assert "nothing has changed" in out
    assert await subscription(bot) is None


async def test_opting_in_schedules_the_default_day_and_time(bot: ConsoleBot):
    """Consent schedules the network's default: Monday 08:00 Europe/London."""
    out = await opt_in(bot, "alice")
    assert "Mondays at 08:00 (Europe/London)" in out
    sub = await subscription(bot)
    assert sub is not None and sub.next_prompt_at == datetime(2026, 1, 12, 8, tzinfo=UTC)


async def test_opting_in_offers_the_check_in_at_once(bot: ConsoleBot):
    """After consent the five answers are offered straight away."""
    out = await opt_in(bot, "alice")
    assert "[1] 😣 Struggling  [2] 😕 Low  [3] 😐 Okay  [4] 🙂 Good  [5] 😄 Thriving" in out


# --- the weekly prompt ----------


async def test_prompt_arrives_by_dm_exactly_at_the_chosen_time(bot: ConsoleBot):
    """Nothing a minute before Monday 08:00; the prompt DM at 08:00."""
    await opt_in(bot, "alice")
    assert PROMPT not in await bot.advance("6d22h59m")
    out = await bot.advance("1m")
    assert "[DM alice]" in out and PROMPT in out
    assert bot.clock.now() == datetime(2026, 1, 12, 8, tzinfo=UTC)


async def test_prompt_offers_five_answers_skip_and_pause(bot: ConsoleBot):
    """The prompt's buttons are the five answers, *Skip this week* and *Pause*."""
    await opt_in(bot, "alice")
    out = await bot.advance("7d")
    assert (
        "[1] 😣 Struggling  [2] 😕 Low  [3] 😐 Okay  [4] 🙂 Good  [5] 😄 Thriving  "
        "[6] Skip this week  [7] Pause"
    ) in out


async def test_prompts_come_every_week(bot: ConsoleBot):
    """Three weeks bring three prompts."""
    await opt_in(bot, "alice")
    await bot.advance("21d")
    assert await count_prompts(bot) == 3


async def test_spring_clock_change_keeps_the_local_time(make_bot):
    """Across the last Sunday of March, 08:00 London moves from 08:00 to 07:00 UTC."""
    bot = await make_bot(start=datetime(2026, 3, 20, 12, tzinfo=UTC))
    await opt_in(bot, "alice")
    await bot.advance("3d")  # Monday 23 March 08:00 GMT
    before = await count_prompts(bot)
    await bot.advance_to(datetime(2026, 3, 30, 6, 59, tzinfo=UTC))
    assert await count_prompts(bot) == before
    await bot.advance("1m")
    assert await count_prompts(bot) == before + 1


async def test_autumn_clock_change_keeps_the_local_time(make_bot):
    """Across the last Sunday of October, 08:00 London moves from 07:00 to 08:00 UTC."""
    bot = await make_bot(start=datetime(2026, 10, 20, 12, tzinfo=UTC))
    await opt_in(bot, "alice")
    await bot.advance_to(datetime(2026, 10, 26, 7, 59, tzinfo=UTC))
    assert await count_prompts(bot) == 0
    await bot.advance("1m")
    assert await count_prompts(bot) == 1


async def test_member_in_new_york_gets_their_own_local_time(bot: ConsoleBot):
    """A member in America/New_York at 08:00 is prompted at 13:00 UTC in winter (today's still
    lies ahead at 09:00 UTC, so it comes today)."""
    await opt_in(bot, "alice")
    out = await bot.say("/checkin settings monday 08:00 America/New_York")
    assert "Monday 5 January at 08:00" in out
    await bot.advance_to(datetime(2026, 1, 5, 12, 59, tzinfo=UTC))
    assert await count_prompts(bot) == 0
    await bot.advance("1m")
    assert await count_prompts(bot) == 1


async def test_new_york_member_follows_the_us_clock_change(make_bot):
    """After the US change (8 March 2026) 08:00 New York is 12:00 UTC."""
    bot = await make_bot(start=datetime(2026, 3, 3, 12, tzinfo=UTC))
    await opt_in(bot, "alice")
    await bot.say("/checkin settings monday 08:00 America/New_York")
    await bot.advance_to(datetime(2026, 3, 9, 11, 59, tzinfo=UTC))
    assert await count_prompts(bot) == 0
    await bot.advance("1m")
    assert await count_prompts(bot) == 1


async def test_changed_time_applies_this_week_when_still_ahead(bot: ConsoleBot):
    """On Monday, switching to Wednesday 10:00 prompts this Wednesday, not next."""
    await opt_in(bot, "alice")
    out = await bot.say("/checkin settings wednesday 10:00")
    assert "Wednesday 7 January at 10:00" in out
    await bot.advance_to(datetime(2026, 1, 7, 10, tzinfo=UTC))
    assert await count_prompts(bot) == 1


async def test_changed_time_already_past_this_week_starts_next_week(bot: ConsoleBot):
    """On Monday 09:00, switching to Monday 08:00 waits for next Monday."""
    await opt_in(bot, "alice")
    await bot.say("/checkin settings monday 08:00")
    sub = await subscription(bot)
    assert sub is not None and sub.next_prompt_at == datetime(2026, 1, 12, 8, tzinfo=UTC)


# --- answering ----------


async def test_answer_is_thanked_and_stored(bot: ConsoleBot):
    """Tapping an answer thanks the member and stores the score for the week."""
    await opt_in(bot, "alice")
    await bot.advance("7d")
    out = await bot.say(":click good")
    assert "Thank you for checking in — you said 🙂 Good" in out
    assert [w.score for w in await weeks_of(bot)] == [4]


async def test_answer_can_be_changed_until_the_next_prompt(bot: ConsoleBot):
    """A second tap in the same week replaces the answer."""
    await opt_in(bot, "alice")
    await bot.advance("7d")
    await bot.say(":click good")
    await bot.advance("3d")
    await bot.say(":click okay")
    assert [w.score for w in await weeks_of(bot)] == [3]


async def test_old_weeks_button_changes_nothing(bot: ConsoleBot):
    """After the next prompt, last week's buttons say so and change nothing."""
    await opt_in(bot, "alice")
    await bot.advance("7d")
    await bot.say(":click good")
    old_week = (await weeks_of(bot))[0]
    await bot.advance("7d")
    reply = await bot.app.core.press(bot.console.actor(), f"checkin.answer:{old_week.id}:1")
    assert "earlier week" in reply.messages[0].text
    assert (await weeks_of(bot))[0].score == 4


async def test_someone_elses_week_cannot_be_answered(bot: ConsoleBot):
    """A forged button for another member's week is refused without saying whose it is."""
    await opt_in(bot, "alice")
    await bot.advance("7d")
    week = (await weeks_of(bot))[0]
    await opt_in(bot, "mallory")
    reply = await bot.app.core.press(bot.console.actor(), f"checkin.answer:{week.id}:1")
    assert "no longer does anything" in reply.messages[0].text
    assert (await weeks_of(bot))[0].score is None


async def test_checkin_before_the_prompt_counts_for_the_week_it_opens(bot: ConsoleBot):
    """An early /checkin answers the coming week: its prompt says so and no reminder follows."""
    await opt_in(bot, "alice")
    await bot.say(":click okay")
    out = await bot.advance("7d")
    assert "You already checked in for this week: 😐 Okay" in out
    assert REMINDER not in await bot.advance("2d")
    weeks = await weeks_of(bot)
    assert len(weeks) == 1 and weeks[0].opens_at == datetime(2026, 1, 12, 8, tzinfo=UTC)


async def test_checkin_mid_week_shows_this_weeks_answer(bot: ConsoleBot):
    """/checkin after answering shows the answer and lets it be changed."""
    await opt_in(bot, "alice")
    await bot.advance("7d")
    await bot.say(":click thriving")
    out = await bot.say("/checkin")
    assert "You've checked in for this week: 😄 Thriving" in out


async def test_skip_this_week_records_a_skip(bot: ConsoleBot):
    """*Skip this week* marks the week skipped, with no score."""
    await opt_in(bot, "alice")
    await bot.advance("7d")
    out = await bot.say(":click skip")
    assert "this week is skipped" in out
    week = (await weeks_of(bot))[0]
    assert week.skipped and week.score is None


# --- notes ----------


async def test_note_is_saved_encrypted_at_rest(bot: ConsoleBot):
    """A note is stored only as ciphertext that decrypts back to the words."""
    await opt_in(bot, "alice")
    await bot.advance("7d")
    await bot.say(":click good", ":click add a note", "a hard meeting with governors")
    stored = (await weeks_of(bot))[0].note
    assert stored and "governors" not in stored
    assert bot.app.cipher.decrypt(stored) == "a hard meeting with governors"


async def test_note_over_2000_characters_is_refused_and_nothing_saved(bot: ConsoleBot):
    """A note longer than 2,000 characters gets a clear answer and is not stored."""
    await opt_in(bot, "alice")
    await bot.advance("7d")
    out = await bot.say(":click good", ":click add a note", "x" * (MAX_NOTE + 1))
    assert "too long" in out and "Nothing was saved" in out
    assert (await weeks_of(bot))[0].note is None


# --- support offer ----------


async def test_low_answer_offers_support_privately(bot: ConsoleBot):
    """At or below low_score: a gentle DM with the helplines and *Talk to a coach*."""
    await opt_in(bot, "alice")
    await bot.advance("7d")
    out = await bot.say(":click struggling")
    assert "You don't have to carry this" in out and "Samaritans" in out
    assert "[1] Talk to a coach" in out
    assert "[#coordinators]" not in out


async def test_okay_answer_offers_nothing(bot: ConsoleBot):
    """An answer above low_score brings no offer."""
    await opt_in(bot, "alice")
    await bot.advance("7d")
    out = await bot.say(":click okay")
    assert "Talk to a coach" not in out


async def test_two_low_weeks_running_offer_support(make_bot):
    """With low_score 1, a second *Low* week running brings the offer; the first does not."""
    bot = await make_bot(checkin={"low_score": 1})
    await opt_in(bot, "alice")
    await bot.advance("7d")
    assert "Talk to a coach" not in await bot.say(":click 😕 low")
    await bot.advance("7d")
    assert "Talk to a coach" in await bot.say(":click 😕 low")


async def test_offer_comes_once_a_week(bot: ConsoleBot):
    """Changing a low answer to another low answer does not repeat the offer."""
    await opt_in(bot, "alice")
    await bot.advance("7d")
    await bot.say(":click struggling")
    assert "Talk to a coach" not in await bot.say(":click 😕 low")


async def test_talk_to_a_coach_starts_the_support_flow(bot: ConsoleBot):
    """*Talk to a coach* opens support, whose first words are the signposting."""
    await opt_in(bot, "alice")
    await bot.advance("7d")
    await bot.say(":click struggling")
    out = await bot.say(":click talk to a coach")
    assert "999" in out and "not an emergency service" in out


# --- reminders ----------


async def test_one_reminder_after_24_hours_unanswered(bot: ConsoleBot):
    """No answer 24 hours after the prompt: one reminder DM, at 24 hours, never a second."""
    await opt_in(bot, "alice")
    await bot.advance_to(FIRST_PROMPT)
    assert REMINDER not in await bot.advance("23h59m")
    assert REMINDER in await bot.advance("1m")
    assert REMINDER not in await bot.advance("5d")


async def test_no_reminder_when_answered(bot: ConsoleBot):
    """An answered week gets no reminder."""
    await opt_in(bot, "alice")
    await bot.advance("7d")
    await bot.say(":click good")
    assert REMINDER not in await bot.advance("2d")


async def test_no_reminder_when_skipped(bot: ConsoleBot):
    """A skipped week gets no reminder."""
    await opt_in(bot, "alice")
    await bot.advance("7d")
    await bot.say(":click skip")
    assert REMINDER not in await bot.advance("2d")


async def test_no_reminder_after_pausing(bot: ConsoleBot):
    """Pausing after the prompt cancels the week's reminder."""
    await opt_in(bot, "alice")
    await bot.advance("7d")
    await bot.say("/checkin pause 2")
    assert REMINDER not in await bot.advance("2d")


async def test_no_reminder_after_stopping(bot: ConsoleBot):
    """Stopping after the prompt cancels the week's reminder."""
    await opt_in(bot, "alice")
    await bot.advance("7d")
    await bot.say("/checkin stop")
    assert REMINDER not in await bot.advance("2d")


async def test_reminder_after_hours_is_configurable(make_bot):
    """`checkin.reminder_after_hours` sets when the reminder comes."""
    bot = await make_bot(checkin={"reminder_after_hours": 3})
    await opt_in(bot, "alice")
    await bot.advance_to(FIRST_PROMPT)
    assert REMINDER not in await bot.advance("2h59m")
    assert REMINDER in await bot.advance("1m")


# --- pause, resume, stop ----------


async def test_pause_for_weeks_skips_prompts_then_resumes_by_itself(bot: ConsoleBot):
    """`/checkin pause 2`: no prompts for two weeks, then they return."""
    await opt_in(bot, "alice")
    out = await bot.say("/checkin pause 2")
    assert "Paused" in out
    await bot.advance("14d")
    assert await count_prompts(bot) == 0
    await bot.advance("7d")
    assert await count_prompts(bot) == 1


async def test_pause_until_resumed_and_resume(bot: ConsoleBot):
    """`/checkin pause` lasts until `/checkin resume`; prompts return after it."""
    await opt_in(bot, "alice")
    await bot.say("/checkin pause")
    await bot.advance("21d")
    assert await count_prompts(bot) == 0
    out = await bot.say("/checkin resume")
    assert "Welcome back" in out
    await bot.advance("7d")
    assert await count_prompts(bot) == 1


async def test_pause_button_offers_lengths(bot: ConsoleBot):
    """The prompt's *Pause* asks for how long, and pauses for the chosen weeks."""
    await opt_in(bot, "alice")
    await bot.advance("7d")
    out = await bot.say(":click pause")
    assert "[1] 1 week  [2] 2 weeks  [3] 4 weeks  [4] Until I resume" in out
    await bot.say(":click 4 weeks")
    sub = await subscription(bot)
    assert sub is not None and sub.status == "paused"
    assert sub.paused_until == bot.clock.now() + timedelta(weeks=4)


@pytest.mark.parametrize("weeks", ["0", "1000", "-1", "soon"])
async def test_pause_out_of_range_is_refused(bot: ConsoleBot, weeks: str):
    """A pause of 0, 1000, negative or non-numeric weeks is refused and changes nothing."""
    await opt_in(bot, "alice")
    out = await bot.say(f"/checkin pause {weeks}")
    assert "Usage: `/checkin pause [weeks]`" in out
    sub = await subscription(bot)
    assert sub is not None and sub.status == "active"


async def test_stop_ends_prompts_and_checkin_asks_consent_again(bot: ConsoleBot):
    """After `/checkin stop` no prompts come; /checkin asks for consent afresh."""
    await opt_in(bot, "alice")
    await bot.say("/checkin stop")
    await bot.advance("14d")
    assert await count_prompts(bot) == 0
    assert "Yes, check in with me weekly" in await bot.say("/checkin")


# --- settings: bad input ----------


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ("funday 08:00", "I don't know the day 'funday'"),
        ("monday 25:00", "isn't a time I understand"),
        ("monday 8am", "isn't a time I understand"),
        ("monday 08:00 Mars/Olympus", "I don't know the timezone"),
        ("monday", "I need the HH:MM"),
    ],
)
async def test_bad_settings_are_refused_and_change_nothing(bot: ConsoleBot, args, complaint):
    """Unknown day, bad time, unknown timezone, missing time: a clear answer, no change."""
    await opt_in(bot, "alice")
    out = await bot.say(f"/checkin settings {args}")
    assert complaint in out and "Usage: `/checkin settings <day> <HH:MM> [timezone]`" in out
    sub = await subscription(bot)
    assert sub is not None and (sub.weekday, sub.time, sub.timezone) == (
        0,
        "08:00",
        "Europe/London",
    )


async def test_settings_before_opting_in_points_to_checkin(bot: ConsoleBot):
    """Settings without consent say to opt in first and store nothing."""
    out = await bot.say("/checkin settings friday 09:00", as_="alice")
    assert "opt in first" in out
    assert await subscription(bot) is None


# --- history ----------


async def test_history_shows_a_sparkline_and_dated_list(bot: ConsoleBot):
    """History draws one spark per week and lists each week with its answer."""
    await opt_in(bot, "alice")
    for answer in ("struggling", "okay", "thriving"):
        await bot.advance("7d")
        await bot.say(f":click {answer}")
    out = await bot.say("/checkin history")
    assert "▁▃▅" in out
    assert "Week of Mon 12 Jan 2026: 😣 Struggling" in out
    assert "Week of Mon 26 Jan 2026: 😄 Thriving" in out


async def test_history_keeps_only_the_last_12_weeks(bot: ConsoleBot):
    """After 14 weeks the history shows the latest 12."""
    await opt_in(bot, "alice")
    for _ in range(14):
        await bot.advance("7d")
        await bot.say(":click good")
    out = await bot.say("/checkin history")
    assert "Your last 12 weeks" in out and "▄" * 12 in out
    assert "Mon 12 Jan" not in out


async def test_history_marks_skipped_and_unanswered_weeks(bot: ConsoleBot):
    """Skipped and unanswered weeks show as a dot and say so."""
    await opt_in(bot, "alice")
    await bot.advance("7d")
    await bot.say(":click skip")
    await bot.advance("7d")
    out = await bot.say("/checkin history")
    assert "··" in out and "skipped" in out and "no answer" in out


# --- report ----------


async def answer_as(bot: ConsoleBot, names: list[str], answer: str) -> None:
    for name in names:
        await bot.say(f":click {answer}", as_=name)


async def test_report_is_refused_to_members(bot: ConsoleBot):
    """A member asking for the report is told it is for coordinators."""
    out = await bot.say("/checkin report", as_="alice")
    assert "only for coordinators" in out


async def test_report_hides_a_week_with_four_answers(bot: ConsoleBot):
    """Four answers in a week: "fewer than 5 answers", no figures, and no total."""
    names = [f"head{i}" for i in range(4)]
    for name in names:
        await opt_in(bot, name)
    await bot.advance("7d")
    await answer_as(bot, names, "good")
    out = await bot.say("/checkin report 2", as_="coordinator")
    assert "Week of Mon 12 Jan: fewer than 5 answers" in out
    assert "No week yet has 5 or more answers" in out
    assert "🙂 Good 4" not in out


async def test_report_shows_a_week_with_five_answers(bot: ConsoleBot):
    """Five answers: the count and the distribution, without a single name."""
    names = [f"head{i}" for i in range(5)]
    for name in names:
        await opt_in(bot, name)
    await bot.advance("7d")
    await answer_as(bot, names[:3], "good")
    await answer_as(bot, names[3:], "low")
    out = await bot.say("/checkin report 2", as_="coordinator")
    assert "Week of Mon 12 Jan: 5 answers" in out
    assert "😕 Low 2" in out and "🙂 Good 3" in out and "😣 Struggling 0" in out
    assert not any(name in out for name in names)


async def test_report_total_excludes_small_weeks(bot: ConsoleBot):
    """The overall total counts only weeks with 5 or more answers."""
    names = [f"head{i}" for i in range(5)]
    for name in names:
        await opt_in(bot, name)
    await bot.advance("7d")
    await answer_as(bot, names, "good")
    await bot.advance("7d")
    await answer_as(bot, names[:2], "struggling")
    out = await bot.say("/checkin report 3", as_="coordinator")
    assert "Across the weeks shown: 5 answers, average 4.0" in out


@pytest.mark.parametrize("weeks", ["0", "53", "many"])
async def test_report_weeks_out_of_range_is_refused(bot: ConsoleBot, weeks: str):
    """A report of 0, 53 or non-numeric weeks gets the usage line."""
    out = await bot.say(f"/checkin report {weeks}", as_="coordinator")
    assert "Usage: `/checkin report [weeks]`" in out


# --- reliability ----------


async def test_restart_between_prompt_and_reminder_sends_the_reminder_once(bot: ConsoleBot):
    """A restart after the prompt loses nothing: exactly one reminder follows."""
    await opt_in(bot, "alice")
    await bot.advance("7d")
    await bot.restart()
    out = await bot.advance("3d")
    assert out.count(REMINDER) == 1


async def test_restart_before_the_prompt_still_prompts_once(bot: ConsoleBot):
    """A restart before the prompt keeps the schedule: one prompt at the time."""
    await opt_in(bot, "alice")
    await bot.restart()
    out = await bot.advance("7d")
    assert out.count(PROMPT) == 1


async def test_downtime_over_missed_weeks_sends_one_prompt(bot: ConsoleBot):
    """After three weeks without a tick, one prompt (for the current week), not three."""
    await opt_in(bot, "alice")
    bot.clock.advance(timedelta(days=21))
    await bot.app.settle()
    assert await count_prompts(bot) == 1
    assert (await weeks_of(bot))[-1].opens_at == datetime(2026, 1, 26, 8, tzinfo=UTC)


async def test_two_instances_ticking_never_prompt_twice(bot: ConsoleBot, db):
    """Two instances on one database, ticking at once: each member is prompted exactly once."""
    names = [f"head{i}" for i in range(6)]
    for name in names:
        await opt_in(bot, name)
    other = await ConsoleBot.create(db.url, db.schema, start=bot.clock.now())
    try:
        bot.clock.advance(timedelta(days=7))
        other.clock.advance(timedelta(days=7))
        await asyncio.gather(bot.app.ticker.tick(), other.app.ticker.tick())
        async with bot.app.database.session() as session:
            rows = (await session.exec(select(OutboxMessage.recipient))).all()
        assert sorted(rows) == sorted(names)
    finally:
        await other.stop()


async def test_a_tick_run_twice_sends_nothing_more(bot: ConsoleBot):
    """Ticking again at the same moment sends no second prompt."""
    await opt_in(bot, "alice")
    await bot.advance("7d")
    await bot.app.settle()
    await bot.app.settle()
    assert await count_prompts(bot) == 1


async def test_bank_holiday_prompt_is_skipped_when_configured(make_bot):
    """With skip_holidays, Easter Monday brings no prompt; the next Monday does."""
    bot = await make_bot(
        start=datetime(2026, 4, 1, 12, tzinfo=UTC),
        checkin={"skip_holidays": "england-and-wales"},
    )
    await opt_in(bot, "alice")
    await bot.advance_to(datetime(2026, 4, 6, 12, tzinfo=UTC))  # Easter Monday
    assert await count_prompts(bot) == 0
    await bot.advance("7d")
    assert await count_prompts(bot) == 1


async def test_bank_holidays_prompt_when_not_configured(make_bot):
    """Without skip_holidays, Easter Monday's prompt comes as usual."""
    bot = await make_bot(start=datetime(2026, 4, 1, 12, tzinfo=UTC))
    await opt_in(bot, "alice")
    await bot.advance_to(datetime(2026, 4, 6, 12, tzinfo=UTC))
    assert await count_prompts(bot) == 1


async def test_early_answer_on_a_skipped_holiday_week_closes_at_the_next_prompt(make_bot):
    """An early answer for a bank-holiday week can't be changed after the next prompt."""
    bot = await make_bot(
        start=datetime(2026, 4, 1, 12, tzinfo=UTC),
        checkin={"skip_holidays": "england-and-wales"},
    )
    await opt_in(bot, "alice")
    await bot.say(":click okay")  # counts for the week Easter Monday's prompt opens
    early = (await weeks_of(bot))[0]
    await bot.advance_to(datetime(2026, 4, 13, 9, tzinfo=UTC))
    reply = await bot.app.core.press(bot.console.actor(), f"checkin.answer:{early.id}:1")
    assert "earlier week" in reply.messages[0].text
    assert (await weeks_of(bot))[0].score == 3


async def test_consent_after_stopping_shows_the_members_own_timezone(bot: ConsoleBot):
    """Opting back in shows the timezone the member chose, which is the one kept."""
    await opt_in(bot, "alice")
    await bot.say("/checkin settings friday 07:30 America/New_York", "/checkin stop")
    out = await bot.say("/checkin")
    assert "Fridays at 07:30 (America/New_York)" in out
