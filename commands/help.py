"""Help, privacy and the direct-message menu: how people find their way around."""

from __future__ import annotations

from bot.core import ROLE_NAMES, CommandSpec, Context, Registry, Role
from bot.errors import Refused, UserError
from bot.ui import Button, Message, Reply, Style
from commands.registry import registry


@registry.command("headsup help")
async def help_(ctx: Context) -> Message:
    """Everything you can do here, in one list."""
    specs = [s for s in registry.commands.values() if not s.hidden]
    mine = sorted((s for s in specs if s.allows(ctx.actor)), key=lambda s: s.path)
    lines = [f"Here's what you can do with {ctx.settings.network.name}:"]
    lines += [f"• `{s.usage}` — {s.help}" for s in mine]
    for role in (Role.COACH, Role.COORDINATOR):
        theirs = sorted({s.name for s in specs if role in s.roles and not s.allows(ctx.actor)})
        if theirs:
            lines.append(f"{ROLE_NAMES[role].capitalize()} also use: {', '.join(theirs)}.")
    lines.append("Or just send me a message for a short menu.")
    return Message("\n".join(lines))


@registry.command("headsup", hidden=True)
async def headsup(ctx: Context) -> Message:
    """Help: what you can do here."""
    return await help_(ctx)


@registry.command("headsup privacy")
async def privacy(ctx: Context) -> Message:
    """What we store about you, and who can see it."""
    s = ctx.settings
    transcripts = (
        "Messages relayed between you and a coach are kept, encrypted, for the same time."
        if s.support.keep_transcripts
        else "Messages relayed between you and a coach are passed on and never stored."
    )
    return Message(
        f"Your privacy with {s.network.name}:\n"
        "• Check-ins: your weekly answer and any note you add. Notes are encrypted, and "
        f"deleted after {s.privacy.note_retention_days} days. Only you see your answers; "
        "coordinators see only anonymous totals, and never for a week with fewer than 5 answers.\n"
        "• Support: what you write when asking for support is encrypted and seen only by the "
        "coach who takes your case (and coordinators if it has to be escalated). Your name is "
        "shared only if you choose. "
        f"{transcripts} A closed case's words are deleted after "
        f"{s.privacy.case_text_retention_days} days; a record of its steps (never the words) "
        "is kept.\n"
        "• Events: which events you said you'd go to.\n"
        "• Your platform name and id, so messages reach you.\n"
        "`/headsup export` gives you a file of everything stored about you. "
        "`/headsup forget-me` deletes all of it, after you confirm: an open support conversation "
        "is closed, and only a record that the case happened stays, with nothing that names you."
    )


MENU = Message(
    "Hello — how can I help?",
    (
        Button("Check in", "cmd:checkin", Style.PRIMARY),
        Button("Talk to a coach", "cmd:support"),
        Button("Upcoming events", "cmd:events"),
    ),
)


@registry.direct_message(order=100)
async def menu(ctx: Context, text: str) -> Message:
    """Any DM that no feature claimed gets the short menu."""
    return MENU


@registry.action("cmd")
async def run_command(ctx: Context, group: str) -> Reply | Message | str | None:
    """A menu button that runs a bare command, as if it were typed."""
    try:
        spec, _ = registry.resolve(group, [])
    except UserError:
        return "That isn't available any more — try /headsup help."
    if not spec.allows(ctx.actor) or (spec.params and spec.params[0].required):
        raise Refused("That button isn't for you — try /headsup help.")
    reply = Reply.of(await spec.handler(ctx))
    if spec.preface is not None:
        reply.messages.insert(0, Message(spec.preface(ctx.settings)))
    return reply


def command_run_by(commands: Registry, action_id: str) -> CommandSpec | None:
    """The command a menu button runs as if typed (``cmd:support`` runs /support), or None.

    Platforms ask, to answer such a press with the command's preface at once, as the command."""
    name, _, group = action_id.partition(":")
    if name != "cmd" or not group:
        return None
    try:
        spec, _ = commands.resolve(group, [])
    except UserError:
        return None
    return spec
