"""Help, privacy and the DM menu."""

from tests.harness import ConsoleBot


async def test_help_lists_every_command_group(bot: ConsoleBot):
    """`/headsup help` names checkin, support, coach, event, events and headsup."""
    out = await bot.say("/headsup help")
    for name in ("/checkin", "/support", "/coach", "/event", "/events", "/headsup"):
        assert name in out


async def test_help_shows_role_commands_as_others_for_a_member(bot: ConsoleBot):
    """A member sees coordinator commands named as theirs, not offered as their own."""
    out = await bot.say("/headsup help", as_="you")
    others = "Coordinators also use: /checkin report, /event cancel, /event create, /event edit."
    assert others in out
    assert "• `/event create" not in out


async def test_help_offers_coordinator_commands_to_a_coordinator(bot: ConsoleBot):
    """A coordinator's help lists /event among their own commands."""
    out = await bot.say("/headsup help", as_="coordinator")
    assert "• `/event create [" in out and "• `/event edit <id>`" in out


async def test_help_is_private(bot: ConsoleBot):
    """Help comes back as an ephemeral reply to the asker only."""
    out = await bot.say("/headsup help", as_="alice")
    assert out.startswith("[ephemeral alice]")


async def test_privacy_names_retention_from_config(make_bot):
    """`/headsup privacy` states the configured retention periods."""
    bot = await make_bot(privacy={"note_retention_days": 30, "case_text_retention_days": 14})
    out = await bot.say("/headsup privacy")
    assert "after 30 days" in out and "after 14 days" in out


async def test_direct_message_gets_the_menu(bot: ConsoleBot):
    """A plain DM gets a menu: check in, talk to a coach, upcoming events."""
    out = await bot.say("hello there", as_="alice")
    assert "[DM alice]" in out
    assert "[1] Check in  [2] Talk to a coach  [3] Upcoming events" in out


async def test_menu_talk_to_a_coach_signposts_helplines(bot: ConsoleBot):
    """The menu's *Talk to a coach* runs /support, which gives the helplines at once."""
    await bot.say("hi", as_="alice")
    out = await bot.say(":click coach")
    assert "Samaritans" in out and "999" in out


async def test_unknown_command_gets_a_kind_answer(bot: ConsoleBot):
    """An unknown command says so and points to help."""
    out = await bot.say("/frobnicate now")
    assert "I don't know /frobnicate" in out and "/headsup help" in out


async def test_unknown_subcommand_lists_the_right_ones(bot: ConsoleBot):
    """An unknown subcommand lists what the command can be followed by."""
    out = await bot.say("/headsup helpme")
    assert "I don't know /headsup helpme" in out and "privacy" in out


async def test_member_refused_coordinator_command(bot: ConsoleBot):
    """A member using /event is told it is for coordinators, and nothing else."""
    out = await bot.say("/event create", as_="alice")
    assert "only for coordinators" in out
