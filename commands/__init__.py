"""The use cases, one module per job. They speak only neutral types (``bot.core``, ``bot.ui``)
and never import a platform library."""

from bot.core import Registry


def load() -> Registry:
    """Import every feature module (registering its handlers) and return the registry."""
    from commands import checkin, coach, digest, events, help, home, privacy, support  # noqa: F401
    from commands.registry import registry

    return registry
