"""Operations: /healthz and /metrics over real HTTP, the heartbeat against a local monitor, and
both started and stopped by the app."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import aiohttp
import pytest
import structlog
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import select

from bot.app import App
from bot.clock import Clock
from bot.config import ConfigError, HttpConfig
from bot.ops import Heartbeat, Metrics, Operations, OpsServer, Probe
from bot.platforms import Platform
from bot.ui import Channel, Message, Priority, ToChannel
from storage.db import Database
from storage.models import OutboxMessage, OutboxStatus
from storage.support import CaseStatus, SupportCase
from tests.fakes.platform import FakePlatform
from tests.harness import START, ConsoleBot, make_settings

REFUSED_DB = "postgresql://postgres@127.0.0.1:1/nothing"


class Disconnected(FakePlatform):
    """A platform that has lost its connection."""

    name = "discord"

    @property
    def connected(self) -> bool:
        return False


class Broken(FakePlatform):
    """A platform whose connection state cannot even be read."""

    name = "slack"

    @property
    def connected(self) -> bool:
        raise RuntimeError("torn down")


class Waiting(FakePlatform):
    """A platform that runs until told to stop (as a real one runs until the process ends)."""

    name = "waiting"

    def __init__(self) -> None:
        super().__init__()
        self.done = asyncio.Event()

    async def run(self) -> None:
        await self.done.wait()


# --- helpers ----------------------------------------------------------------------------------

Serve = Callable[..., Awaitable[str]]


@pytest.fixture
async def serve(bot: ConsoleBot) -> AsyncIterator[Serve]:
    """Start the endpoints on 127.0.0.1 and an ephemeral port; give their base URL."""
    started: list[tuple[OpsServer, Database | None]] = []

    async def start(
        *,
        database: Database | None = None,
        platforms: dict[str, Platform] | None = None,
        database_timeout: float = 2.0,
    ) -> str:
        probe = Probe(
            database or bot.app.database,
            platforms if platforms is not None else bot.app.platforms,
            bot.clock,
            timeout=database_timeout,
        )
        server = OpsServer(probe, Metrics(probe))
        port = await server.start(0, "127.0.0.1")
        started.append((server, database))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, database in started:
        await server.stop()
        if database is not None:
            await database.close()


async def get(url: str, method: str = "GET") -> tuple[int, str, str]:
    """(status, content type, body) of one request."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, timeout=aiohttp.ClientTimeout(total=30)) as response,
    ):
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def get_json(url: str) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as response,
    ):
        return response.status, await response.json()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, keyed by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def add_case(bot: ConsoleBot, status: str, waiting: timedelta) -> None:
    now = bot.clock.now()
    async with bot.app.database.session() as session:
        session.add(
            SupportCase(status=status, created_at=now - waiting, connected_at=now - waiting)
        )
        await session.commit()


async def queue(bot: ConsoleBot, priority: Priority, count: int = 1) -> None:
    """Messages written to the outbox and not yet sent."""
    async with bot.app.database.session() as session:
        for _ in range(count):
            await bot.app.outbox.send(
                session,
                bot.clock.now(),
                ToChannel(Channel.COORDINATORS),
                Message("queued"),
                priority=priority,
            )
        await session.commit()


async def add_failed(bot: ConsoleBot) -> None:
    async with bot.app.database.session() as session:
        (row,) = await bot.app.outbox.send(
            session, bot.clock.now(), ToChannel(Channel.COORDINATORS), Message("lost")
        )
        row.status = OutboxStatus.FAILED
        await session.commit()


@contextlib.asynccontextmanager
async def hanging_server() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never answers (a database that hangs)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


class Monitor:
    """A local heartbeat monitor that counts pings and answers `status` (or hangs)."""

    def __init__(self) -> None:
        self.hits = 0
        self.status = 200
        self.hang = False
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _ping(self, _request: web.Request) -> web.Response:
        self.hits += 1
        if self.hang:
            await self._release.wait()
        return web.Response(status=self.status, text="ok")

    async def start(self) -> Monitor:
        app = web.Application()
        app.router.add_get("/ping/{token}", self._ping)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/ping/SECRET-TOKEN-123"
        return self

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for_hits(self, count: int, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while self.hits < count:
            assert time.monotonic() < deadline, f"only {self.hits} of {count} pings arrived"
            await asyncio.sleep(0.02)


@pytest.fixture
async def monitor() -> AsyncIterator[Monitor]:
    found = await Monitor().start()
    yield found
    await found.stop()


async def always(value: bool) -> bool:
    return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- /healthz ---------------------------------------------------------------------------------


async def test_healthz_is_ok_when_database_and_platforms_are_up(bot: ConsoleBot, serve: Serve):
    """All well: 200 with status ok, the database up, each platform connected, nothing waiting."""
    base = await serve()
    assert await get_json(f"{base}/healthz") == (
        200,
        {
            "status": "ok",
            "database": True,
            "platforms": {"console": True},
            "outbox_depth": 0,
            "oldest_unaccepted_case_seconds": None,
        },
    )


async def test_healthz_counts_the_outbox_and_the_longest_waiting_case(
    bot: ConsoleBot, serve: Serve
):
    """Unsent messages make the outbox depth; the oldest waiting or escalated case its age."""
    await queue(bot, Priority.URGENT)
    await queue(bot, Priority.BULK, 2)
    await add_case(bot, CaseStatus.WAITING, timedelta(minutes=5))
    await add_case(bot, CaseStatus.ESCALATED, timedelta(minutes=45))
    await add_case(bot, CaseStatus.ACTIVE, timedelta(days=3))  # accepted: not waiting
    base = await serve()
    status, body = await get_json(f"{base}/healthz")
    assert status == 200
    assert (body["outbox_depth"], body["oldest_unaccepted_case_seconds"]) == (3, 45 * 60)


async def test_healthz_case_age_follows_the_clock(bot: ConsoleBot, serve: Serve):
    """A waiting case's age grows as time passes."""
    await add_case(bot, CaseStatus.WAITING, timedelta(minutes=1))
    base = await serve()
    bot.clock.advance(timedelta(minutes=9))
    _, body = await get_json(f"{base}/healthz")
    assert body["oldest_unaccepted_case_seconds"] == 600


async def test_healthz_is_503_when_a_platform_is_disconnected(bot: ConsoleBot, serve: Serve):
    """One platform down: 503, degraded, and which one it is."""
    platforms = {"console": bot.console, "discord": Disconnected()}
    base = await serve(platforms=platforms)
    status, body = await get_json(f"{base}/healthz")
    assert status == 503
    assert body["status"] == "degraded" and body["database"] is True
    assert body["platforms"] == {"console": True, "discord": False}


async def test_healthz_counts_an_unreadable_platform_as_disconnected(bot: ConsoleBot, serve: Serve):
    """A platform whose state raises is reported disconnected, not a server error."""
    base = await serve(platforms={"slack": Broken()})
    status, body = await get_json(f"{base}/healthz")
    assert (status, body["platforms"]) == (503, {"slack": False})


async def test_healthz_is_503_when_the_database_is_unreachable(bot: ConsoleBot, serve: Serve):
    """A database that refuses connections: 503, database false, no figures it cannot know."""
    base = await serve(database=Database(REFUSED_DB))
    status, body = await get_json(f"{base}/healthz")
    assert status == 503
    assert body == {
        "status": "degraded",
        "database": False,
        "platforms": {"console": True},
        "outbox_depth": None,
        "oldest_unaccepted_case_seconds": None,
    }


async def test_healthz_answers_quickly_when_the_database_hangs(bot: ConsoleBot, serve: Serve):
    """A database that accepts and never answers: /healthz still answers, within its timeout."""
    async with hanging_server() as port:
        hung = Database(f"postgresql://u@127.0.0.1:{port}/x")
        base = await serve(database=hung, database_timeout=0.5)
        began = time.monotonic()
        status, body = await get_json(f"{base}/healthz")
        elapsed = time.monotonic() - began
    assert (status, body["database"]) == (503, False)
    assert elapsed < 10  # asyncpg alone would wait 60 s to connect


# --- /metrics ---------------------------------------------------------------------------------


async def test_metrics_parse_as_prometheus_text(bot: ConsoleBot, serve: Serve):
    """/metrics is Prometheus text format with the process, database and platform gauges."""
    base = await serve()
    status, content_type, body = await get(f"{base}/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    found = samples(body)
    assert found[("headsup_up", ())] == 1
    assert found[("headsup_database_up", ())] == 1
    assert found[("headsup_platform_connected", (("platform", "console"),))] == 1
    assert found[("headsup_messages_sent_total", (("platform", "console"),))] == 0


async def test_metrics_read_the_database_at_scrape_time(bot: ConsoleBot, serve: Serve):
    """Pending messages by priority, failed ones, open cases by status and the longest wait are
    read when scraped, not when the server started."""
    base = await serve()
    await queue(bot, Priority.URGENT, 2)
    await queue(bot, Priority.NORMAL)
    await add_failed(bot)
    await add_case(bot, CaseStatus.WAITING, timedelta(minutes=20))
    await add_case(bot, CaseStatus.ACTIVE, timedelta(hours=2))
    await add_case(bot, CaseStatus.CLOSED, timedelta(hours=5))
    bot.clock.advance(timedelta(minutes=10))
    found = samples((await get(f"{base}/metrics"))[2])
    assert found[("headsup_outbox_pending", (("priority", "urgent"),))] == 2
    assert found[("headsup_outbox_pending", (("priority", "normal"),))] == 1
    assert found[("headsup_outbox_pending", (("priority", "bulk"),))] == 0
    assert found[("headsup_outbox_oldest_pending_seconds", ())] == 600
    assert found[("headsup_outbox_failed_total", ())] == 1
    assert found[("headsup_open_cases", (("status", "waiting"),))] == 1
    assert found[("headsup_open_cases", (("status", "escalated"),))] == 0
    assert found[("headsup_open_cases", (("status", "active"),))] == 1
    assert found[("headsup_oldest_unaccepted_case_seconds", ())] == 30 * 60


async def test_metrics_without_the_database_say_so(bot: ConsoleBot, serve: Serve):
    """Database down: 200 with headsup_database_up 0 and no figure that needs the database."""
    base = await serve(database=Database(REFUSED_DB))
    status, _, body = await get(f"{base}/metrics")
    found = samples(body)
    assert status == 200
    assert found[("headsup_up", ())] == 1
    assert found[("headsup_database_up", ())] == 0
    assert not any(name.startswith(("headsup_outbox", "headsup_open")) for name, _ in found)


async def test_sent_counter_counts_per_platform(bot: ConsoleBot):
    """`metrics.sent(platform)` adds one to that platform's counter only."""
    probe = Probe(bot.app.database, bot.app.platforms, bot.clock)
    metrics = Metrics(probe)
    metrics.sent("console")
    metrics.sent("console")
    metrics.sent("slack")
    found = samples((await metrics.render()).decode())
    assert found[("headsup_messages_sent_total", (("platform", "console"),))] == 2
    assert found[("headsup_messages_sent_total", (("platform", "slack"),))] == 1


async def test_each_delivered_message_is_counted(bot: ConsoleBot):
    """The app's delivery worker counts every message it delivers, by platform."""
    await bot.say("/coach on", as_="coach")
    await bot.say("/support I need to talk to someone", ":click Connect", as_="you")
    found = samples((await bot.app.ops.metrics.render()).decode())
    assert found[("headsup_messages_sent_total", (("platform", "console"),))] >= 1


async def test_each_bot_has_its_own_metrics_registry(bot: ConsoleBot):
    """Two instances in one process neither collide nor share counts."""
    probe = Probe(bot.app.database, bot.app.platforms, bot.clock)
    first, second = Metrics(probe), Metrics(probe)
    first.sent("console")
    found = samples((await second.render()).decode())
    assert found[("headsup_messages_sent_total", (("platform", "console"),))] == 0


async def test_endpoints_never_show_names_or_words(bot: ConsoleBot, serve: Serve):
    """With a member's case escalated and queued messages, neither endpoint names anyone or
    repeats what they wrote."""
    await bot.say(
        "/support my head wants me gone", ":click share my name", ":click connect me", as_="alice"
    )
    await queue(bot, Priority.NORMAL)
    base = await serve()
    health = (await get(f"{base}/healthz"))[2]
    metrics = (await get(f"{base}/metrics"))[2]
    assert '"oldest_unaccepted_case_seconds": 0' in health
    for private in ("alice", "wants me gone", "queued", "H-1001"):
        assert private not in health and private not in metrics


# --- HTTP details -----------------------------------------------------------------------------


async def test_unknown_path_is_404(bot: ConsoleBot, serve: Serve):
    """Anything but the two endpoints is not found."""
    base = await serve()
    assert (await get(f"{base}/"))[0] == 404
    assert (await get(f"{base}/healthz/extra"))[0] == 404


async def test_wrong_method_is_405(bot: ConsoleBot, serve: Serve):
    """The endpoints only read: POST or DELETE is refused with 405."""
    base = await serve()
    assert (await get(f"{base}/healthz", "POST"))[0] == 405
    assert (await get(f"{base}/metrics", "DELETE"))[0] == 405


async def test_a_port_in_use_is_a_clear_config_error(bot: ConsoleBot):
    """Listening on a port something else holds fails with one line naming http.port."""
    probe = Probe(bot.app.database, bot.app.platforms, bot.clock)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=r"http\.port: cannot listen on 127\.0\.0\.1"):
            await OpsServer(probe, Metrics(probe)).start(port, "127.0.0.1")


def test_platforms_count_as_connected_unless_they_say_otherwise():
    """A platform that cannot tell is taken as connected."""
    assert FakePlatform().connected is True


# --- heartbeat --------------------------------------------------------------------------------


async def run_for(heartbeat: Heartbeat, seconds: float) -> None:
    task = asyncio.create_task(heartbeat.run())
    try:
        await asyncio.sleep(seconds)
        assert not task.done(), "the heartbeat stopped by itself"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_heartbeat_pings_at_once_and_every_interval(monitor: Monitor):
    """The first ping goes at start, then one every interval."""
    heartbeat = Heartbeat(monitor.url, lambda: always(True), interval=0.05)
    task = asyncio.create_task(heartbeat.run())
    try:
        await monitor.wait_for_hits(3)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_heartbeat_is_silent_while_the_database_is_unreachable(monitor: Monitor):
    """With the database refusing connections, the monitor hears nothing (so it raises the
    alarm), and the heartbeat keeps running."""
    database = Database(REFUSED_DB)
    probe = Probe(database, {}, Clock())
    try:
        await run_for(Heartbeat(monitor.url, probe.database_reachable, interval=0.05), 0.5)
    finally:
        await database.close()
    assert monitor.hits == 0


async def test_heartbeat_stops_while_the_database_is_down_and_resumes_after(monitor: Monitor):
    """Pings stop when the database goes down and come back when it does."""
    up = [True]

    async def database_ok() -> bool:
        return up[0]

    heartbeat = Heartbeat(monitor.url, database_ok, interval=0.05)
    task = asyncio.create_task(heartbeat.run())
    try:
        await monitor.wait_for_hits(1)
        up[0] = False
        await asyncio.sleep(0.1)  # a ping already on its way may still land
        before = monitor.hits
        await asyncio.sleep(0.4)
        assert monitor.hits == before
        up[0] = True
        await monitor.wait_for_hits(before + 1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_heartbeat_pings_when_the_real_database_answers(bot: ConsoleBot, monitor: Monitor):
    """Against the bot's own database, the probe lets the ping through."""
    probe = Probe(bot.app.database, bot.app.platforms, bot.clock)
    async with aiohttp.ClientSession() as session:
        assert await Heartbeat(monitor.url, probe.database_reachable).beat(session) is True
    assert monitor.hits == 1


async def test_heartbeat_failure_is_logged_with_the_host_only(monitor: Monitor):
    """A monitor answering 500: logged as failed with its host and status, never the URL's
    token; nothing raised."""
    monitor.status = 500
    heartbeat = Heartbeat(monitor.url, lambda: always(True))
    with structlog.testing.capture_logs() as logged:
        async with aiohttp.ClientSession() as session:
            assert await heartbeat.beat(session) is False
    (failure,) = [entry for entry in logged if entry["event"] == "heartbeat.failed"]
    assert failure["host"] == "127.0.0.1" and failure["status"] == 500
    assert "SECRET-TOKEN" not in repr(logged)


async def test_heartbeat_to_a_closed_port_is_logged_not_raised():
    """A monitor that cannot be reached: a logged failure, and the heartbeat keeps going."""
    url = f"http://127.0.0.1:{free_port()}/ping/SECRET-TOKEN-123"
    heartbeat = Heartbeat(url, lambda: always(True), interval=0.05)
    with structlog.testing.capture_logs() as logged:
        await run_for(heartbeat, 0.3)
    failures = [entry for entry in logged if entry["event"] == "heartbeat.failed"]
    assert failures and all(entry["error"] for entry in failures)
    assert "SECRET-TOKEN" not in repr(logged)


async def test_heartbeat_gives_up_on_a_monitor_that_hangs(monitor: Monitor):
    """A monitor that never answers is abandoned at the timeout and logged."""
    monitor.hang = True
    heartbeat = Heartbeat(monitor.url, lambda: always(True), timeout=0.2)
    with structlog.testing.capture_logs() as logged:
        async with aiohttp.ClientSession() as session:
            assert await asyncio.wait_for(heartbeat.beat(session), 5) is False
    assert [e["error"] for e in logged if e["event"] == "heartbeat.failed"] == ["TimeoutError"]


async def test_heartbeat_says_when_the_monitor_is_back(monitor: Monitor):
    """After a failure, the next good ping is logged once as a recovery."""
    heartbeat = Heartbeat(monitor.url, lambda: always(True))
    with structlog.testing.capture_logs() as logged:
        async with aiohttp.ClientSession() as session:
            monitor.status = 503
            await heartbeat.beat(session)
            monitor.status = 200
            await heartbeat.beat(session)
            await heartbeat.beat(session)
    assert [e["event"] for e in logged] == ["heartbeat.failed", "heartbeat.recovered"]


# --- in the app ---------------------------------------------------------------------------------


async def test_operations_do_nothing_unless_configured(bot: ConsoleBot):
    """Port 0 and no heartbeat URL: nothing listens and no heartbeat runs."""
    ops = Operations(HttpConfig(), bot.app.database, bot.app.platforms, bot.clock)
    await ops.start()
    try:
        assert ops.port is None and ops.heartbeat is None
    finally:
        await ops.stop()


async def test_app_run_serves_health_and_beats_until_it_stops(db, monitor: Monitor):
    """`App.run` serves /healthz on http.port and pings the heartbeat URL; once it stops, the
    port is closed and the pings end."""
    port = free_port()
    settings = make_settings(db.url, http={"port": port, "heartbeat_url": monitor.url})
    platform = Waiting()
    app = App(settings, clock=Clock.frozen(START), platforms=[platform], db_schema=db.schema)
    running = asyncio.create_task(app.run())
    try:
        await monitor.wait_for_hits(1)
        status, body = await get_json(f"http://127.0.0.1:{port}/healthz")
        assert (status, body["platforms"]) == (200, {"waiting": True})
    finally:
        platform.done.set()
        await asyncio.wait_for(running, 30)
    hits = monitor.hits
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(f"http://127.0.0.1:{port}/healthz")
    await asyncio.sleep(0.1)
    assert monitor.hits == hits


async def test_outbox_rows_stay_pending_until_sent(bot: ConsoleBot, serve: Serve):
    """Once the worker sends what was queued, the depth is back to 0."""
    await queue(bot, Priority.NORMAL, 2)
    base = await serve()
    assert (await get_json(f"{base}/healthz"))[1]["outbox_depth"] == 2
    await bot.app.settle()
    assert (await get_json(f"{base}/healthz"))[1]["outbox_depth"] == 0
    async with bot.app.database.session() as session:
        statuses = (await session.exec(select(OutboxMessage.status))).all()
    assert statuses == [OutboxStatus.SENT, OutboxStatus.SENT]
