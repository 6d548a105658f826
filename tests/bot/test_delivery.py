"""The outbox and its worker: sent once, after the commit, in priority order, retried with backoff,
edited in place, and safe with two workers or a crashed one."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from sqlalchemy.exc import OperationalError
from sqlmodel import select

import bot.delivery
from bot.clock import Clock
from bot.core import Actor
from bot.delivery import BACKOFF_FIRST, LEASE, DeliveryWorker, Outbox
from bot.platforms import DeliveryError, Pace, Platform, SentRef, Target
from bot.ui import Button, CalendarEntry, Channel, Message, Priority, ToChannel, ToMember
from storage.crypto import Cipher
from storage.db import Database
from storage.members import member_for
from storage.models import Identity, OutboxMessage, OutboxStatus

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
PRIVATE = "I am not coping with the inspection next week"
KEY = "event:12:announce"

from tests.fakes.platform import FakePlatform  # noqa: E402

# Which platforms have each shared channel: announcements everywhere, coordinators on Slack only.
PLACES = {Channel.ANNOUNCEMENTS: ["slack", "discord"], Channel.COORDINATORS: ["slack"]}


class FakeSlack(FakePlatform):
    name = "slack"


class FakeDiscord(FakePlatform):
    name = "discord"


class SlowCommitDatabase(Database):
    """Holds every transaction open a moment before committing, so two workers' claims overlap
    (without this they rarely would, and a double claim could go unnoticed)."""

    @asynccontextmanager
    async def session(self) -> AsyncIterator:
        async with super().session() as session:
            commit = session.commit

            async def slow_commit() -> None:
                await asyncio.sleep(0.01)
                await commit()

            session.commit = slow_commit  # type: ignore[method-assign]
            yield session


@dataclass
class Env:
    database: Database
    cipher: Cipher
    outbox: Outbox
    clock: Clock
    slack: FakeSlack
    discord: FakeDiscord
    worker: DeliveryWorker
    extra: list[Database] = field(default_factory=list)

    def now(self) -> datetime:
        return self.clock.now()

    def advance(self, **kwargs: float) -> None:
        self.clock.advance(timedelta(**kwargs))

    async def member(self, platform: str, user_id: str) -> int:
        async with self.database.session() as session:
            member = await member_for(session, Actor(platform, user_id, user_id), self.now())
            await session.commit()
            assert member.id is not None
            return member.id

    async def queue(self, to, message: Message | str, **kwargs) -> list[OutboxMessage]:
        """Enqueue in a unit of work and commit it."""
        if isinstance(message, str):
            message = Message(message)
        async with self.database.session() as session:
            rows = await self.outbox.send(session, self.now(), to, message, **kwargs)
            await session.commit()
        return rows

    async def queue_edit(self, key: str, message: Message | str, **kwargs) -> list[OutboxMessage]:
        if isinstance(message, str):
            message = Message(message)
        async with self.database.session() as session:
            rows = await self.outbox.edit(session, self.now(), key, message, **kwargs)
            await session.commit()
        return rows

    async def rows(self) -> list[OutboxMessage]:
        async with self.database.session() as session:
            return list(
                (await session.exec(select(OutboxMessage).order_by(OutboxMessage.id))).all()
            )

    async def row(self, row_id: int | None) -> OutboxMessage:
        async with self.database.session() as session:
            return (
                await session.exec(select(OutboxMessage).where(OutboxMessage.id == row_id))
            ).one()

    async def identity(self, platform: str, user_id: str) -> Identity:
        async with self.database.session() as session:
            return (
                await session.exec(
                    select(Identity).where(
                        Identity.platform == platform, Identity.user_id == user_id
                    )
                )
            ).one()

    def another_worker(
        self, platforms: dict[str, Platform] | None = None, *, slow_commits: bool = False
    ) -> DeliveryWorker:
        """A second worker with its own engine, as another process would have."""
        make = SlowCommitDatabase if slow_commits else Database
        url = self.database.url.render_as_string(hide_password=False)
        database = make(url, schema=self.database.schema)
        self.extra.append(database)
        return DeliveryWorker(
            database,
            self.outbox,
            self.clock,
            platforms if platforms is not None else {"slack": self.slack, "discord": self.discord},
        )


@pytest.fixture
async def env(db):
    database = Database(db.url, schema=db.schema)
    await database.upgrade()
    cipher = Cipher([Cipher.generate_key()])
    outbox = Outbox(cipher, lambda channel: PLACES[channel])
    clock = Clock.frozen(START)
    slack, discord = FakeSlack(), FakeDiscord()
    worker = DeliveryWorker(database, outbox, clock, {"slack": slack, "discord": discord})
    environment = Env(database, cipher, outbox, clock, slack, discord, worker)
    yield environment
    for extra in environment.extra:
        await extra.close()
    await database.close()


# --- sending a DM ---------------------------------------------------------------------------


async def test_dm_is_sent_once_to_the_members_platform_user(env):
    """A DM to a member reaches their platform account, once, however often the worker drains."""
    alice = await env.member("slack", "U1")
    await env.queue(ToMember(alice), PRIVATE)
    assert await env.worker.drain() == 1
    assert await env.worker.drain() == 0
    assert env.slack.sent == [(Target("dm", "U1", None), Message(PRIVATE))]
    assert env.discord.sent == []


async def test_each_send_carries_its_outbox_row_id_as_nonce(env):
    """The platform gets the row id, so a resend after a crash can be recognised as a repeat."""
    alice = await env.member("slack", "U1")
    [dm] = await env.queue(ToMember(alice), PRIVATE)
    posts = await env.queue(ToChannel(Channel.ANNOUNCEMENTS), Message("Webinar on Tuesday"))
    post = next(row for row in posts if row.platform == "slack")
    await env.worker.drain()
    sent = [target.nonce for target, _ in env.slack.sent]
    assert sent == [str(dm.id), str(post.id)]


async def test_sent_dm_is_marked_sent_with_the_platform_message_id(env):
    """The row records sent status, time, attempt, and where the platform put the message."""
    alice = await env.member("slack", "U1")
    [queued] = await env.queue(ToMember(alice), PRIVATE)
    await env.worker.drain()
    row = await env.row(queued.id)
    assert row.status == OutboxStatus.SENT
    assert (row.channel_id, row.platform_message_id) == ("slack-dm-U1", "slack-msg-1")
    assert row.sent_at == START
    assert row.attempts == 1
    assert row.claimed_until is None
    assert row.member_id == alice


async def test_payload_is_emptied_once_sent(env):
    """Nothing private lingers: the payload of a sent row is empty."""
    alice = await env.member("slack", "U1")
    [queued] = await env.queue(ToMember(alice), PRIVATE)
    assert (await env.row(queued.id)).payload != ""
    await env.worker.drain()
    assert (await env.row(queued.id)).payload == ""


async def test_queued_payload_is_encrypted(env):
    """While waiting, the row holds only ciphertext, which opens to the whole message."""
    alice = await env.member("slack", "U1")
    message = Message(PRIVATE, buttons=(Button("Talk to a coach", "support.ask"),))
    [queued] = await env.queue(ToMember(alice), message)
    payload = (await env.row(queued.id)).payload
    assert "inspection" not in payload and "coach" not in payload
    assert env.outbox.open(payload) == message


async def test_buttons_reach_the_platform(env):
    """The message handed to the platform is the whole neutral message, buttons included."""
    alice = await env.member("slack", "U1")
    message = Message("Check in?", buttons=(Button("Yes", "checkin.start"),))
    await env.queue(ToMember(alice), message)
    await env.worker.drain()
    assert env.slack.sent[0][1] == message


async def test_dm_to_a_member_without_identity_queues_nothing(env):
    """A member with no platform account gets no row (there is nowhere to send it)."""
    async with env.database.session() as session:
        from storage.models import Member

        ghost = Member(name="ghost", created_at=START, last_seen_at=START)
        session.add(ghost)
        await session.commit()
    assert await env.queue(ToMember(ghost.id), PRIVATE) == []
    assert await env.rows() == []


# --- after the commit, never before ---------------------------------------------------------


async def test_rolled_back_message_is_never_sent(env):
    """A message queued in a unit of work that rolls back vanishes with it."""
    alice = await env.member("slack", "U1")
    async with env.database.session() as session:
        await env.outbox.send(session, env.now(), ToMember(alice), Message(PRIVATE))
        await session.rollback()
    assert await env.worker.drain() == 0
    assert env.slack.sent == []
    assert await env.rows() == []


async def test_failed_unit_of_work_sends_nothing(env):
    """An error after queueing rolls the message back with the change that caused it."""
    alice = await env.member("slack", "U1")
    with pytest.raises(RuntimeError):
        async with env.database.session() as session:
            await env.outbox.send(session, env.now(), ToMember(alice), Message(PRIVATE))
            raise RuntimeError("the state change failed")
    assert await env.worker.drain() == 0
    assert env.slack.sent == []


async def test_nothing_is_due_before_the_commit(env):
    """While the queueing transaction is open, the worker sees nothing waiting."""
    alice = await env.member("slack", "U1")
    async with env.database.session() as session:
        await env.outbox.send(session, env.now(), ToMember(alice), Message(PRIVATE))
        assert await env.worker.next_due() is None
        await session.commit()
    assert await env.worker.next_due() == START


async def test_nothing_is_sent_before_the_commit(db, env):
    """A worker draining while the queueing transaction is open sends nothing until it commits."""
    if db.backend != "postgresql":
        # SQLite has one writer: the worker's claim would wait for the open transaction.
        pytest.skip("needs concurrent writers")
    alice = await env.member("slack", "U1")
    async with env.database.session() as session:
        await env.outbox.send(session, env.now(), ToMember(alice), Message(PRIVATE))
        assert await env.worker.drain() == 0
        assert env.slack.sent == []
        await session.commit()
    assert await env.worker.drain() == 1
    assert env.slack.texts == [PRIVATE]


# --- channels -------------------------------------------------------------------------------


async def test_channel_post_makes_one_row_per_platform_with_the_channel(env):
    """An announcement goes to every platform that has the channel, once each."""
    rows = await env.queue(ToChannel(Channel.ANNOUNCEMENTS), "Webinar on Tuesday")
    assert sorted(r.platform for r in rows) == ["discord", "slack"]
    assert await env.worker.drain() == 2
    assert env.slack.sent == [(Target("channel", "announcements"), Message("Webinar on Tuesday"))]
    assert env.discord.sent == [(Target("channel", "announcements"), Message("Webinar on Tuesday"))]


async def test_channel_post_skips_platforms_without_the_channel(env):
    """A coordinators' post goes only where a coordinators' channel is configured."""
    rows = await env.queue(ToChannel(Channel.COORDINATORS), "Case unacknowledged")
    assert [(r.platform, r.kind, r.recipient) for r in rows] == [
        ("slack", "channel", "coordinators")
    ]
    await env.worker.drain()
    assert env.slack.texts == ["Case unacknowledged"]
    assert env.discord.sent == []


async def test_channel_post_on_no_platform_makes_no_rows(env):
    """With no platform having the channel, nothing is queued."""
    env.outbox = Outbox(env.cipher, lambda channel: [])
    assert await env.queue(ToChannel(Channel.ANNOUNCEMENTS), "Nobody hears this") == []
    assert await env.rows() == []


async def test_rows_for_a_platform_the_worker_lacks_are_left_waiting(env):
    """A worker only claims rows for platforms it runs; the others stay pending for theirs."""
    slack_only = env.another_worker({"slack": env.slack})
    await env.queue(ToChannel(Channel.ANNOUNCEMENTS), "Webinar")
    assert await slack_only.drain() == 1
    statuses = {r.platform: (r.status, r.claimed_by) for r in await env.rows()}
    assert statuses["slack"][0] == OutboxStatus.SENT
    assert statuses["discord"] == (OutboxStatus.PENDING, None)
    assert await slack_only.next_due() is None
    assert await env.worker.next_due() == START


# --- order ----------------------------------------------------------------------------------


async def test_urgent_goes_before_bulk_even_when_queued_later(env):
    """Priority beats queue order: URGENT, then NORMAL, then BULK."""
    alice = await env.member("slack", "U1")
    await env.queue(ToMember(alice), "weekly prompt", priority=Priority.BULK)
    await env.queue(ToMember(alice), "relay", priority=Priority.NORMAL)
    await env.queue(ToMember(alice), "crisis offer", priority=Priority.URGENT)
    await env.worker.drain()
    assert env.slack.texts == ["crisis offer", "relay", "weekly prompt"]


async def test_same_priority_keeps_queue_order(env):
    """Within a priority, messages go in the order they were queued."""
    alice = await env.member("slack", "U1")
    for text in ("first", "second", "third"):
        await env.queue(ToMember(alice), text)
    await env.worker.drain()
    assert env.slack.texts == ["first", "second", "third"]


async def test_urgent_jumps_a_queue_longer_than_one_batch(env, monkeypatch):
    """An urgent message queued behind more than a batch of bulk ones still goes first."""
    monkeypatch.setattr(bot.delivery, "BATCH", 3)
    alice = await env.member("slack", "U1")
    for i in range(7):
        await env.queue(ToMember(alice), f"bulk {i}", priority=Priority.BULK)
    await env.queue(ToMember(alice), "urgent", priority=Priority.URGENT)
    assert await env.worker.drain() == 8
    assert env.slack.texts == ["urgent", *(f"bulk {i}" for i in range(7))]


# --- retries --------------------------------------------------------------------------------


async def test_retryable_failure_is_retried_after_backoff_and_sent_once(env):
    """A temporary failure waits out the backoff, then the message goes exactly once."""
    alice = await env.member("slack", "U1")
    [queued] = await env.queue(ToMember(alice), PRIVATE)
    env.slack.fail_next(DeliveryError("http_503"))
    assert await env.worker.drain() == 0
    row = await env.row(queued.id)
    assert (row.status, row.attempts, row.last_error) == (OutboxStatus.PENDING, 1, "http_503")
    assert row.next_attempt_at == START + BACKOFF_FIRST
    assert row.payload != ""  # kept for the retry

    env.advance(seconds=BACKOFF_FIRST.total_seconds() - 1)
    assert await env.worker.drain() == 0
    assert env.slack.attempts == 1

    env.advance(seconds=1)
    assert await env.worker.drain() == 1
    assert await env.worker.drain() == 0
    assert env.slack.texts == [PRIVATE]
    assert env.slack.attempts == 2
    row = await env.row(queued.id)
    assert (row.status, row.attempts, row.last_error) == (OutboxStatus.SENT, 2, None)


async def test_backoff_doubles_with_each_failure(env):
    """Successive failures wait 2 s, then 4 s, then 8 s."""
    alice = await env.member("slack", "U1")
    [queued] = await env.queue(ToMember(alice), PRIVATE)
    env.slack.fail_next(*(DeliveryError("http_500") for _ in range(3)))
    waits = []
    for _ in range(3):
        await env.worker.drain()
        row = await env.row(queued.id)
        waits.append(row.next_attempt_at - env.now())
        env.clock.advance(row.next_attempt_at - env.now())
    assert waits == [timedelta(seconds=2), timedelta(seconds=4), timedelta(seconds=8)]
    assert await env.worker.drain() == 1


async def test_backoff_is_capped(env):
    """However many failures, the wait never exceeds the cap."""
    alice = await env.member("slack", "U1")
    [queued] = await env.queue(ToMember(alice), PRIVATE)
    async with env.database.session() as session:
        row = await session.get(OutboxMessage, queued.id)
        row.attempts = 30
        await session.commit()
    env.slack.fail_next(DeliveryError("http_500"))
    await env.worker.drain()
    assert (await env.row(queued.id)).next_attempt_at == START + bot.delivery.BACKOFF_CAP


async def test_retry_after_is_honoured(env):
    """A rate limit's Retry-After is waited out exactly: not retried before it, retried after."""
    alice = await env.member("slack", "U1")
    [queued] = await env.queue(ToMember(alice), PRIVATE)
    env.slack.fail_next(DeliveryError("rate_limited", retry_after=30))
    await env.worker.drain()
    assert (await env.row(queued.id)).next_attempt_at == START + timedelta(seconds=30)

    env.advance(seconds=29)
    assert await env.worker.drain() == 0
    assert env.slack.attempts == 1

    env.advance(seconds=1)
    assert await env.worker.drain() == 1
    assert env.slack.texts == [PRIVATE]


async def test_a_generic_exception_is_retried_and_recorded_by_class(env):
    """An unexpected error is retried like a temporary failure; only its class is recorded."""
    alice = await env.member("slack", "U1")
    [queued] = await env.queue(ToMember(alice), PRIVATE)
    env.slack.fail_next(ConnectionResetError("peer went away"))
    assert await env.worker.drain() == 0
    row = await env.row(queued.id)
    assert (row.status, row.last_error) == (OutboxStatus.PENDING, "ConnectionResetError")
    env.advance(seconds=BACKOFF_FIRST.total_seconds())
    assert await env.worker.drain() == 1
    assert env.slack.texts == [PRIVATE]


async def test_one_failing_message_does_not_hold_up_the_others(env):
    """While one message waits to retry (its own problem, not the platform's), the rest go."""
    alice = await env.member("slack", "U1")
    await env.queue(ToMember(alice), "first")
    await env.queue(ToMember(alice), "second")
    env.slack.fail_next(DeliveryError("403:50013"))
    assert await env.worker.drain() == 1
    assert env.slack.texts == ["second"]


async def test_gives_up_after_too_many_attempts(env, monkeypatch):
    """A message that keeps failing is eventually marked failed and left alone."""
    monkeypatch.setattr(bot.delivery, "GIVE_UP_AFTER", 3)
    alice = await env.member("slack", "U1")
    [queued] = await env.queue(ToMember(alice), PRIVATE)
    env.slack.fail_next(*(DeliveryError("http_500") for _ in range(5)))
    for _ in range(3):
        await env.worker.drain()
        env.advance(hours=1)
    row = await env.row(queued.id)
    assert (row.status, row.attempts, row.payload) == (OutboxStatus.FAILED, 2, "")
    await env.worker.drain()
    assert env.slack.attempts == 3


# --- permanent failures ---------------------------------------------------------------------


async def test_permanent_failure_marks_the_row_failed(env):
    """DMs closed: the row is failed, its payload emptied, the code kept."""
    alice = await env.member("discord", "42")
    [queued] = await env.queue(ToMember(alice), PRIVATE)
    env.discord.fail_next(DeliveryError("50007", permanent=True))
    assert await env.worker.drain() == 0
    row = await env.row(queued.id)
    assert (row.status, row.payload, row.last_error) == (OutboxStatus.FAILED, "", "50007")
    assert row.claimed_until is None


async def test_permanent_failure_records_when_the_dm_failed(env):
    """The identity remembers the DM failure, so the member can be told next time."""
    alice = await env.member("discord", "42")
    await env.queue(ToMember(alice), PRIVATE)
    assert (await env.identity("discord", "42")).dm_failed_at is None
    env.discord.fail_next(DeliveryError("50007", permanent=True))
    await env.worker.drain()
    assert (await env.identity("discord", "42")).dm_failed_at == START


async def test_permanent_failure_is_never_retried(env):
    """However much time passes, a permanently failed row is not tried again."""
    alice = await env.member("discord", "42")
    await env.queue(ToMember(alice), PRIVATE)
    env.discord.fail_next(DeliveryError("50007", permanent=True))
    await env.worker.drain()
    env.advance(days=2)
    assert await env.worker.drain() == 0
    assert env.discord.attempts == 1
    assert env.discord.sent == []
    assert await env.worker.next_due() is None


async def test_permanent_channel_failure_leaves_identities_alone(env):
    """A channel post that fails for good marks only its row; no member's DM is blamed."""
    await env.member("slack", "U1")
    rows = await env.queue(ToChannel(Channel.COORDINATORS), "Escalation")
    env.slack.fail_next(DeliveryError("channel_not_found", permanent=True))
    await env.worker.drain()
    assert (await env.row(rows[0].id)).status == OutboxStatus.FAILED
    assert (await env.identity("slack", "U1")).dm_failed_at is None


async def test_later_successful_dm_clears_the_failure_mark(env):
    """Once a DM gets through again, the identity's failure mark is cleared."""
    alice = await env.member("discord", "42")
    await env.queue(ToMember(alice), "first")
    env.discord.fail_next(DeliveryError("50007", permanent=True))
    await env.worker.drain()
    env.advance(hours=1)
    await env.queue(ToMember(alice), "second")
    await env.worker.drain()
    assert env.discord.texts == ["second"]
    assert (await env.identity("discord", "42")).dm_failed_at is None


# --- edits ----------------------------------------------------------------------------------


async def test_edit_of_a_sent_message_uses_the_originals_ref(env):
    """Editing a sent message calls the platform's edit with where the original landed."""
    await env.queue(ToChannel(Channel.COORDINATORS), "RSVPs: 1", key=KEY)
    await env.worker.drain()
    [original] = await env.rows()
    edits = await env.queue_edit(KEY, "RSVPs: 2")
    assert len(edits) == 1
    assert await env.worker.drain() == 1
    assert env.slack.edits == [
        (SentRef(original.channel_id, original.platform_message_id), Message("RSVPs: 2"))
    ]
    assert env.slack.texts == ["RSVPs: 1"]  # edited, not posted again
    assert (await env.row(edits[0].id)).status == OutboxStatus.SENT


async def test_edit_reaches_each_platform_with_its_own_ref(env):
    """An announcement on two platforms is edited on both, each at its own message."""
    await env.queue(ToChannel(Channel.ANNOUNCEMENTS), "RSVPs: 1", key=KEY)
    await env.worker.drain()
    await env.queue_edit(KEY, "RSVPs: 2")
    assert await env.worker.drain() == 2
    assert env.slack.edits == [
        (SentRef("slack-channel-announcements", "slack-msg-1"), Message("RSVPs: 2"))
    ]
    assert env.discord.edits == [
        (SentRef("discord-channel-announcements", "discord-msg-1"), Message("RSVPs: 2"))
    ]


async def test_edit_of_a_dm_targets_that_dm(env):
    """An edit of a DM goes to the DM it was sent in."""
    alice = await env.member("slack", "U1")
    await env.queue(ToMember(alice), "Your case is open", key="case:1:status")
    await env.worker.drain()
    await env.queue_edit("case:1:status", "Your case is closed")
    await env.worker.drain()
    assert env.slack.edits == [
        (SentRef("slack-dm-U1", "slack-msg-1"), Message("Your case is closed"))
    ]


async def test_edit_queued_before_the_original_is_sent_waits_for_it(env):
    """An edit that comes up before its original is deferred, then applied to the sent message."""
    await env.queue(ToChannel(Channel.COORDINATORS), "RSVPs: 1", key=KEY, priority=Priority.BULK)
    await env.queue_edit(KEY, "RSVPs: 2", priority=Priority.URGENT)
    # The urgent edit is claimed first: its original is still unsent, so it must wait.
    assert await env.worker.drain() == 1
    assert env.slack.texts == ["RSVPs: 1"]
    assert env.slack.edits == []

    env.advance(seconds=1)
    assert await env.worker.drain() == 1
    assert env.slack.edits == [
        (SentRef("slack-channel-coordinators", "slack-msg-1"), Message("RSVPs: 2"))
    ]


async def test_edit_waits_while_the_original_is_retrying(env):
    """While the original waits out a failure, its edit is not sent."""
    await env.queue(ToChannel(Channel.COORDINATORS), "RSVPs: 1", key=KEY)
    await env.queue_edit(KEY, "RSVPs: 2")
    env.slack.fail_next(DeliveryError("http_500"))
    assert await env.worker.drain() == 0
    assert env.slack.edits == []
    env.advance(seconds=BACKOFF_FIRST.total_seconds())
    await env.worker.drain()
    env.advance(seconds=1)
    await env.worker.drain()
    assert env.slack.texts == ["RSVPs: 1"]
    assert [m.text for _, m in env.slack.edits] == ["RSVPs: 2"]


async def test_newer_edit_supersedes_an_older_pending_one(env):
    """Of two edits waiting, only the newest reaches the platform; the older is superseded."""
    await env.queue(ToChannel(Channel.COORDINATORS), "RSVPs: 1", key=KEY)
    await env.worker.drain()
    [older] = await env.queue_edit(KEY, "RSVPs: 2")
    [newer] = await env.queue_edit(KEY, "RSVPs: 3")
    assert await env.worker.drain() == 1
    assert [m.text for _, m in env.slack.edits] == ["RSVPs: 3"]
    old_row = await env.row(older.id)
    assert (old_row.status, old_row.payload) == (OutboxStatus.SUPERSEDED, "")
    assert (await env.row(newer.id)).status == OutboxStatus.SENT


async def test_sent_edits_are_not_superseded(env):
    """An edit already delivered stays recorded as sent when a newer one comes."""
    await env.queue(ToChannel(Channel.COORDINATORS), "RSVPs: 1", key=KEY)
    await env.worker.drain()
    [first] = await env.queue_edit(KEY, "RSVPs: 2")
    await env.worker.drain()
    await env.queue_edit(KEY, "RSVPs: 3")
    await env.worker.drain()
    assert (await env.row(first.id)).status == OutboxStatus.SENT
    assert [m.text for _, m in env.slack.edits] == ["RSVPs: 2", "RSVPs: 3"]


async def test_edit_of_another_key_is_not_superseded(env):
    """Superseding is per message: an edit of a different key still goes."""
    await env.queue(ToChannel(Channel.COORDINATORS), "Event A", key="event:1:announce")
    await env.queue(ToChannel(Channel.COORDINATORS), "Event B", key="event:2:announce")
    await env.worker.drain()
    await env.queue_edit("event:1:announce", "Event A (moved)")
    await env.queue_edit("event:2:announce", "Event B (moved)")
    await env.worker.drain()
    assert sorted(m.text for _, m in env.slack.edits) == ["Event A (moved)", "Event B (moved)"]


async def test_edit_of_an_unknown_key_queues_nothing(env):
    """There is nothing to edit under a key never used."""
    assert await env.queue_edit("event:99:announce", "nothing") == []
    assert await env.rows() == []


async def test_edit_of_a_message_that_failed_for_good_is_dropped(env):
    """An edit whose original can never be sent is not queued and never reaches the platform."""
    alice = await env.member("discord", "42")
    await env.queue(ToMember(alice), "RSVPs: 1", key=KEY)
    env.discord.fail_next(DeliveryError("50007", permanent=True))
    await env.worker.drain()
    assert await env.queue_edit(KEY, "RSVPs: 2") == []
    await env.worker.drain()
    assert env.discord.edits == []


async def test_edit_whose_original_failed_after_queueing_is_marked_failed(env):
    """If the original fails for good while its edit waits, the edit fails too (not forever)."""
    await env.queue(ToChannel(Channel.COORDINATORS), "RSVPs: 1", key=KEY)
    [edit] = await env.queue_edit(KEY, "RSVPs: 2")
    env.slack.fail_next(DeliveryError("channel_not_found", permanent=True))
    await env.worker.drain()
    env.advance(seconds=5)
    await env.worker.drain()
    row = await env.row(edit.id)
    assert (row.status, row.last_error) == (OutboxStatus.FAILED, "original_missing")
    assert env.slack.edits == []
    assert await env.worker.next_due() is None


# --- several workers, and crashes -----------------------------------------------------------


async def test_two_workers_draining_together_send_every_row_exactly_once(env, db, monkeypatch):
    """Two workers (two engines, two owners) racing over one queue send each row once."""
    monkeypatch.setattr(bot.delivery, "BATCH", 3)  # many small claims, so the workers interleave
    slack, discord = FakeSlack(yield_in_send=True), FakeDiscord(yield_in_send=True)
    first = env.another_worker({"slack": slack, "discord": discord}, slow_commits=True)
    second = env.another_worker({"slack": slack, "discord": discord}, slow_commits=True)
    assert first.owner != second.owner
    members = [await env.member("slack", f"U{i}") for i in range(12)]
    for i, member in enumerate(members):
        await env.queue(ToMember(member), f"dm {i}")
    for i in range(6):
        await env.queue(ToChannel(Channel.ANNOUNCEMENTS), f"post {i}")
    expected = Counter(
        [f"dm {i}" for i in range(12)] + [f"post {i}" for i in range(6)] * 2  # both platforms
    )

    counts = await asyncio.gather(first.drain(), second.drain())

    delivered = Counter(slack.texts + discord.texts)
    assert delivered == expected
    assert sum(counts) == sum(expected.values())
    rows = await env.rows()
    assert {r.status for r in rows} == {OutboxStatus.SENT}
    if db.backend == "postgresql":
        # SKIP LOCKED lets the second worker claim past the first one's rows, so both share the
        # sending. SQLite has one writer: which worker empties the queue is down to scheduling.
        assert all(counts), f"both workers should have sent some rows, got {counts}"
        assert {r.claimed_by for r in rows} == {first.owner, second.owner}


async def test_a_row_claimed_by_a_live_worker_is_left_alone(env):
    """Within its lease, a row another worker claimed is not sent by this one."""
    alice = await env.member("slack", "U1")
    await env.queue(ToMember(alice), PRIVATE)
    other = env.another_worker()
    assert len(await other._claim("slack")) == 1  # claimed, and still being worked on
    env.advance(seconds=LEASE.total_seconds() - 1)
    assert await env.worker.drain() == 0
    assert env.slack.sent == []


async def test_a_row_claimed_by_a_crashed_worker_is_picked_up_after_its_lease(env):
    """When a worker dies holding a claim, another sends the row once the lease runs out."""
    alice = await env.member("slack", "U1")
    [queued] = await env.queue(ToMember(alice), PRIVATE)
    crashed = env.another_worker()
    assert [r.id for r in await crashed._claim("slack")] == [queued.id]
    assert (await env.row(queued.id)).claimed_by == crashed.owner

    env.advance(seconds=LEASE.total_seconds() + 1)
    assert await env.worker.drain() == 1
    assert env.slack.texts == [PRIVATE]
    row = await env.row(queued.id)
    assert (row.status, row.claimed_by) == (OutboxStatus.SENT, env.worker.owner)


# --- DM channels ----------------------------------------------------------------------------


async def test_dm_channel_from_the_platform_is_stored_and_reused(env):
    """The DM channel the platform returns is kept on the identity and passed back next time."""
    alice = await env.member("slack", "U1")
    await env.queue(ToMember(alice), "first")
    await env.worker.drain()
    assert (await env.identity("slack", "U1")).dm_channel_id == "slack-dm-U1"
    await env.queue(ToMember(alice), "second")
    await env.worker.drain()
    assert [target for target, _ in env.slack.sent] == [
        Target("dm", "U1", None),
        Target("dm", "U1", "slack-dm-U1"),
    ]


async def test_dm_channels_are_kept_per_identity(env):
    """Each member's DM channel is theirs: another member's is never passed for them."""
    alice = await env.member("slack", "U1")
    bob = await env.member("slack", "U2")
    await env.queue(ToMember(alice), "to alice")
    await env.worker.drain()
    await env.queue(ToMember(bob), "to bob")
    await env.worker.drain()
    assert env.slack.sent[1][0] == Target("dm", "U2", None)
    assert (await env.identity("slack", "U2")).dm_channel_id == "slack-dm-U2"


# --- the running worker ---------------------------------------------------------------------


async def test_next_due_is_the_earliest_waiting_row(env):
    """next_due answers when the earliest pending row falls due, as an aware UTC time."""
    alice = await env.member("slack", "U1")
    assert await env.worker.next_due() is None
    await env.queue(ToMember(alice), PRIVATE)
    env.slack.fail_next(DeliveryError("rate_limited", retry_after=90))
    await env.worker.drain()
    due = await env.worker.next_due()
    assert due == START + timedelta(seconds=90)
    assert due.tzinfo is not None


async def test_run_sends_when_woken(env):
    """The running worker sends a committed message as soon as it is woken, not at the poll."""
    env.worker.poll_seconds = 60
    alice = await env.member("slack", "U1")
    task = asyncio.create_task(env.worker.run())
    try:
        await asyncio.sleep(0.05)  # first drain: nothing yet
        await env.queue(ToMember(alice), PRIVATE)
        env.worker.wake()
        for _ in range(200):
            if env.slack.sent:
                break
            await asyncio.sleep(0.01)
        assert env.slack.texts == [PRIVATE]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_survives_a_failing_drain(env, monkeypatch):
    """A drain that raises (database down) is logged and the worker keeps going."""
    env.worker.poll_seconds = 0.01
    calls = 0
    real_drain = env.worker.drain

    async def flaky_drain(platform: str | None = None) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionRefusedError("database down")
        return await real_drain(platform)

    monkeypatch.setattr(env.worker, "drain", flaky_drain)
    alice = await env.member("slack", "U1")
    await env.queue(ToMember(alice), PRIVATE)
    task = asyncio.create_task(env.worker.run())
    try:
        for _ in range(200):
            if env.slack.sent:
                break
            await asyncio.sleep(0.01)
        assert calls >= 2
        assert env.slack.texts == [PRIVATE]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# --- privacy in logs ------------------------------------------------------------------------


async def test_logs_never_contain_message_text(env):
    """Sending, retrying, failing and editing log ids and codes, never what was written."""
    alice = await env.member("slack", "U1")
    bob = await env.member("discord", "42")
    secret_edit = "Edited: the governors want me gone"
    with structlog.testing.capture_logs(processors=[structlog.processors.format_exc_info]) as logs:
        await env.queue(ToMember(alice), PRIVATE, key=KEY)
        await env.queue(ToMember(bob), PRIVATE)
        await env.queue(ToChannel(Channel.COORDINATORS), PRIVATE)
        env.slack.fail_next(DeliveryError("http_500"), RuntimeError("socket closed"))
        env.discord.fail_next(DeliveryError("50007", permanent=True))
        await env.worker.drain()
        env.advance(minutes=1)
        await env.worker.drain()
        await env.queue_edit(KEY, secret_edit)
        env.advance(minutes=1)
        await env.worker.drain()
    events = {entry["event"] for entry in logs}
    assert {"delivery.sent", "delivery.retry", "delivery.failed", "delivery.error"} <= events
    assert env.slack.texts == [PRIVATE, PRIVATE] and len(env.slack.edits) == 1
    rendered = repr(logs)
    for words in (PRIVATE, "inspection", secret_edit, "governors"):
        assert words not in rendered


# --- native calendar entries ------------------------------------------------------------------

ENTRY = CalendarEntry(
    "Heads together", START + timedelta(days=7), START + timedelta(days=7, hours=1)
)


async def queue_calendar(env, outbox: Outbox, entry: CalendarEntry) -> list[OutboxMessage]:
    async with env.database.session() as session:
        rows = await outbox.calendar(session, env.now(), "event:calendar:1", entry)
        await session.commit()
    return rows


def calendar_outbox(env) -> Outbox:
    """An outbox for which Discord keeps native calendar entries and Slack does not."""
    return Outbox(env.cipher, lambda channel: PLACES[channel], lambda: ["discord"])


async def test_calendar_entry_goes_only_to_platforms_that_keep_one(env):
    """A calendar entry is queued for Discord alone and created there once."""
    rows = await queue_calendar(env, calendar_outbox(env), ENTRY)
    assert [r.platform for r in rows] == ["discord"]
    assert await env.worker.drain() == 1
    assert env.discord.calendar == [(None, ENTRY)]
    assert env.slack.calendar == []


async def test_without_calendar_platforms_nothing_is_queued(env):
    """With no platform keeping a calendar, publishing an entry queues nothing."""
    assert await queue_calendar(env, env.outbox, ENTRY) == []
    assert await env.rows() == []


async def test_a_changed_entry_edits_the_one_created(env):
    """Publishing the same key again updates the entry the platform created, by its id."""
    outbox = calendar_outbox(env)
    await queue_calendar(env, outbox, ENTRY)
    await env.worker.drain()
    (created_ref, _), *_ = env.discord.calendar
    cancelled = CalendarEntry(ENTRY.title, ENTRY.starts_at, ENTRY.ends_at, cancelled=True)
    [edit] = await queue_calendar(env, outbox, cancelled)
    assert edit.edit_of == "event:calendar:1"
    await env.worker.drain()
    ref, entry = env.discord.calendar[-1]
    assert ref is not None and ref.message_id == "discord-event-1"
    assert entry.cancelled
    assert created_ref is None


async def test_a_change_before_the_entry_exists_waits_for_it(env):
    """An update queued while the creation is still unsent is applied after the creation."""
    outbox = calendar_outbox(env)
    env.discord.fail_next(DeliveryError("http_500"))
    await queue_calendar(env, outbox, ENTRY)
    renamed = CalendarEntry("Heads apart", ENTRY.starts_at, ENTRY.ends_at)
    await queue_calendar(env, outbox, renamed)
    await env.worker.drain()
    assert env.discord.calendar == []
    env.advance(minutes=1)
    await env.worker.drain()
    env.advance(minutes=1)
    await env.worker.drain()
    assert [(ref is None, e.title) for ref, e in env.discord.calendar] == [
        (True, "Heads together"),
        (False, "Heads apart"),
    ]


def test_calendar_entry_survives_its_json_form():
    """An entry read back from the outbox is the entry written."""
    entry = CalendarEntry(
        "Heads", ENTRY.starts_at, ENTRY.ends_at, "About", "https://x.example", "Call", True
    )
    assert CalendarEntry.from_json(entry.to_json()) == entry


# --- the database failing mid-batch ---------------------------------------------------------


def database_locked() -> OperationalError:
    return OperationalError("UPDATE outbox", {}, Exception("database is locked"))


async def test_a_row_whose_outcome_cannot_be_recorded_does_not_strand_the_rest(env, monkeypatch):
    """When recording one row's failure errors, the batch goes on and that row is handed back."""
    alice, bob = await env.member("slack", "U1"), await env.member("slack", "U2")
    [first] = await env.queue(ToMember(alice), "first")
    await env.queue(ToMember(bob), "second")
    env.slack.fail_next(DeliveryError("http_500"))
    record_failure = env.worker._failed

    async def failing_once(row, exc):
        monkeypatch.setattr(env.worker, "_failed", record_failure)
        raise database_locked()

    monkeypatch.setattr(env.worker, "_failed", failing_once)
    assert await env.worker.drain() == 1  # the second; the first is handed back, not stranded
    assert (await env.row(first.id)).claimed_until is None
    assert await env.worker.drain() == 1
    assert env.slack.texts == ["second", "first"]
    assert (await env.row(first.id)).status == OutboxStatus.SENT


async def test_recording_a_send_is_retried_when_the_database_is_busy(env, monkeypatch):
    """A busy database while marking a row sent is retried, so the message is not sent twice."""
    monkeypatch.setattr(bot.delivery, "SENT_RETRY_PAUSES", (0, 0, 0))
    alice = await env.member("slack", "U1")
    [queued] = await env.queue(ToMember(alice), PRIVATE)
    record = env.worker._record_sent
    calls = []

    async def busy_twice(row, ref, *rest):
        calls.append(row.id)
        if len(calls) <= 2:
            raise database_locked()
        await record(row, ref, *rest)

    monkeypatch.setattr(env.worker, "_record_sent", busy_twice)
    assert await env.worker.drain() == 1
    assert await env.worker.drain() == 0
    assert len(env.slack.sent) == 1
    assert (await env.row(queued.id)).status == OutboxStatus.SENT


# --- a platform that is down, and the platform's pace -----------------------------------------


async def test_a_platform_answering_500_rests_instead_of_being_asked_for_every_row(env):
    """After a 5xx the platform is left alone for a while: the batch's other rows wait unsent."""
    alice = await env.member("slack", "U1")
    for text in ("one", "two", "three"):
        await env.queue(ToMember(alice), text)
    env.slack.fail_next(DeliveryError("http_500"))
    assert await env.worker.drain() == 0
    assert env.slack.attempts == 1
    assert all(r.claimed_until is None for r in await env.rows())
    env.advance(seconds=BACKOFF_FIRST.total_seconds())
    assert await env.worker.drain() == 3
    assert sorted(env.slack.texts) == ["one", "three", "two"]


async def test_a_resting_platform_does_not_hold_up_another(env):
    """Slack being down does not stop Discord's rows."""
    alice, bob = await env.member("slack", "U1"), await env.member("discord", "D1")
    await env.queue(ToMember(alice), "to slack")
    await env.queue(ToMember(bob), "to discord")
    env.slack.fail_next(DeliveryError("network:ClientConnectorError"))
    assert await env.worker.drain() == 1
    assert env.discord.texts == ["to discord"]


async def test_a_platform_down_for_a_minute_gets_everything_after(env):
    """A platform failing every request for a minute is asked a handful of times, and once it
    answers again every waiting message is delivered, none lost."""
    alice = await env.member("slack", "U1")
    for n in range(20):
        await env.queue(ToMember(alice), f"message {n}")
    down_until = env.now() + timedelta(minutes=1)
    real_send = env.slack.send
    attempts = 0

    async def down_for_a_minute(target, message):
        nonlocal attempts
        attempts += 1
        if env.now() < down_until:
            raise DeliveryError("http_503")
        return await real_send(target, message)

    env.slack.send = down_for_a_minute
    for _ in range(40):  # three minutes, every 5 seconds
        await env.worker.drain()
        env.advance(seconds=5)
    assert sorted(env.slack.texts) == sorted(f"message {n}" for n in range(20))
    assert attempts - 20 <= 8
    assert all(r.status == OutboxStatus.SENT for r in await env.rows())


async def test_an_urgent_row_never_backs_off_for_long(env):
    """A crisis offer that keeps failing is retried at least every 30 seconds."""
    alice = await env.member("slack", "U1")
    [row] = await env.queue(ToMember(alice), "urgent", priority=Priority.URGENT)
    async with env.database.session() as session:
        stored = await session.get(OutboxMessage, row.id)
        stored.attempts = 12
        await session.commit()
    env.slack.fail_next(DeliveryError("403:50013"))
    await env.worker.drain()
    assert (await env.row(row.id)).next_attempt_at == env.now() + timedelta(seconds=30)


async def test_sends_are_paced_to_the_platforms_limit(env):
    """With a limit of 20 requests a second, 60 messages take at least two seconds."""
    env.slack.pace = Pace(per_second=20)
    worker = DeliveryWorker(
        env.database, env.outbox, env.clock, {"slack": env.slack, "discord": env.discord}
    )
    members = [await env.member("slack", f"U{n}") for n in range(30)]
    for member in members:
        await env.queue(ToMember(member), "hello")  # first DMs: two requests each
    began = asyncio.get_running_loop().time()
    assert await worker.drain() == 30
    assert asyncio.get_running_loop().time() - began >= 1.9


async def test_posts_to_one_channel_are_paced_per_channel(env):
    """At one post a second per channel, three posts to one channel take two seconds or more."""
    env.slack.pace = Pace(per_channel_per_second=1)
    worker = DeliveryWorker(
        env.database, env.outbox, env.clock, {"slack": env.slack, "discord": env.discord}
    )
    for n in range(3):
        await env.queue(ToChannel(Channel.COORDINATORS), f"post {n}")
    began = asyncio.get_running_loop().time()
    assert await worker.drain() == 3
    assert asyncio.get_running_loop().time() - began >= 1.9


async def test_a_long_batch_keeps_its_claim(env):
    """While a batch takes longer than half the lease, its remaining rows' claim is renewed."""
    alice = await env.member("slack", "U1")
    rows = [(await env.queue(ToMember(alice), f"m{n}"))[0] for n in range(3)]
    real_send = env.slack.send
    seen: list = []

    async def slow_send(target, message):
        env.advance(seconds=LEASE.total_seconds() * 0.6)  # each send takes 60% of a lease
        seen.append((await env.row(rows[-1].id)).claimed_until)
        return await real_send(target, message)

    env.slack.send = slow_send
    assert await env.worker.drain() == 3
    assert all(until is not None and until > START + LEASE for until in seen[1:])


async def test_a_row_that_keeps_failing_to_record_is_not_resent_in_a_loop(env, monkeypatch):
    """When recording a send fails for good (a broken database), the row is handed back once per
    drain, never resent over and over within one drain."""
    monkeypatch.setattr(bot.delivery, "SENT_RETRY_PAUSES", ())
    alice = await env.member("slack", "U1")
    await env.queue(ToMember(alice), PRIVATE)

    async def always_broken(*args):
        raise database_locked()

    monkeypatch.setattr(env.worker, "_record_sent", always_broken)
    assert await env.worker.drain() == 0
    assert len(env.slack.sent) == 1


# --- several recipients at once, a loop per platform ------------------------------------------


class Overlapping:
    """Wraps a platform's send: each takes a moment, and the most at once is recorded."""

    def __init__(self, platform: FakePlatform, pause: float = 0.02) -> None:
        self.platform, self.pause, self.now, self.most = platform, pause, 0, 0
        self._send = platform.send
        platform.send = self.send  # type: ignore[method-assign]

    async def send(self, target, message):
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(self.pause)
            return await self._send(target, message)
        finally:
            self.now -= 1


async def test_several_recipients_are_sent_to_at_once_up_to_the_concurrency(env):
    """With a concurrency of 4, sends to different members overlap, never more than 4 at once."""
    env.slack.pace = Pace(concurrency=4)
    worker = env.another_worker({"slack": env.slack})
    overlapping = Overlapping(env.slack)
    for n in range(12):
        await env.queue(ToMember(await env.member("slack", f"U{n}")), f"hello {n}")
    assert await worker.drain() == 12
    assert 2 <= overlapping.most <= 4


async def test_one_recipients_messages_keep_their_order_when_sending_at_once(env):
    """Sending to several members at once, each member still gets their messages in order."""
    env.slack.pace = Pace(concurrency=4)
    worker = env.another_worker({"slack": env.slack})
    Overlapping(env.slack)
    alice, bob = await env.member("slack", "UA"), await env.member("slack", "UB")
    for n in range(5):
        await env.queue(ToMember(alice), f"alice {n}")
        await env.queue(ToMember(bob), f"bob {n}")
    assert await worker.drain() == 10
    to_alice = [m.text for t, m in env.slack.sent if t.recipient == "UA"]
    assert to_alice == [f"alice {n}" for n in range(5)]


async def test_one_platform_hanging_does_not_hold_up_another_in_the_running_worker(env):
    """While Discord's send hangs, the running worker still delivers Slack's messages."""
    env.worker.poll_seconds = 0.01
    stuck = asyncio.Event()

    async def hanging_send(target, message):
        await stuck.wait()
        raise DeliveryError("http_500")

    env.discord.send = hanging_send  # type: ignore[method-assign]
    await env.queue(ToMember(await env.member("discord", "D1")), "to discord")
    await env.queue(ToMember(await env.member("slack", "U1")), "to slack")
    task = asyncio.create_task(env.worker.run())
    try:
        for _ in range(300):
            if env.slack.sent:
                break
            await asyncio.sleep(0.01)
        assert env.slack.texts == ["to slack"]
    finally:
        stuck.set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_send_that_hangs_is_abandoned_and_retried(env, monkeypatch):
    """A call that never returns is given up after SEND_TIMEOUT, and the row is tried again
    once the platform has rested."""
    monkeypatch.setattr(bot.delivery, "SEND_TIMEOUT", 0.05)
    real_send = env.slack.send
    hung = []

    async def hangs_once(target, message):
        if not hung:
            hung.append(True)
            await asyncio.sleep(10)
        return await real_send(target, message)

    env.slack.send = hangs_once  # type: ignore[method-assign]
    [row] = await env.queue(ToMember(await env.member("slack", "U1")), PRIVATE)
    assert await env.worker.drain() == 0
    assert (await env.row(row.id)).last_error == "timeout"
    env.advance(minutes=1)
    assert await env.worker.drain() == 1
    assert env.slack.texts == [PRIVATE]


async def test_stopping_finishes_the_send_in_hand_and_hands_back_the_rest(env):
    """Cancelled mid-batch, the worker lets the send in progress finish and be recorded, and
    hands the batch's other rows back at once (not held for a lease)."""
    env.worker.poll_seconds = 60
    alice = await env.member("slack", "U1")
    rows = [(await env.queue(ToMember(alice), f"m{n}"))[0] for n in range(3)]
    started, real_send = asyncio.Event(), env.slack.send

    async def slow_send(target, message):
        started.set()
        await asyncio.sleep(0.2)
        return await real_send(target, message)

    env.slack.send = slow_send  # type: ignore[method-assign]
    task = asyncio.create_task(env.worker.run())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    first, *rest = [await env.row(r.id) for r in rows]
    assert first.status == OutboxStatus.SENT and env.slack.texts == ["m0"]
    assert all(r.status == OutboxStatus.PENDING and r.claimed_until is None for r in rest)
