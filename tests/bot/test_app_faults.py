"""The whole app through faults: the database going away and coming back while it runs, and the
bot killed in the middle of a weekly fan-out."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bot.app import App
from storage.checkin import CheckinSubscription
from storage.models import Identity, Member
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.tcp_proxy import TcpProxy
from tests.harness import TEST_KEY, ConsoleBot, make_settings

ROOT = Path(__file__).resolve().parents[2]

UNAVAILABLE = "temporarily unavailable, please try again"


@pytest.fixture
async def proxied(db):
    """A console bot whose PostgreSQL connection runs through a proxy the test can cut."""
    if db.backend != "postgresql":
        pytest.skip("an outage of a database server: PostgreSQL only")
    url = make_url(db.url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    bot = await ConsoleBot.create(through, db.schema)
    yield bot, proxy
    proxy.restore()
    await bot.stop()
    await proxy.close()


async def test_commands_say_temporarily_unavailable_while_the_database_is_down(proxied):
    """With the database gone, a command gets a kind "try again" with the emergency line."""
    bot, proxy = proxied
    assert "Here's what you can do" in await bot.say("/headsup help")
    proxy.cut()
    out = await bot.say("/headsup help")
    assert UNAVAILABLE in out
    assert "999" in out


async def test_the_bot_recovers_by_itself_when_the_database_returns(proxied):
    """Once the database is back, the next command works, without a restart."""
    bot, proxy = proxied
    await bot.say("/checkin")
    proxy.cut()
    assert UNAVAILABLE in await bot.say("/checkin history")
    proxy.restore()
    out = await bot.say("/checkin history")
    assert "No check-ins yet" in out


# --- killed in the middle of a weekly fan-out -----------------------------------------------

FANOUT_MEMBERS = 150


async def seed_due_prompts(db, fake: FakeDiscord, members: int) -> None:
    """Opted-in Discord members whose weekly prompt fell due a minute ago (real time)."""
    app = App(make_settings(db.url), platforms=[], db_schema=db.schema)
    await app.start()
    now = datetime.now(UTC)
    try:
        async with app.database.session() as session:
            for n in range(members):
                user_id = str(5000 + n)
                fake.add_member(user_id, f"head{n}")
                member = Member(name=f"head{n}", created_at=now, last_seen_at=now)
                session.add(member)
                await session.flush()
                session.add(Identity(member_id=member.id, platform="discord", user_id=user_id))
                session.add(
                    CheckinSubscription(
                        member_id=member.id,
                        weekday=now.weekday(),
                        time=f"{now:%H:%M}",
                        timezone="UTC",
                        next_prompt_at=now - timedelta(minutes=1),
                        consented_at=now,
                        updated_at=now,
                    )
                )
            await session.commit()
    finally:
        await app.stop()


def start_bot(db, fake: FakeDiscord, log_path: Path) -> subprocess.Popen:
    """`headsup run` on Discord, in a process of its own that the test can kill."""
    env = {
        **os.environ,
        "HEADSUP_STORAGE__URL": db.url,
        "HEADSUP_STORAGE__ENCRYPTION_KEY": TEST_KEY,
        "HEADSUP_DISCORD__TOKEN": "x",
        "HEADSUP_DISCORD__APPLICATION_ID": fake.application_id,
        "HEADSUP_DISCORD__GUILD_ID": fake.guild_id,
        "HEADSUP_DISCORD__API_BASE_URL": fake.base_url,
        "HEADSUP_DISCORD__GATEWAY_URL": fake.gateway_url,
        "HEADSUP_TEST_SCHEMA": db.schema or "",
        "HEADSUP_TEST_LEASE_SECONDS": "2",
    }
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.bot_process"],
            env=env,
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def prompted(fake: FakeDiscord) -> Counter[str]:
    """How many check-in prompts each member has in their DMs."""
    return Counter(
        user_id
        for n in range(FANOUT_MEMBERS)
        for user_id in [str(5000 + n)]
        for m in fake.dms_to(user_id)
        if "time for your weekly check-in" in m.get("content", "")
    )


async def test_killed_mid_fanout_and_restarted_every_member_gets_one_prompt(db, tmp_path):
    """SIGKILL in the middle of a weekly fan-out, then a restart: every member gets exactly one
    prompt (the unconfirmed sends are resent with their outbox ids as nonces)."""
    fake = FakeDiscord()
    await fake.start()
    log_path = tmp_path / "bot.log"
    first = second = None
    try:
        await seed_due_prompts(db, fake, FANOUT_MEMBERS)
        first = start_bot(db, fake, log_path)
        await fake.wait_for(lambda: sum(prompted(fake).values()) >= 40, within=60)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        cut_at = sum(prompted(fake).values())
        assert cut_at < FANOUT_MEMBERS, "the fan-out finished before the kill"

        second = start_bot(db, fake, log_path)
        await fake.wait_for(lambda: len(prompted(fake)) == FANOUT_MEMBERS, within=90)
        await asyncio.sleep(2)  # anything sent twice would arrive by now
        counts = prompted(fake)
        assert len(counts) == FANOUT_MEMBERS
        assert set(counts.values()) == {1}
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        await fake.close()


async def test_sigterm_stops_the_bot_cleanly(db, tmp_path):
    """SIGTERM (a container stopped, a rolling restart) ends `headsup run` in good order: the
    platforms and the database are closed and the process exits with status 0."""
    fake = FakeDiscord()
    await fake.start()
    log_path = tmp_path / "bot.log"
    process = None
    try:
        process = start_bot(db, fake, log_path)
        for _ in range(600):
            if b"app.started" in log_path.read_bytes():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the bot never started")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 20) == 0
        logged = log_path.read_text()
        assert "app.terminated" in logged and "app.stopped" in logged
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        await fake.close()


async def test_a_prompt_due_while_the_database_is_down_comes_once_it_is_back(proxied):
    """A weekly prompt that falls due during an outage is neither lost nor doubled: the tick
    and the sender find no database, and once it returns the prompt goes out, once."""
    bot, proxy = proxied
    await bot.say("/checkin", ":click yes")  # opted in: the first prompt is next Monday 08:00
    before = len(bot.transcript)
    proxy.cut()
    bot.clock.advance(timedelta(days=7))
    with contextlib.suppress(Exception):
        await bot.app.settle()  # nothing can be read or claimed
    assert "[DM you]" not in bot.transcript[before:]
    proxy.restore()
    out = await bot.advance("1m")
    assert out.count("[DM you]") == 1
    assert "weekly check-in" in out
    assert "[DM you]" not in await bot.advance("1h")
