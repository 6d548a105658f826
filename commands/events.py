"""Video-call events (placeholder until the feature lands)."""

from __future__ import annotations

from typing import Annotated

from bot.core import REST, Context, Role
from commands.planned import NOT_YET
from commands.registry import registry


@registry.command("event", roles={Role.COORDINATOR})
async def event(ctx: Context, text: Annotated[str, REST] = "") -> str:
    """Coordinators: create, edit or cancel an event."""
    return NOT_YET.format(what="Events")


@registry.command("events")
async def events(ctx: Context) -> str:
    """Upcoming events, with RSVP buttons and a calendar file."""
    return NOT_YET.format(what="Events")
