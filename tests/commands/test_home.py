"""The home page (Slack's App Home tab): check-in settings and weeks, upcoming events with my
replies, a coach's open cases — built through the console with the clock at Monday 2026-01-05
09:00 UTC. Console users "coach" and "coach2" are coaches, "coordinator" a coordinator."""

from __future__ import annotations

from sqlmodel import func, select

from bot.core import Actor, Role
from bot.ui import Message
from commands.home import HOME_EVENTS
from storage.models import Member
from tests.harness import ConsoleBot


def actor(name: str) -> Actor:
    roles: set[Role] = set()
    if name.startswith("coach"):
        roles.add(Role.COACH)
    if name == "coordinator":
        roles.add(Role.COORDINATOR)
    return Actor("console", name, name, frozenset(roles))


async def home(bot: ConsoleBot, name: str) -> list[Message]:
    return (await bot.app.core.home(actor(name))).messages


def text_of(page: list[Message]) -> str:
    return "\n".join(m.text for m in page)


def actions_of(page: list[Message]) -> list[str]:
    return [b.action for m in page for b in m.buttons]


async def create_event(bot: ConsoleBot, title: str, start: str = "2026-01-13 19:00") -> None:
    await bot.say(
        f'/event create "{title}" "{start}" 60 https://meet.example.org/heads', as_="coordinator"
    )
    await bot.app.settle()


async def test_a_first_visit_offers_check_ins_and_the_menu(bot: ConsoleBot):
    """Someone new sees the welcome with its three buttons and check-ins offered, not on."""
    page = await home(bot, "alice")
    assert page[0].text.startswith("Welcome to HeadsUp")
    assert actions_of(page[:1]) == ["cmd:checkin", "cmd:support", "cmd:events"]
    assert "Weekly check-ins* are off" in text_of(page)
    assert "cmd:checkin" in [b.action for b in page[1].buttons]


async def test_my_check_in_settings_and_answer_are_shown(bot: ConsoleBot):
    """After opting in and answering, the page shows when it comes and the latest answer."""
    await bot.say("/checkin", ":click yes", ":click good", as_="alice")
    page = await home(bot, "alice")
    text = text_of(page)
    assert "Comes on Mondays at 08:00" in text
    assert "the next is Monday 12 January at 08:00" in text
    assert "latest: 🙂 Good" in text
    assert "checkin.pause_menu" in actions_of(page)


async def test_paused_check_ins_offer_resume(bot: ConsoleBot):
    """Paused check-ins say until when, with a Resume button instead of Pause."""
    await bot.say("/checkin", ":click yes", "/checkin pause 2", as_="alice")
    page = await home(bot, "alice")
    assert "Paused until Monday 19 January" in text_of(page)
    assert "checkin.resume" in actions_of(page)
    assert "checkin.pause_menu" not in actions_of(page)


async def test_my_check_ins_are_mine_alone(bot: ConsoleBot):
    """Another member's answers never appear on my page."""
    await bot.say("/checkin", ":click yes", ":click struggling", as_="alice")
    assert "Struggling" not in text_of(await home(bot, "bob"))


async def test_upcoming_events_show_my_reply_and_rsvp_buttons(bot: ConsoleBot):
    """Each upcoming event is listed with my own reply and its Going/Maybe/Can't go buttons."""
    await create_event(bot, "Heads together")
    await bot.say(":click going", as_="alice")
    page = await home(bot, "alice")
    event = next(m for m in page if "Heads together" in m.text)
    assert "You replied: Going." in event.text
    assert [b.action for b in event.buttons][:3] == [
        "event.rsvp:1:going",
        "event.rsvp:1:maybe",
        "event.rsvp:1:no",
    ]
    assert "Going (1)" in [b.label for b in event.buttons]
    other = next(m for m in await home(bot, "bob") if "Heads together" in m.text)
    assert "You haven't replied." in other.text


async def test_no_events_says_so(bot: ConsoleBot):
    """With nothing planned, the page says so rather than showing an empty list."""
    assert "Nothing is planned just now" in text_of(await home(bot, "alice"))


async def test_only_the_next_few_events_are_listed(bot: ConsoleBot):
    """More events than fit are cut to the next few, with a pointer to /events."""
    for day in range(13, 13 + HOME_EVENTS + 2):
        await create_event(bot, f"Call on the {day}th", f"2026-01-{day} 19:00")
    page = await home(bot, "alice")
    listed = [m for m in page if m.text.startswith("📅")]
    assert len(listed) == HOME_EVENTS
    assert "more with /events" in text_of(page)
    assert "Call on the 13th" in listed[0].text


async def test_members_see_no_coaching_part(bot: ConsoleBot):
    """The coaching part is for coaches only."""
    assert "Coaching" not in text_of(await home(bot, "alice"))


async def test_a_coach_sees_duty_and_open_cases_with_reply(bot: ConsoleBot):
    """A coach with an accepted case sees it by number, anonymous, with a Reply button."""
    await bot.say("/coach on", as_="coach")
    await bot.say("/support a hard week", ":click connect", as_="alice")
    await bot.say(":click accept", as_="coach")
    page = await home(bot, "coach")
    coaching = page[-1]
    assert coaching.text.startswith("*Coaching* — you're on duty")
    assert "H-1001 with Member H-1001" in coaching.text
    assert "alice" not in coaching.text
    assert [b.action for b in coaching.buttons] == ["support.reply:1"]


async def test_a_coach_is_told_of_an_offer_waiting(bot: ConsoleBot):
    """An offer not yet answered is counted, pointing to the DMs."""
    await bot.say("/coach on", as_="coach")
    await bot.say("/support", ":click connect", as_="alice")
    coaching = (await home(bot, "coach"))[-1]
    assert "1 request waiting for your answer" in coaching.text
    assert "no open conversations" in coaching.text


async def test_a_stranger_gets_no_page_and_nothing_is_stored(bot: ConsoleBot):
    """Someone from outside the network's space is kindly turned away, with the emergency line,
    instead of a page — and nothing about them is stored."""
    await create_event(bot, "Heads together")
    stranger = Actor("console", "visitor", "visitor", stranger=True)
    async with bot.app.database.session() as session:
        before = (await session.exec(select(func.count()).select_from(Member))).one()
    page = (await bot.app.core.home(stranger)).messages
    assert "only for members" in text_of(page) and "999" in text_of(page)
    assert actions_of(page) == [] and "Heads together" not in text_of(page)
    async with bot.app.database.session() as session:
        assert (await session.exec(select(func.count()).select_from(Member))).one() == before
