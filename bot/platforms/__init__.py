"""Platform adapters: each translates its platform's events into calls on the core and renders
the core's neutral messages. They never decide anything.

Every adapter has the same shape (after opsdroid's connectors): ``start`` connects, ``run``
listens until the platform is done, ``send``/``edit`` deliver what the outbox worker hands over,
``stop`` disconnects.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from bot.ui import CalendarEntry, Channel, Message

if TYPE_CHECKING:
    from bot.core import Core


@dataclass(frozen=True)
class Target:
    """Where an outbox row goes on its platform: a user's DM or a named shared channel."""

    kind: str  # "dm" | "channel"
    recipient: str  # platform user id, or a Channel value
    dm_channel_id: str | None = None  # known DM channel, saves a lookup
    # The outbox row id: a platform that deduplicates on a key (Discord's nonce) makes a resend
    # after a crash harmless. Not part of where the message goes, so not compared.
    nonce: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SentRef:
    """The platform's own address of a message we sent."""

    channel_id: str
    message_id: str


class DeliveryError(Exception):
    """Sending failed. ``permanent`` failures are recorded and never retried (DMs closed);
    others are retried with backoff, after ``retry_after`` seconds when the platform said so."""

    def __init__(
        self, code: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(code)
        self.code = code
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass(frozen=True)
class Pace:
    """A platform's sending limits, which the delivery worker keeps under."""

    per_second: float | None = None  # every request to the platform
    per_channel_per_second: float | None = None  # posts to any one channel or DM
    # Recipients sent to at once; each recipient's messages still go one after another.
    concurrency: int = 1


class Platform(ABC):
    """One chat platform, connected for the life of the process."""

    name: ClassVar[str]
    pace: ClassVar[Pace] = Pace()

    @abstractmethod
    async def start(self, core: Core) -> None:
        """Connect and get ready to receive; return once ready."""

    @abstractmethod
    async def run(self) -> None:
        """Listen until the platform is done (the console at end of input; others never)."""

    @abstractmethod
    async def stop(self) -> None:
        """Disconnect."""

    @abstractmethod
    async def send(self, target: Target, message: Message) -> SentRef:
        """Deliver a message; raise DeliveryError when it could not be."""

    @abstractmethod
    async def edit(self, ref: SentRef, message: Message) -> None:
        """Replace a message sent earlier, whole."""

    async def publish_calendar(self, entry: CalendarEntry, ref: SentRef | None) -> SentRef:
        """Create (``ref`` None) or update the platform's own calendar entry for an event.

        Only platforms named by the app's ``calendar_platforms`` are ever asked."""
        raise DeliveryError("calendar_unsupported", permanent=True)

    def has_channel(self, channel: Channel) -> bool:
        """Whether this platform has a place configured for the shared channel."""
        return True

    @property
    def connected(self) -> bool:
        """Whether the platform is connected right now (``/healthz``); an adapter that can lose
        its connection says so here."""
        return True
