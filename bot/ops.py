"""Operations: ``/healthz`` and ``/metrics`` over HTTP, and the heartbeat ping.

``headsup run`` serves both endpoints when ``http.port`` is above 0, and pings
``http.heartbeat_url`` every minute while the database answers (a dead-man's switch: the monitor
raises the alarm when the pings stop). Everything here reports counts, ages and platform names —
never a member, a message or a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlmodel import col, func, select

from bot.clock import Clock
from bot.config import ConfigError, HttpConfig
from bot.platforms import Platform
from bot.ui import Priority
from storage.db import Database
from storage.models import OutboxMessage, OutboxStatus
from storage.support import CaseStatus, SupportCase

log = structlog.get_logger("headsup.ops")

DATABASE_TIMEOUT = 2.0  # seconds a health check waits for the database before calling it down
HEARTBEAT_INTERVAL = 60.0
HEARTBEAT_TIMEOUT = 10.0
DEFAULT_HOST = "0.0.0.0"  # every interface: a container's health check and Prometheus reach it


# --- what the bot looks like right now --------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The bot's state at one moment. Database figures are None when the database didn't answer."""

    database: bool
    platforms: dict[str, bool]
    outbox_pending: dict[str, int] | None = None  # by priority name: urgent, normal, bulk
    outbox_failed: int | None = None
    oldest_pending_message_seconds: int | None = None
    open_cases: dict[str, int] | None = None  # by status: waiting, escalated, active
    oldest_unaccepted_case_seconds: int | None = None

    @property
    def healthy(self) -> bool:
        """The database answers and every platform is connected."""
        return self.database and all(self.platforms.values())

    @property
    def outbox_depth(self) -> int | None:
        """Messages waiting to be sent, all priorities together."""
        return None if self.outbox_pending is None else sum(self.outbox_pending.values())

    def health(self) -> dict[str, object]:
        """The body of ``GET /healthz``."""
        return {
            "status": "ok" if self.healthy else "degraded",
            "database": self.database,
            "platforms": dict(self.platforms),
            "outbox_depth": self.outbox_depth,
            "oldest_unaccepted_case_seconds": self.oldest_unaccepted_case_seconds,
        }


def priority_name(value: int) -> str:
    """``urgent``/``normal``/``bulk`` for an outbox priority (the number itself if unknown)."""
    try:
        return Priority(value).name.lower()
    except ValueError:
        return str(value)


def _seconds_since(moment: datetime | None, now: datetime) -> int | None:
    if moment is None:
        return None
    return max(0, int((now - moment).total_seconds()))


def _is_connected(platform: Platform) -> bool:
    try:
        return bool(platform.connected)
    except Exception:  # a platform half torn down must not break the health check
        return False


class Probe:
    """Reads the bot's state for the endpoints, never waiting on the database past `timeout`."""

    def __init__(
        self,
        database: Database,
        platforms: Mapping[str, Platform],
        clock: Clock,
        *,
        timeout: float = DATABASE_TIMEOUT,
    ) -> None:
        self.database = database
        self.platforms = platforms
        self.clock = clock
        self.timeout = timeout

    def platform_states(self) -> dict[str, bool]:
        return {name: _is_connected(p) for name, p in sorted(self.platforms.items())}

    async def database_reachable(self) -> bool:
        """Whether a trivial query succeeds within the timeout."""
        try:
            return await asyncio.wait_for(self.database.ping(), self.timeout)
        except TimeoutError:
            return False

    async def snapshot(self) -> Snapshot:
        """Platforms at once; database figures within the timeout, or the database marked down."""
        platforms = self.platform_states()
        try:
            return await asyncio.wait_for(self._read(platforms), self.timeout)
        except Exception as exc:  # a timeout, a refused connection, a missing table…
            log.warning("ops.database_unreachable", error=type(exc).__name__)
            return Snapshot(database=False, platforms=platforms)

    async def _read(self, platforms: dict[str, bool]) -> Snapshot:
        now = self.clock.now()
        async with self.database.session() as session:
            pending_rows = (
                await session.exec(
                    select(OutboxMessage.priority, func.count())
                    .where(OutboxMessage.status == OutboxStatus.PENDING)
                    .group_by(col(OutboxMessage.priority))
                )
            ).all()
            oldest_pending = (
                await session.exec(
                    select(func.min(OutboxMessage.created_at)).where(
                        OutboxMessage.status == OutboxStatus.PENDING
                    )
                )
            ).first()
            failed = (
                await session.exec(
                    select(func.count()).where(OutboxMessage.status == OutboxStatus.FAILED)
                )
            ).one()
            case_rows = (
                await session.exec(
                    select(SupportCase.status, func.count())
                    .where(col(SupportCase.status).in_(CaseStatus.OPEN))
                    .group_by(col(SupportCase.status))
                )
            ).all()
            # A case waits from when the member asked to be connected (drafts never count).
            oldest_unaccepted = (
                await session.exec(
                    select(
                        func.min(func.coalesce(SupportCase.connected_at, SupportCase.created_at))
                    ).where(col(SupportCase.status).in_(CaseStatus.UNASSIGNED))
                )
            ).first()
        pending = {priority_name(p): 0 for p in Priority}
        for priority, count in pending_rows:
            pending[priority_name(priority)] = pending.get(priority_name(priority), 0) + count
        cases = dict.fromkeys(CaseStatus.OPEN, 0)
        cases.update({status: count for status, count in case_rows})
        return Snapshot(
            database=True,
            platforms=platforms,
            outbox_pending=pending,
            outbox_failed=int(failed),
            oldest_pending_message_seconds=_seconds_since(oldest_pending, now),
            open_cases=cases,
            oldest_unaccepted_case_seconds=_seconds_since(oldest_unaccepted, now),
        )


# --- Prometheus -------------------------------------------------------------------------------


class _SnapshotCollector:
    """Turns the snapshot taken for this scrape into gauges (a custom collector)."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("headsup_up", "1 while this HeadsUp process is running.", value=1)
        snap = self.snapshot
        if snap is None:
            return
        yield GaugeMetricFamily(
            "headsup_database_up",
            "1 when the database answered the last scrape within the timeout, else 0.",
            value=int(snap.database),
        )
        connected = GaugeMetricFamily(
            "headsup_platform_connected",
            "1 when the chat platform is connected, else 0.",
            labels=["platform"],
        )
        for name, up in snap.platforms.items():
            connected.add_metric([name], int(up))
        yield connected
        if not snap.database:
            return  # nothing below can be known without the database
        assert snap.outbox_pending is not None and snap.open_cases is not None
        pending = GaugeMetricFamily(
            "headsup_outbox_pending",
            "Messages waiting in the outbox to be sent, by priority.",
            labels=["priority"],
        )
        for name, count in snap.outbox_pending.items():
            pending.add_metric([name], count)
        yield pending
        yield GaugeMetricFamily(
            "headsup_outbox_oldest_pending_seconds",
            "Age of the oldest message still waiting to be sent (0 when none waits).",
            value=snap.oldest_pending_message_seconds or 0,
        )
        yield CounterMetricFamily(
            "headsup_outbox_failed",
            "Outbox messages given up on for good (e.g. a member's DMs are closed).",
            value=snap.outbox_failed or 0,
        )
        cases = GaugeMetricFamily(
            "headsup_open_cases",
            "Support cases open, by status (waiting, escalated, active).",
            labels=["status"],
        )
        for status, count in snap.open_cases.items():
            cases.add_metric([status], count)
        yield cases
        yield GaugeMetricFamily(
            "headsup_oldest_unaccepted_case_seconds",
            "How long the longest-waiting case nobody has accepted has waited (0 when none).",
            value=snap.oldest_unaccepted_case_seconds or 0,
        )


class Metrics:
    """One bot's Prometheus registry (its own, never the global one, so instances don't mix)."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.registry = CollectorRegistry()
        self._collector = _SnapshotCollector()
        self.registry.register(self._collector)
        self._sent = Counter(
            "headsup_messages_sent",
            "Messages this process delivered to a platform, by platform.",
            ["platform"],
            registry=self.registry,
        )
        for name in probe.platforms:
            self._sent.labels(name)  # show every platform from the start, at 0

    def sent(self, platform: str) -> None:
        """Count one message delivered (the outbox worker calls this after each send)."""
        self._sent.labels(platform).inc()

    async def render(self) -> bytes:
        """The Prometheus text exposition, with the state read now."""
        snapshot = await self.probe.snapshot()
        # No await between these two lines, so a concurrent scrape cannot swap the snapshot.
        self._collector.snapshot = snapshot
        return generate_latest(self.registry)


# --- HTTP ---------------------------------------------------------------------------------------


class OpsServer:
    """The aiohttp server behind ``/healthz`` and ``/metrics``."""

    def __init__(self, probe: Probe, metrics: Metrics) -> None:
        self.probe = probe
        self.metrics = metrics
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def application(self) -> web.Application:
        app = web.Application()
        # GET also answers HEAD; other methods get 405 and unknown paths 404 from the router.
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _healthz(self, _request: web.Request) -> web.Response:
        snapshot = await self.probe.snapshot()
        return web.json_response(
            snapshot.health(),
            status=200 if snapshot.healthy else 503,
            headers={"Cache-Control": "no-store"},
        )

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = await self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self, port: int, host: str = DEFAULT_HOST) -> int:
        """Listen on `host`:`port` (0: any free port); return the port in use."""
        runner = web.AppRunner(self.application(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"http.port: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                "choose another port or stop what is using it"
            ) from None
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("ops.http_started", host=host, port=self.port)
        return self.port

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("ops.http_stopped")


# --- heartbeat ----------------------------------------------------------------------------------


class Heartbeat:
    """GETs a monitor's URL every `interval` seconds while the database answers.

    Failures are logged with the URL's host only (a ping URL often carries its token in the
    path) and never raised: a monitor being down must not take the bot with it.
    """

    def __init__(
        self,
        url: str,
        database_ok: Callable[[], Awaitable[bool]],
        *,
        interval: float = HEARTBEAT_INTERVAL,
        timeout: float = HEARTBEAT_TIMEOUT,
    ) -> None:
        self.url = url
        self.host = urlsplit(url).hostname or "?"
        self.database_ok = database_ok
        self.interval = interval
        self.timeout = timeout
        self._failing = False

    async def run(self) -> None:
        """Ping now, then every `interval`, until cancelled."""
        async with aiohttp.ClientSession() as session:
            while True:
                await self.beat(session)
                await asyncio.sleep(self.interval)

    async def beat(self, session: aiohttp.ClientSession) -> bool:
        """One ping, unless the database is down; True when the monitor answered 2xx/3xx."""
        try:
            if not await self.database_ok():
                log.warning("heartbeat.skipped", reason="database_unreachable", host=self.host)
                return False
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with session.get(self.url, timeout=timeout, allow_redirects=True) as response:
                if response.status >= 400:
                    return self._failed(status=response.status)
        except Exception as exc:  # refused, timed out, DNS… never let the heartbeat stop the bot
            return self._failed(error=type(exc).__name__)
        if self._failing:
            log.info("heartbeat.recovered", host=self.host)
        self._failing = False
        return True

    def _failed(self, **why: object) -> bool:
        self._failing = True
        log.warning("heartbeat.failed", host=self.host, **why)
        return False


# --- all of it, for the app ---------------------------------------------------------------------


class Operations:
    """What ``headsup run`` serves besides the chat: the endpoints and the heartbeat."""

    def __init__(
        self,
        config: HttpConfig,
        database: Database,
        platforms: Mapping[str, Platform],
        clock: Clock,
        *,
        host: str = DEFAULT_HOST,
        database_timeout: float = DATABASE_TIMEOUT,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
    ) -> None:
        self.config = config
        self.host = host
        self.probe = Probe(database, platforms, clock, timeout=database_timeout)
        self.metrics = Metrics(self.probe)
        self.server = OpsServer(self.probe, self.metrics)
        self.heartbeat = (
            Heartbeat(
                config.heartbeat_url, self.probe.database_reachable, interval=heartbeat_interval
            )
            if config.heartbeat_url
            else None
        )
        self._heartbeat_task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int | None:
        """The port the endpoints listen on, once started."""
        return self.server.port

    async def start(self) -> None:
        """Serve the endpoints (when ``http.port`` > 0) and start the heartbeat (when set)."""
        if self.config.port > 0:
            await self.server.start(self.config.port, self.host)
        if self.heartbeat is not None and self._heartbeat_task is None:
            self._heartbeat_task = asyncio.create_task(self.heartbeat.run(), name="heartbeat")
            log.info("heartbeat.started", host=self.heartbeat.host)

    async def stop(self) -> None:
        task, self._heartbeat_task = self._heartbeat_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.server.stop()


__all__ = [
    "Heartbeat",
    "Metrics",
    "Operations",
    "OpsServer",
    "Probe",
    "Snapshot",
]
