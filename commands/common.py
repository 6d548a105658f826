"""Words several features share: the signposting to helplines."""

from __future__ import annotations

from bot.config import Settings


def helplines(settings: Settings) -> str:
    """The emergency line and every configured helpline, one per line."""
    lines = [settings.support.emergency]
    lines += [f"• {h.name}: {h.contact}" for h in settings.support.helplines]
    return "\n".join(lines)


def signposting(settings: Settings) -> str:
    """The first thing anyone asking for support sees."""
    return (
        "Thank you for reaching out — asking for support takes courage.\n"
        f"{helplines(settings)}\n"
        f"{settings.network.name} is a peer-support network, not an emergency service."
    )
