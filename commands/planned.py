"""Commands whose feature has not landed yet. Each says so plainly; `/support` still gives the
helplines, because someone typing it may need them now. Each is removed when its feature lands.
"""

from __future__ import annotations

from typing import Annotated

from bot.core import REST, Arg, Context, Role
from bot.ui import Message
from commands.common import signposting
from commands.registry import registry

NOT_YET = "{what} isn't available yet — it's on its way."


@registry.command("support")
async def support(
    ctx: Context, text: Annotated[str, Arg(rest=True, metavar="what is happening")] = ""
) -> Message:
    """Ask privately for a volunteer coach."""
    return Message(
        signposting(ctx.settings) + "\n\nConnecting you with a coach here isn't available yet — "
        "please use one of the lines above."
    )


@registry.command("coach", roles={Role.COACH})
async def coach(ctx: Context, text: Annotated[str, REST] = "") -> str:
    """Coaches: go on or off duty, see your cases."""
    return NOT_YET.format(what="Coaching tools")
