"""The ticker: each tick runs every registered due job for the clock's now; one failing job never
stops the others; APScheduler drives it on an interval."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from sqlalchemy import text

from bot.clock import Clock
from bot.core import Registry, Services
from bot.delivery import Outbox
from scheduler import Ticker
from storage.crypto import Cipher
from storage.db import Database
from tests.harness import make_settings

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
async def services(tmp_path, registry) -> Services:
    # The ticker never touches the database itself; the engine is built but never connected.
    url = f"sqlite:///{tmp_path / 'headsup.db'}"
    settings = make_settings(url)
    cipher = Cipher.from_setting(settings.storage.encryption_key.get_secret_value())
    database = Database(url)
    services = Services(
        settings, Clock.frozen(START), database, cipher, Outbox(cipher, lambda c: []), registry
    )
    yield services
    await database.close()


@pytest.fixture
def ticker(services) -> Ticker:
    return Ticker(services)


def counting_job(registry: Registry, name: str, count: int, calls: list, next_due=None):
    """Register a job that records how it was called and reports `count` things done."""

    @registry.due(name, next_due=next_due)
    async def run(services: Services, now: datetime) -> int:
        calls.append((name, services, now))
        return count

    return run


def failing_job(registry: Registry, name: str, calls: list):
    @registry.due(name, next_due=None)
    async def run(services: Services, now: datetime) -> int:
        calls.append((name, services, now))
        raise RuntimeError("the feature's database query failed")

    return run


def answering(when: datetime | None):
    async def next_due(services: Services) -> datetime | None:
        return when

    return next_due


async def broken_next_due(services: Services) -> datetime | None:
    raise RuntimeError("cannot tell")


# --- tick -----------------------------------------------------------------------------------


async def test_tick_runs_each_job_with_the_clocks_now(ticker, registry, services):
    """Every registered job runs once per tick, given the services and the clock's time."""
    calls: list = []
    counting_job(registry, "checkin.prompts", 2, calls)
    counting_job(registry, "support.deadlines", 3, calls)
    await ticker.tick()
    assert sorted(name for name, _, _ in calls) == ["checkin.prompts", "support.deadlines"]
    assert all(s is services and now == START for _, s, now in calls)


async def test_tick_sums_the_jobs_counts(ticker, registry):
    """A tick reports the total number of things its jobs did."""
    calls: list = []
    counting_job(registry, "a", 2, calls)
    counting_job(registry, "b", 0, calls)
    counting_job(registry, "c", 5, calls)
    assert await ticker.tick() == 7


async def test_tick_with_no_jobs_does_nothing(ticker):
    """With nothing registered, a tick does nothing and says so."""
    assert await ticker.tick() == 0


async def test_tick_follows_the_clock(ticker, registry, services):
    """After the clock moves, the next tick passes the new time."""
    calls: list = []
    counting_job(registry, "a", 1, calls)
    await ticker.tick()
    services.clock.advance(timedelta(days=7))
    await ticker.tick()
    assert [now for _, _, now in calls] == [START, START + timedelta(days=7)]


async def test_every_job_in_one_tick_sees_the_same_now(registry, services):
    """Jobs in one tick share one time, even if the clock moves while they run."""
    seen: list[datetime] = []

    @registry.due("mover", next_due=None)
    async def mover(services: Services, now: datetime) -> int:
        seen.append(now)
        services.clock.advance(timedelta(minutes=5))
        return 0

    @registry.due("watcher", next_due=None)
    async def watcher(services: Services, now: datetime) -> int:
        seen.append(now)
        return 0

    await Ticker(services).tick()
    assert seen == [START, START]


async def test_a_failing_job_does_not_stop_the_others(ticker, registry):
    """A job that raises is skipped; jobs after it still run and their counts still add up."""
    calls: list = []
    counting_job(registry, "before", 1, calls)
    failing_job(registry, "broken", calls)
    counting_job(registry, "after", 4, calls)
    assert await ticker.tick() == 5
    assert [name for name, _, _ in calls] == ["before", "broken", "after"]


async def test_a_failing_job_runs_again_next_tick(ticker, registry):
    """A job's failure is not remembered: it is tried again on the next tick."""
    calls: list = []
    failing_job(registry, "broken", calls)
    await ticker.tick()
    await ticker.tick()
    assert [name for name, _, _ in calls] == ["broken", "broken"]


async def test_a_failing_job_is_logged_by_name_without_its_message(ticker, registry):
    """The failure is logged with the job's name and error class, not the exception's text."""
    failing_job(registry, "broken", [])
    with structlog.testing.capture_logs() as logs:
        await ticker.tick()
    [entry] = [e for e in logs if e["event"] == "tick.job_failed"]
    assert (entry["job"], entry["error"], entry["log_level"]) == ("broken", "RuntimeError", "error")
    assert "database query failed" not in repr(entry)


async def test_jobs_that_did_something_are_logged(ticker, registry):
    """A job that did work is logged with its count; an idle one is not."""
    counting_job(registry, "busy", 3, [])
    counting_job(registry, "idle", 0, [])
    with structlog.testing.capture_logs() as logs:
        await ticker.tick()
    done = [(e["job"], e["count"]) for e in logs if e["event"] == "tick.job_done"]
    assert done == [("busy", 3)]


async def test_a_job_registered_after_the_ticker_was_built_runs(ticker, registry):
    """The ticker reads the registry at each tick, so late registrations count."""
    calls: list = []
    await ticker.tick()
    counting_job(registry, "late", 1, calls)
    assert await ticker.tick() == 1


# --- next_due -------------------------------------------------------------------------------


async def test_next_due_is_the_earliest_answer(ticker, registry):
    """next_due is the minimum of the jobs' answers."""
    counting_job(registry, "a", 0, [], answering(START + timedelta(hours=3)))
    counting_job(registry, "b", 0, [], answering(START + timedelta(minutes=10)))
    counting_job(registry, "c", 0, [], answering(START + timedelta(days=1)))
    assert await ticker.next_due() == START + timedelta(minutes=10)


async def test_next_due_ignores_jobs_with_nothing_due(ticker, registry):
    """A job answering None (nothing waiting) does not hide the others' answers."""
    counting_job(registry, "a", 0, [], answering(None))
    counting_job(registry, "b", 0, [], answering(START + timedelta(hours=1)))
    assert await ticker.next_due() == START + timedelta(hours=1)


async def test_next_due_ignores_jobs_that_cannot_tell(ticker, registry):
    """Jobs registered without next_due are skipped."""
    counting_job(registry, "a", 0, [])
    counting_job(registry, "b", 0, [], answering(START + timedelta(hours=2)))
    assert await ticker.next_due() == START + timedelta(hours=2)


async def test_next_due_ignores_failures(ticker, registry):
    """A next_due that raises is logged and skipped; the other answers still count."""
    counting_job(registry, "a", 0, [], broken_next_due)
    counting_job(registry, "b", 0, [], answering(START + timedelta(hours=5)))
    counting_job(registry, "c", 0, [], broken_next_due)
    with structlog.testing.capture_logs() as logs:
        assert await ticker.next_due() == START + timedelta(hours=5)
    assert sorted(e["job"] for e in logs if e["event"] == "tick.next_due_failed") == ["a", "c"]


async def test_next_due_is_none_when_nobody_knows(ticker, registry):
    """With no answers at all (none, failures, or no jobs), next_due is None."""
    assert await ticker.next_due() is None
    counting_job(registry, "a", 0, [], answering(None))
    counting_job(registry, "b", 0, [], broken_next_due)
    counting_job(registry, "c", 0, [])
    assert await ticker.next_due() is None


async def test_next_due_passes_the_services(ticker, registry, services):
    """A job's next_due is asked with the app's services."""
    asked: list = []

    async def next_due(given: Services) -> datetime | None:
        asked.append(given)
        return None

    counting_job(registry, "a", 0, [], next_due)
    await ticker.next_due()
    assert asked == [services]
    assert asked[0] is services


# --- APScheduler ----------------------------------------------------------------------------


async def wait_for(condition) -> None:
    """Wait (up to five seconds) until `condition()` holds."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within five seconds")


async def test_start_runs_the_tick_on_an_interval(ticker, registry):
    """Once started, APScheduler runs the tick repeatedly, with no one calling it."""
    calls: list = []
    counting_job(registry, "a", 1, calls)
    ticker.start(interval_seconds=0.05)
    try:
        await wait_for(lambda: len(calls) >= 2)
    finally:
        ticker.stop()
    assert all(now == START for _, _, now in calls)


async def test_stop_ends_the_ticking(ticker, registry):
    """After stop, no more ticks run."""
    calls: list = []
    counting_job(registry, "a", 1, calls)
    ticker.start(interval_seconds=0.05)
    await wait_for(lambda: len(calls) >= 1)
    ticker.stop()
    await asyncio.sleep(0.01)  # let a tick already under way finish
    seen = len(calls)
    await asyncio.sleep(0.2)
    assert len(calls) == seen


async def test_a_failing_job_does_not_stop_the_scheduled_ticks(ticker, registry):
    """Scheduled ticks keep coming even when a job raises every time."""
    calls: list = []
    failing_job(registry, "broken", calls)
    ticker.start(interval_seconds=0.05)
    try:
        await wait_for(lambda: len(calls) >= 3)
    finally:
        ticker.stop()


async def test_stop_without_start_is_harmless(ticker):
    """Stopping a ticker that never started does nothing (the app always calls stop)."""
    ticker.stop()
    ticker.stop()


async def test_stop_twice_is_harmless(ticker):
    """A second stop after a start does nothing."""
    ticker.start(interval_seconds=60)
    ticker.stop()
    ticker.stop()


async def test_ticker_can_start_again_after_stopping(ticker, registry):
    """A stopped ticker can be started again (an app restart in the same process)."""
    calls: list = []
    counting_job(registry, "a", 1, calls)
    ticker.start(interval_seconds=0.05)
    await wait_for(lambda: len(calls) >= 1)
    ticker.stop()
    before = len(calls)
    ticker.start(interval_seconds=0.05)
    try:
        await wait_for(lambda: len(calls) > before)
    finally:
        ticker.stop()


# --- one ticking instance on PostgreSQL -----------------------------------------------------


def instance(db, registry: Registry) -> tuple[Ticker, Database]:
    """A ticker with its own engine on the test database, as another process would have."""
    database = Database(db.url, schema=db.schema)
    settings = make_settings(db.url)
    cipher = Cipher.from_setting(settings.storage.encryption_key.get_secret_value())
    services = Services(
        settings, Clock.frozen(START), database, cipher, Outbox(cipher, lambda c: []), registry
    )
    return Ticker(services), database


@pytest.fixture
async def two_instances(db, registry):
    if db.backend != "postgresql":
        pytest.skip("the advisory lock is PostgreSQL's; SQLite has one instance")
    first, first_db = instance(db, registry)
    second, second_db = instance(db, registry)
    yield first, second
    for ticker, database in ((first, first_db), (second, second_db)):
        await ticker.resign()
        await database.close()


async def test_only_one_of_two_instances_ticks(two_instances, registry):
    """With two instances on one PostgreSQL database, only the lock holder runs due jobs."""
    first, second = two_instances
    calls: list = []
    counting_job(registry, "prompts", 1, calls)
    assert await first.tick() == 1
    assert await second.tick() == 0
    assert await first.tick() == 1
    assert [c[1] for c in calls] == [first.services, first.services]


async def test_another_instance_takes_over_when_the_holder_resigns(two_instances, registry):
    """After the holder stops cleanly, the other instance ticks at its next tick."""
    first, second = two_instances
    calls: list = []
    counting_job(registry, "prompts", 1, calls)
    await first.tick()
    first.stop()
    await first.resign()
    assert await second.tick() == 1
    assert await first.tick() == 0


async def test_another_instance_takes_over_when_the_holder_dies(two_instances, registry):
    """The holder's connection dying (its process killed) frees the lock for the other."""
    first, second = two_instances
    calls: list = []
    counting_job(registry, "prompts", 1, calls)
    await first.tick()
    holder = first.leadership._connection
    assert holder is not None
    pid = (await holder.execute(text("SELECT pg_backend_pid()"))).scalar()
    async with second.services.database.engine.connect() as conn:
        await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    assert await second.tick() == 1
    assert await first.tick() == 0


async def test_a_tick_without_the_database_does_nothing_and_says_so(tmp_path, registry):
    """When the lock cannot be asked for (database down), the tick is skipped, not crashed."""
    calls: list = []
    counting_job(registry, "prompts", 1, calls)
    database = Database("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    settings = make_settings(f"sqlite:///{tmp_path / 'x.db'}")
    cipher = Cipher.from_setting(settings.storage.encryption_key.get_secret_value())
    services = Services(
        settings, Clock.frozen(START), database, cipher, Outbox(cipher, lambda c: []), registry
    )
    with structlog.testing.capture_logs() as logs:
        assert await Ticker(services).tick() == 0
    await database.close()
    assert calls == []
    assert any(e["event"] == "tick.no_database" for e in logs)
