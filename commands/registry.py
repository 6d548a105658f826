"""The one registry every feature module registers its commands, actions and due jobs on."""

from bot.core import Registry

registry = Registry()
