"""A platform that records what the delivery worker hands it, and fails on demand."""

from __future__ import annotations

import asyncio

from bot.platforms import Platform, SentRef, Target
from bot.ui import CalendarEntry, Message


class FakePlatform(Platform):
    """Records what it is asked to deliver; fails on demand, in the order failures were queued."""

    name = "fake"

    def __init__(self, *, yield_in_send: bool = False) -> None:
        self.sent: list[tuple[Target, Message]] = []
        self.edits: list[tuple[SentRef, Message]] = []
        self.calendar: list[tuple[SentRef | None, CalendarEntry]] = []  # native calendar calls
        self.attempts = 0  # every call to send or edit, including those that failed
        self.failures: list[BaseException] = []
        self.yield_in_send = yield_in_send
        self._ids = 0

    def fail_next(self, *errors: BaseException) -> None:
        self.failures.extend(errors)

    async def start(self, core) -> None:
        pass

    async def run(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, target: Target, message: Message) -> SentRef:
        if self.yield_in_send:
            await asyncio.sleep(0)  # let another worker run mid-send
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self._ids += 1
        self.sent.append((target, message))
        if target.kind == "dm":
            channel = target.dm_channel_id or f"{self.name}-dm-{target.recipient}"
        else:
            channel = f"{self.name}-channel-{target.recipient}"
        return SentRef(channel, f"{self.name}-msg-{self._ids}")

    async def edit(self, ref: SentRef, message: Message) -> None:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self.edits.append((ref, message))

    async def publish_calendar(self, entry: CalendarEntry, ref: SentRef | None) -> SentRef:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self.calendar.append((ref, entry))
        self._ids += 1
        return ref or SentRef("", f"{self.name}-event-{self._ids}")

    @property
    def texts(self) -> list[str]:
        return [m.text for _, m in self.sent]
