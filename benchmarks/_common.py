"""What the benchmarks share: the command line, the final JSON line, a database of their own,
bulk seeding, the resident memory, and the fake Discord and Slack, timed, on loops of their own.

Every benchmark prints a line for people, then ONE JSON line:
``{"benchmark", "value", "unit", "goal", "meets", "limit", "ratio"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import web
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.config import Settings
from storage.checkin import CheckinSubscription
from storage.db import Database, async_url
from storage.models import Identity, Member
from tests.fakes.discord_server import MESSAGE, MODAL, UPDATE, FakeDiscord
from tests.fakes.slack_server import FakeSlack
from tests.harness import make_settings

T = TypeVar("T")
F = TypeVar("F")

DISCORD_GLOBAL_LIMIT = 50.0  # requests per second per bot token
CHUNK = 2000  # rows per bulk INSERT


# --- the command line and the result ----------------------------------------------------------


def parser(doc: str | None, quick: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--quick`` (what it shortens) and ``--database-url``."""
    found = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    found.add_argument("--quick", action="store_true", help=quick)
    found.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    return found


def result_line(
    benchmark: str,
    value: float,
    unit: str,
    goal: str,
    meets: bool,
    limit: float | None = None,
    ratio: float | None = None,
) -> str:
    """The final JSON line."""
    return json.dumps(
        {
            "benchmark": benchmark,
            "value": value,
            "unit": unit,
            "goal": goal,
            "meets": bool(meets),
            "limit": limit,
            "ratio": ratio,
        }
    )


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile (p in 0–100) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory now (VmRSS), or its peak (``VmHWM``), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


# --- a database of the benchmark's own --------------------------------------------------------


@dataclass(frozen=True)
class BenchDatabase:
    url: str
    schema: str | None  # PostgreSQL: a fresh schema, dropped afterwards

    @property
    def label(self) -> str:
        return "PostgreSQL" if self.schema else "SQLite"


@contextlib.asynccontextmanager
async def bench_database(url: str | None) -> AsyncIterator[BenchDatabase]:
    """A temporary SQLite file, or a fresh schema on the PostgreSQL at `url`, dropped after."""
    if not url or url.startswith("sqlite"):
        with tempfile.TemporaryDirectory() as folder:
            yield BenchDatabase(url or f"sqlite:///{folder}/bench.db", None)
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    engine = create_async_engine(async_url(url))
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield BenchDatabase(url, schema)
        finally:
            async with engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        await engine.dispose()


async def seed_members(
    database: Database,
    count: int,
    now: datetime,
    *,
    platform: str,
    user_id: Callable[[int], str],
    dm_channel: Callable[[int], str | None] = lambda i: None,
    prompt_at: datetime | None = None,
) -> list[int]:
    """`count` members with one identity each, in bulk; opted in to check-ins, with their
    prompt due at `prompt_at`, when given. Returns their member ids, in order."""
    async with database.engine.begin() as conn:
        first = ((await conn.execute(select(func.max(Member.id)))).scalar() or 0) + 1
        ids = list(range(first, first + count))
        for start in range(0, count, CHUNK):
            part = range(start, min(count, start + CHUNK))
            await conn.execute(
                insert(Member),
                [
                    {
                        "id": ids[i],
                        "name": f"Head {i}",
                        "roles": "",
                        "created_at": now,
                        "last_seen_at": now,
                    }
                    for i in part
                ],
            )
            await conn.execute(
                insert(Identity),
                [
                    {
                        "member_id": ids[i],
                        "platform": platform,
                        "user_id": user_id(i),
                        "display_name": f"Head {i}",
                        "dm_channel_id": dm_channel(i),
                    }
                    for i in part
                ],
            )
            if prompt_at is not None:
                await conn.execute(
                    insert(CheckinSubscription),
                    [
                        {
                            "member_id": ids[i],
                            "status": "active",
                            "weekday": prompt_at.weekday(),
                            "time": prompt_at.strftime("%H:%M"),
                            "timezone": "UTC",
                            "next_prompt_at": prompt_at,
                            "consented_at": now,
                            "updated_at": now,
                        }
                        for i in part
                    ],
                )
        if conn.dialect.name == "postgresql":
            # Ids were given explicitly: move the sequence past them, or the next member the
            # bot creates collides with a seeded one.
            await conn.execute(
                text("SELECT setval(pg_get_serial_sequence('member', 'id'), :last)"),
                {"last": ids[-1] if ids else first},
            )
    return ids


# --- the fake Discord, on a loop of its own ---------------------------------------------------


class TimedFakeDiscord(FakeDiscord):
    """The fake Discord, noting the moment (time.perf_counter) each interaction went out on the
    gateway, each interaction answer arrived, and each message was stored."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dispatched_at: dict[str, float] = {}  # interaction id → sent on the gateway
        self.answered_at: dict[str, float] = {}  # interaction id → first callback arrived
        self.completed_at: dict[str, float] = {}  # interaction id → first answer with content
        self.stored_at: dict[str, list[float]] = defaultdict(list)  # channel id → messages

    def open_dm_channel(self, user_id: str) -> str:
        """The DM channel with `user_id`, made now (as if the bot had DMed them before)."""
        return self._dm_channel(user_id)["id"]

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        if event == "INTERACTION_CREATE":
            self.dispatched_at[data["id"]] = time.perf_counter()
        await super().dispatch(event, data)

    def _callback(self, interaction_id: str, token: str, *, body: Any, files: Any):
        now = time.perf_counter()
        self.answered_at.setdefault(interaction_id, now)
        if body.get("type") in (MESSAGE, UPDATE, MODAL):
            self.completed_at.setdefault(interaction_id, now)
        return super()._callback(interaction_id, token, body=body, files=files)

    def _followup(self, app_id: str, token: str, *, body: Any, files: Any):
        self._completed(token)
        return super()._followup(app_id, token, body=body, files=files)

    def _webhook_edit(self, app_id: str, token: str, message_id: str, *, body: Any, files: Any):
        self._completed(token)
        return super()._webhook_edit(app_id, token, message_id, body=body, files=files)

    def _completed(self, token: str) -> None:
        interaction = self._by_token(token)
        if interaction is not None:
            self.completed_at.setdefault(interaction.id, time.perf_counter())

    def _create_message(self, channel_id: str, *, body: Any, files: Any):
        before = len(self.messages)
        response = super()._create_message(channel_id, body=body, files=files)
        if len(self.messages) > before:
            self.stored_at[channel_id].append(time.perf_counter())
        return response


class SlidingWindow:
    """At most `per_second` events in any one second (over a longer window below one a
    second): ``wait`` says how long until there is room; ``take`` counts one."""

    def __init__(self, per_second: float) -> None:
        self.count = max(1, round(per_second))
        self.window = self.count / per_second
        self._times: deque[float] = deque()

    def wait(self, now: float) -> float:
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        return 0.0 if len(self._times) < self.count else self._times[0] + self.window - now

    def take(self, now: float) -> None:
        self._times.append(now)


class _Limited(Exception):
    def __init__(self, wait: float) -> None:
        super().__init__(wait)
        self.wait = wait


class TimedFakeSlack(FakeSlack):
    """The fake Slack, noting the moment each message was stored (by channel), how long each
    request it sent the bot took to be answered (the acknowledgement), and when the answer
    with content came (the acknowledgement itself, or a post to the response_url).

    ``enforce_limits`` holds the calls a fan-out makes (``chat.postMessage`` and
    ``conversations.open``) to a workspace-wide rate and ``chat.postMessage`` to Slack's one
    message a second per channel, answering beyond them as Slack does: HTTP 429,
    ``{"ok": false, "error": "ratelimited"}`` and a ``Retry-After`` in whole seconds."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stored_at: dict[str, list[float]] = defaultdict(list)  # channel → messages
        self.ack_ms: dict[int, float] = {}  # id(interaction) → ms until the bot answered
        self.answer_ms: dict[int, float] = {}  # id(interaction) → ms until content came
        self.rate_limited = 0
        self._sent_at: dict[int, float] = {}
        self._workspace: SlidingWindow | None = None
        self._channel_rate = 0.0
        self._channels: dict[str, SlidingWindow] = {}

    def enforce_limits(self, workspace_per_second: float, per_channel_per_second: float) -> None:
        self._workspace = SlidingWindow(workspace_per_second)
        self._channel_rate = per_channel_per_second
        self._channels.clear()

    async def _api(self, request):  # type: ignore[no-untyped-def]
        try:
            return await super()._api(request)
        except _Limited as limited:
            self.rate_limited += 1
            return web.Response(
                status=429,
                body=json.dumps({"ok": False, "error": "ratelimited"}).encode(),
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "Retry-After": str(max(1, math.ceil(limited.wait))),
                },
            )

    def _hold_to_limits(self, channel: str | None = None) -> None:
        """Count a limited call, or raise _Limited when it would go beyond a limit."""
        if self._workspace is None:
            return
        now = time.monotonic()
        windows = [self._workspace]
        if channel is not None:
            found = self._channels.get(channel)
            if found is None:
                found = self._channels[channel] = SlidingWindow(self._channel_rate)
            windows.append(found)
        wait = max(w.wait(now) for w in windows)
        if wait > 0:
            raise _Limited(wait)
        for window in windows:
            window.take(now)

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        self._hold_to_limits()
        return super()._conversations_open(args)

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        self._hold_to_limits(str(args.get("channel", "")))
        answer = super()._chat_postMessage(args)
        if answer.get("ok"):
            self.stored_at[str(answer["channel"])].append(time.perf_counter())
        return answer

    async def _post_to_bot(self, interaction, body, kind, *, headers=None):  # type: ignore[no-untyped-def]
        began = time.perf_counter()
        self._sent_at[id(interaction)] = began
        await super()._post_to_bot(interaction, body, kind, headers=headers)
        done = time.perf_counter()
        self.ack_ms[id(interaction)] = (done - began) * 1000
        if interaction.ack and (interaction.ack.get("text") or interaction.ack.get("blocks")):
            self.answer_ms.setdefault(id(interaction), (done - began) * 1000)

    async def _respond(self, request):  # type: ignore[no-untyped-def]
        interaction = self._responses.get(request.match_info["token"])
        if interaction is not None and id(interaction) in self._sent_at:
            self.answer_ms.setdefault(
                id(interaction), (time.perf_counter() - self._sent_at[id(interaction)]) * 1000
            )
        return await super()._respond(request)


class ServerThread(Generic[F]):
    """A fake platform serving from its own thread and event loop, as a real server would be
    elsewhere: its work does not queue behind the bot's on one loop. ``call`` runs a function
    (or coroutine function) on the fake's loop and returns its result."""

    def __init__(self, make: Callable[[], F]) -> None:
        self._make = make
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.fake: F | None = None

    async def start(self) -> F:
        self._thread.start()

        async def make() -> F:
            fake = self._make()
            await fake.start()  # type: ignore[attr-defined]
            return fake

        self.fake = await self._run(make())
        return self.fake

    async def call(self, work: Callable[[F], Awaitable[T] | T]) -> T:
        assert self.fake is not None
        fake = self.fake

        async def run() -> T:
            result = work(fake)
            if asyncio.iscoroutine(result):
                return await result
            return result  # type: ignore[return-value]

        return await self._run(run())

    async def stop(self) -> None:
        if self.fake is not None:
            await self._run(self.fake.close())  # type: ignore[attr-defined]
            self.fake = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    async def _run(self, coroutine: Awaitable[T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)  # type: ignore[arg-type]
        return await asyncio.wrap_future(future)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def slack_settings(url: str, fake: FakeSlack, http_port: int) -> Settings:
    """Settings for a bot on the fake Slack only (no console), in HTTP mode on `http_port`."""
    return make_settings(
        url,
        slack={
            "bot_token": fake.bot_token,
            "signing_secret": fake.signing_secret,
            "mode": "http",
            "http_port": http_port,
            "api_base_url": fake.api_url,
        },
    )


def discord_settings(url: str, fake: FakeDiscord, **discord: str) -> Settings:
    """Settings for a bot on the fake Discord only (no console)."""
    return make_settings(
        url,
        discord={
            "token": "x",
            "application_id": fake.application_id,
            "guild_id": fake.guild_id,
            "api_base_url": fake.base_url,
            "gateway_url": fake.gateway_url,
            **discord,
        },
    )
