"""Delivery: the outbox (written in the caller's transaction) and the worker that empties it.

Every message for someone other than the person asking goes through here. A row is claimed with a
lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), sent, and marked sent with the platform's message
id, so a crash resends only what was never confirmed, and two workers never send the same row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from aiolimiter import AsyncLimiter
from sqlalchemy import or_, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.platforms import DeliveryError, Pace, Platform, SentRef, Target
from bot.ui import CalendarEntry, Channel, Destination, Message, Priority, ToChannel, ToMember
from storage.crypto import Cipher
from storage.db import Database
from storage.members import identity_of
from storage.models import Identity, OutboxMessage, OutboxStatus

log = structlog.get_logger("headsup.delivery")

# A claimed row is this worker's for the lease, renewed while its batch is still going, so a
# worker killed mid-batch holds its rows up for at most a minute.
LEASE = timedelta(seconds=60)
BACKOFF_FIRST = timedelta(seconds=2)
BACKOFF_CAP = timedelta(minutes=10)
URGENT_BACKOFF_CAP = timedelta(seconds=30)  # a crisis offer never waits long between tries
# A platform that is down (5xx, network, rate limited) rests as a whole rather than being asked
# again for every waiting row: during an outage it sees a handful of requests, not thousands.
PLATFORM_REST_CAP = timedelta(seconds=60)
PLATFORM_WIDE = ("http_5", "network:", "429", "not_connected", "timeout")
SEND_TIMEOUT = 90.0  # seconds: longer than any wait a platform library makes by itself
STOP_GRACE = 5.0  # seconds the loops have to finish what they hold when the worker stops
MAX_CHANNEL_PACERS = 10_000
PACE_BURST = 2  # requests that may go at once: a first DM costs two
GIVE_UP_AFTER = 60  # attempts: about nine hours at the cap
BATCH = 50
SENT_RETRY_PAUSES = (0.1, 0.5, 2.0)  # seconds between tries at recording a delivery


@dataclass
class _DmState:
    """A recipient's DM channel as last recorded, and whether a delivery to them failed."""

    channel_id: str | None
    failed: bool


@dataclass
class _Batch:
    """One claimed batch while it is being sent."""

    rows: list[OutboxMessage]
    dms: dict[str, _DmState]  # recipient → DM state, kept up to date as the batch goes
    renew_at: datetime  # when the claim on the unsent rows is next renewed
    pending: set[int | None] = field(init=False)  # rows not yet sent, released or failed

    def __post_init__(self) -> None:
        self.pending = {row.id for row in self.rows}


class Outbox:
    """Writes outbox rows in the caller's session: they commit, or vanish, with the change."""

    def __init__(
        self,
        cipher: Cipher,
        channel_platforms: Callable[[Channel], list[str]],
        calendar_platforms: Callable[[], list[str]] = list,
    ) -> None:
        self._cipher = cipher
        self._channel_platforms = channel_platforms
        self._calendar_platforms = calendar_platforms

    async def send(
        self,
        session: AsyncSession,
        now: datetime,
        to: Destination,
        message: Message,
        *,
        priority: Priority = Priority.NORMAL,
        key: str | None = None,
    ) -> list[OutboxMessage]:
        """Queue `message` for `to`; a channel post gets one row per platform that has it."""
        payload = self._seal(message)
        rows: list[OutboxMessage] = []
        if isinstance(to, ToMember):
            identity = await identity_of(session, to.member_id)
            if identity is None:
                log.warning("outbox.no_identity", member_id=to.member_id)
                return []
            rows.append(
                self._row(now, identity.platform, "dm", identity.user_id, payload, priority, key)
            )
            rows[0].member_id = to.member_id
        elif isinstance(to, ToChannel):
            for platform in self._channel_platforms(to.channel):
                rows.append(
                    self._row(now, platform, "channel", to.channel.value, payload, priority, key)
                )
        session.add_all(rows)
        await session.flush()
        return rows

    async def edit(
        self,
        session: AsyncSession,
        now: datetime,
        key: str,
        message: Message | CalendarEntry,
        *,
        priority: Priority = Priority.NORMAL,
    ) -> list[OutboxMessage]:
        """Queue an edit of every message sent (or still to be sent) under `key`.

        An older edit still waiting for the same message is superseded: only the newest state
        needs to reach the platform (live RSVP counts change often).
        """
        originals = (
            await session.exec(
                select(OutboxMessage).where(
                    OutboxMessage.message_key == key,
                    col(OutboxMessage.status).in_([OutboxStatus.PENDING, OutboxStatus.SENT]),
                )
            )
        ).all()
        await session.exec(
            update(OutboxMessage)
            .where(
                col(OutboxMessage.edit_of) == key,
                col(OutboxMessage.status) == OutboxStatus.PENDING,
            )
            .values(status=OutboxStatus.SUPERSEDED, payload="")
        )
        payload = self._seal(message)
        rows = [
            self._row(now, o.platform, o.kind, o.recipient, payload, priority, None, edit_of=key)
            for o in originals
        ]
        for row, original in zip(rows, originals, strict=True):
            row.member_id = original.member_id
        session.add_all(rows)
        await session.flush()
        return rows

    async def calendar(
        self, session: AsyncSession, now: datetime, key: str, entry: CalendarEntry
    ) -> list[OutboxMessage]:
        """Create, or bring up to date, the native calendar entry `key` on every platform that
        keeps one. The first call for a key creates it; later calls edit what it created."""
        platforms = self._calendar_platforms()
        if not platforms:
            return []
        exists = (
            await session.exec(
                select(func.count())
                .select_from(OutboxMessage)
                .where(
                    OutboxMessage.message_key == key,
                    col(OutboxMessage.status).in_([OutboxStatus.PENDING, OutboxStatus.SENT]),
                )
            )
        ).one()
        if exists:
            return await self.edit(session, now, key, entry)
        payload = self._seal(entry)
        rows = [
            self._row(now, p, "calendar", "events", payload, Priority.NORMAL, key)
            for p in platforms
        ]
        session.add_all(rows)
        await session.flush()
        return rows

    def _seal(self, message: Message | CalendarEntry) -> str:
        return self._cipher.encrypt(json.dumps(message.to_json()))

    def open(self, payload: str) -> Message:
        return Message.from_json(json.loads(self._cipher.decrypt(payload)))

    def open_entry(self, payload: str) -> CalendarEntry:
        return CalendarEntry.from_json(json.loads(self._cipher.decrypt(payload)))

    @staticmethod
    def _row(now, platform, kind, recipient, payload, priority, key, edit_of=None):
        return OutboxMessage(
            created_at=now,
            priority=int(priority),
            platform=platform,
            kind=kind,
            recipient=recipient,
            payload=payload,
            message_key=key,
            edit_of=edit_of,
            next_attempt_at=now,
        )


class Pacer:
    """Keeps one platform's requests under its limits: a leaky bucket for the whole platform and
    one per channel (aiolimiter), waited on before each request rather than learning from 429s."""

    def __init__(self, pace: Pace) -> None:
        self.pace = pace
        # A small bucket: after a pause only a couple of requests go at once, not a whole
        # second's allowance, so no one-second window ever holds more than the limit plus two.
        burst = PACE_BURST if pace.per_second and pace.per_second >= PACE_BURST else 1
        self._whole = AsyncLimiter(burst, burst / pace.per_second) if pace.per_second else None
        self._channels: dict[str, AsyncLimiter] = {}

    async def wait(self, channel: str, cost: int = 1) -> None:
        if self._whole is not None:
            await self._whole.acquire(min(cost, self._whole.max_rate))
        if self.pace.per_channel_per_second:
            limiter = self._channels.get(channel)
            if limiter is None:
                if len(self._channels) >= MAX_CHANNEL_PACERS:
                    self._channels.clear()  # idle buckets are full again anyway after a second
                limiter = AsyncLimiter(1, 1 / self.pace.per_channel_per_second)
                self._channels[channel] = limiter
            await limiter.acquire()


class DeliveryWorker:
    """Sends due outbox rows through their platforms, in priority order, retrying with backoff.

    Each platform has a loop of its own, so one that is slow or down (discord.py retries a 5xx
    for 25 seconds inside a single call) never holds up another's messages. Within a platform,
    up to ``Pace.concurrency`` recipients are sent to at once, each recipient's messages in
    order, so the sending keeps up with the platform's limit rather than with one round trip
    at a time.
    """

    def __init__(
        self,
        database: Database,
        outbox: Outbox,
        clock: Clock,
        platforms: dict[str, Platform],
        *,
        poll_seconds: float = 1.0,
        on_sent: Callable[[str], None] = lambda _platform: None,
    ) -> None:
        self.database = database
        self.outbox = outbox
        self.clock = clock
        self.platforms = platforms
        self.owner = uuid.uuid4().hex[:12]
        self.poll_seconds = poll_seconds
        self.on_sent = on_sent  # counts deliveries for /metrics
        self._wakes = {name: asyncio.Event() for name in platforms}
        self._drain_locks = {name: asyncio.Lock() for name in platforms}
        self._resting: dict[str, datetime] = {}  # platform → when to ask it again
        self._streak: dict[str, int] = {}  # platform → failures in a row
        self._pacers = {name: Pacer(p.pace) for name, p in platforms.items()}
        self._stopping = False

    def wake(self) -> None:
        """Something was committed: look now rather than at the next poll."""
        for event in self._wakes.values():
            event.set()

    async def run(self) -> None:
        """Send forever: a loop per platform, each woken by a commit and polling every
        `poll_seconds` for retries and other writers.

        Cancelled (the app stopping), the loops are asked to stop and given `STOP_GRACE` to
        finish what they have in hand: cancelling one in the middle of a database call can
        leave its connection unusable, and the rows it holds claimed for a lease.
        """
        self._stopping = False
        loops = [
            asyncio.create_task(self._run_platform(name), name=f"delivery:{name}")
            for name in self.platforms
        ]
        try:
            # asyncio.wait, not gather: a cancel of this task must not reach the loops at once.
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_EXCEPTION)
            for loop in done:
                loop.result()  # a loop only ends by raising
        finally:
            self._stopping = True
            self.wake()
            _, unfinished = await asyncio.wait(loops, timeout=STOP_GRACE)
            for loop in unfinished:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _run_platform(self, name: str) -> None:
        wake = self._wakes[name]
        while not self._stopping:
            try:
                await self.drain(name)
            except Exception as exc:  # the database may be down; keep the loop alive
                log.error("delivery.drain_failed", platform=name, error=type(exc).__name__)
            if self._stopping:
                return
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel that
            # lands as the wait ends, and the worker would then outlive App.stop().
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await wake.wait()
            wake.clear()

    async def drain(self, platform: str | None = None) -> int:
        """Send every row due now (for one platform, or all of them at once); return how many
        were sent."""
        if platform is None:
            return sum(await asyncio.gather(*(self.drain(name) for name in self.platforms)))
        sent = 0
        handed_back: set[int] = set()  # rows whose outcome could not be recorded this time
        async with self._drain_locks[platform]:
            while not self._stopping:
                rows = await self._claim(platform, skip=handed_back)
                if not rows:
                    return sent
                sent += await self._send_batch(platform, rows, handed_back)
        return sent

    async def _send_batch(
        self, platform: str, rows: list[OutboxMessage], handed_back: set[int]
    ) -> int:
        """Send a claimed batch: recipients side by side (up to the platform's concurrency),
        each recipient's rows one after another, in priority order."""
        batch = _Batch(rows, await self._dm_states(platform, rows), self.clock.now() + LEASE / 2)
        concurrency = max(1, self.platforms[platform].pace.concurrency)
        if concurrency == 1:
            lanes = [rows]
        else:
            by_recipient: dict[str, list[OutboxMessage]] = {}
            for row in rows:  # in priority order, so the most urgent lanes start first
                by_recipient.setdefault(row.recipient, []).append(row)
            lanes = list(by_recipient.values())
        slots = asyncio.Semaphore(concurrency)

        async def send_lane(lane: list[OutboxMessage]) -> int:
            sent = 0
            async with slots:
                for row in lane:
                    if self._stopping or self._is_resting(row.platform):
                        # Due again at once: for another instance, or once the platform is back.
                        await self._release(row)
                    else:
                        await self._keep_claim(batch)
                        try:
                            sent += await self._deliver(row, batch)
                        except Exception as exc:
                            # Recording the outcome failed (the database went away mid-batch).
                            # Hand the row back now rather than strand it for a lease; it is
                            # tried again at the next drain, not straight away in this one.
                            log.error(
                                "delivery.row_failed", outbox_id=row.id, error=type(exc).__name__
                            )
                            await self._release(row)
                            if row.id is not None:
                                handed_back.add(row.id)
                    batch.pending.discard(row.id)
            return sent

        return sum(await asyncio.gather(*(send_lane(lane) for lane in lanes)))

    async def _keep_claim(self, batch: _Batch) -> None:
        """Renew the claim on the batch's unsent rows once half the lease has gone by."""
        if self.clock.now() < batch.renew_at:
            return
        batch.renew_at = self.clock.now() + LEASE / 2
        await self._renew([row for row in batch.rows if row.id in batch.pending])

    async def next_due(self) -> datetime | None:
        """When the earliest waiting row falls due (for the console's `:advance`)."""
        async with self.database.session() as session:
            return (
                await session.exec(
                    select(func.min(OutboxMessage.next_attempt_at)).where(
                        OutboxMessage.status == OutboxStatus.PENDING,
                        col(OutboxMessage.platform).in_(list(self.platforms)),
                    )
                )
            ).first()

    def _is_resting(self, platform: str) -> bool:
        until = self._resting.get(platform)
        return until is not None and self.clock.now() < until

    def _rest(self, platform: str, at_least: timedelta | None) -> None:
        """The platform failed as a whole: leave it alone for a while, longer each time."""
        streak = self._streak.get(platform, 0)
        self._streak[platform] = streak + 1
        pause = min(PLATFORM_REST_CAP, BACKOFF_FIRST * (2**streak))
        if at_least is not None:
            pause = max(pause, at_least)
        self._resting[platform] = self.clock.now() + pause
        log.warning("delivery.platform_resting", platform=platform, for_s=pause.seconds)

    async def _claim(self, platform: str, skip: set[int] | None = None) -> list[OutboxMessage]:
        now = self.clock.now()
        if self._is_resting(platform):
            return []
        async with self.database.session() as session:
            due = (
                select(OutboxMessage.id)
                .where(
                    OutboxMessage.status == OutboxStatus.PENDING,
                    OutboxMessage.platform == platform,
                    col(OutboxMessage.id).not_in(skip or ()),
                    OutboxMessage.next_attempt_at <= now,
                    or_(
                        col(OutboxMessage.claimed_until).is_(None),
                        col(OutboxMessage.claimed_until) < now,
                    ),
                )
                .order_by(col(OutboxMessage.priority), col(OutboxMessage.id))
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
            claimed = await session.exec(
                update(OutboxMessage)
                .where(col(OutboxMessage.id).in_(due))
                .values(claimed_by=self.owner, claimed_until=now + LEASE)
                .returning(OutboxMessage)
            )
            rows = list(claimed.scalars())
            await session.commit()
        rows.sort(key=lambda r: (r.priority, r.id))
        return rows

    async def _renew(self, rows: list[OutboxMessage]) -> None:
        """Keep this batch's remaining rows claimed while it is still being sent."""
        async with self.database.session() as session:
            await session.exec(
                update(OutboxMessage)
                .where(
                    col(OutboxMessage.id).in_([r.id for r in rows]),
                    col(OutboxMessage.claimed_by) == self.owner,
                )
                .values(claimed_until=self.clock.now() + LEASE)
            )
            await session.commit()

    async def _deliver(self, row: OutboxMessage, batch: _Batch) -> int:
        platform = self.platforms[row.platform]
        pacer = self._pacers[row.platform]
        try:
            # A call that hangs is abandoned (and retried), well after any wait a platform
            # library does by itself (discord.py's 5xx retries, a short 429).
            async with asyncio.timeout(SEND_TIMEOUT):
                if row.kind == "calendar":
                    await pacer.wait(row.recipient)
                    ref = await self._publish_calendar(platform, row)
                elif row.edit_of is not None:
                    message = self.outbox.open(row.payload)
                    ref = await self._original_ref(row)
                    if ref is not None:
                        await pacer.wait(ref.channel_id)
                        await platform.edit(ref, message)
                else:
                    message = self.outbox.open(row.payload)
                    target = self._target(row, batch)
                    # A first DM costs two requests: opening the channel, then the message.
                    first_dm = target.kind == "dm" and not target.dm_channel_id
                    channel = target.dm_channel_id or target.recipient
                    await pacer.wait(channel, 2 if first_dm else 1)
                    ref = await platform.send(target, message)
        except TimeoutError:
            await self._failed(row, DeliveryError("timeout"))
            return 0
        except DeliveryError as exc:
            await self._failed(row, exc)
            return 0
        except Exception as exc:
            log.exception("delivery.error", outbox_id=row.id, error=type(exc).__name__)
            await self._failed(row, DeliveryError(type(exc).__name__))
            return 0
        if ref is None:  # an edit or update waiting for its original, or without one
            return 0
        self._streak.pop(row.platform, None)
        await self._sent(row, ref, batch)
        return 1

    async def _publish_calendar(self, platform: Platform, row: OutboxMessage) -> SentRef | None:
        entry = self.outbox.open_entry(row.payload)
        if row.edit_of is None:
            return await platform.publish_calendar(entry, None)
        ref = await self._original_ref(row)
        if ref is None:
            return None
        await platform.publish_calendar(entry, ref)
        return ref

    async def _dm_states(self, platform: str, rows: list[OutboxMessage]) -> dict[str, _DmState]:
        """The DM channel on record (and any failure mark) of every recipient of a batch's DMs,
        in one query: a weekly fan-out costs one request per member, not one query more."""
        users = {row.recipient for row in rows if row.kind == "dm"}
        if not users:
            return {}
        async with self.database.session() as session:
            found = (
                await session.exec(
                    select(Identity.user_id, Identity.dm_channel_id, Identity.dm_failed_at).where(
                        Identity.platform == platform, col(Identity.user_id).in_(users)
                    )
                )
            ).all()
        return {user: _DmState(channel, failed is not None) for user, channel, failed in found}

    @staticmethod
    def _target(row: OutboxMessage, batch: _Batch) -> Target:
        if row.kind != "dm":
            return Target("channel", row.recipient, nonce=str(row.id))
        state = batch.dms.get(row.recipient)
        dm_channel = state.channel_id if state else None
        return Target("dm", row.recipient, dm_channel, nonce=str(row.id))

    async def _original_ref(self, row: OutboxMessage) -> SentRef | None:
        """Where the message to edit lives; defer while it is unsent, drop if it never will be."""
        async with self.database.session() as session:
            original = (
                await session.exec(
                    select(OutboxMessage)
                    .where(
                        OutboxMessage.message_key == row.edit_of,
                        OutboxMessage.platform == row.platform,
                        OutboxMessage.recipient == row.recipient,
                        col(OutboxMessage.edit_of).is_(None),
                    )
                    .order_by(col(OutboxMessage.id).desc())
                )
            ).first()
            if original is not None and original.status == OutboxStatus.PENDING:
                # Wait for the original: try again when it is next due, not every second.
                wait = max(timedelta(seconds=1), original.next_attempt_at - self.clock.now())
                await self._retry_later(session, row, wait, "original_unsent")
                return None
            if original is None or original.platform_message_id is None:
                await self._finish(session, row, OutboxStatus.FAILED, "original_missing")
                return None
        return SentRef(original.channel_id or "", original.platform_message_id)

    async def _release(self, row: OutboxMessage) -> None:
        """Give up this worker's claim on a row, so it is due again at once."""
        try:
            async with self.database.session() as session:
                await session.exec(
                    update(OutboxMessage)
                    .where(
                        col(OutboxMessage.id) == row.id,
                        col(OutboxMessage.claimed_by) == self.owner,
                        col(OutboxMessage.status) == OutboxStatus.PENDING,
                    )
                    .values(claimed_until=None)
                )
                await session.commit()
        except Exception as exc:  # still unreachable: the lease runs out by itself
            log.warning("delivery.release_failed", outbox_id=row.id, error=type(exc).__name__)

    async def _sent(self, row: OutboxMessage, ref: SentRef, batch: _Batch) -> None:
        """Record a delivery. The platform has the message, so a passing database error (a
        busy SQLite file, a PostgreSQL failover) is retried: an unrecorded send goes out twice."""
        # The member's identity changes only when the DM channel is new or a failure is cleared.
        state = batch.dms.get(row.recipient) if row.kind == "dm" else None
        update_identity = row.kind == "dm" and (
            state is None or state.failed or state.channel_id != ref.channel_id
        )
        for pause in SENT_RETRY_PAUSES:
            try:
                await self._record_sent(row, ref, update_identity)
                break
            except (DBAPIError, OSError) as exc:
                log.warning("delivery.record_retry", outbox_id=row.id, error=type(exc).__name__)
                await asyncio.sleep(pause)
        else:
            await self._record_sent(row, ref, update_identity)
        if row.kind == "dm":
            batch.dms[row.recipient] = _DmState(ref.channel_id, False)

    async def _record_sent(self, row: OutboxMessage, ref: SentRef, update_identity: bool) -> None:
        now = self.clock.now()
        async with self.database.session() as session:
            await session.exec(
                update(OutboxMessage)
                .where(col(OutboxMessage.id) == row.id)
                .values(
                    status=OutboxStatus.SENT,
                    sent_at=now,
                    attempts=row.attempts + 1,
                    channel_id=ref.channel_id,
                    platform_message_id=ref.message_id,
                    payload="",
                    claimed_until=None,
                    last_error=None,
                )
            )
            if update_identity:
                await session.exec(
                    update(Identity)
                    .where(Identity.platform == row.platform, Identity.user_id == row.recipient)
                    .values(dm_channel_id=ref.channel_id, dm_failed_at=None)
                )
            await session.commit()
        log.info("delivery.sent", outbox_id=row.id, platform=row.platform, kind=row.kind)
        self.on_sent(row.platform)

    async def _failed(self, row: OutboxMessage, exc: DeliveryError) -> None:
        async with self.database.session() as session:
            if exc.permanent or row.attempts + 1 >= GIVE_UP_AFTER:
                if row.kind == "dm":
                    await session.exec(
                        update(Identity)
                        .where(Identity.platform == row.platform, Identity.user_id == row.recipient)
                        .values(dm_failed_at=self.clock.now())
                    )
                await self._finish(session, row, OutboxStatus.FAILED, exc.code)
                log.error("delivery.failed", outbox_id=row.id, code=exc.code)
                return
            retry_after = None if exc.retry_after is None else timedelta(seconds=exc.retry_after)
            if retry_after is not None:
                delay = retry_after
            else:
                cap = URGENT_BACKOFF_CAP if row.priority <= Priority.URGENT else BACKOFF_CAP
                delay = min(cap, BACKOFF_FIRST * (2**row.attempts))
            if exc.code.startswith(PLATFORM_WIDE):
                self._rest(row.platform, retry_after)
            await self._retry_later(session, row, delay, exc.code)
            log.warning("delivery.retry", outbox_id=row.id, code=exc.code, in_s=delay.seconds)

    async def _retry_later(self, session, row, delay: timedelta, code: str) -> None:
        await session.exec(
            update(OutboxMessage)
            .where(col(OutboxMessage.id) == row.id)
            .values(
                attempts=row.attempts + 1,
                next_attempt_at=self.clock.now() + delay,
                claimed_until=None,
                last_error=code[:200],
            )
        )
        await session.commit()

    async def _finish(self, session, row, status: str, code: str) -> None:
        await session.exec(
            update(OutboxMessage)
            .where(col(OutboxMessage.id) == row.id)
            .values(status=status, payload="", claimed_until=None, last_error=code[:200])
        )
        await session.commit()
