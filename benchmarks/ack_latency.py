"""How fast the bot acknowledges slash commands when many arrive at once.

    python benchmarks/ack_latency.py [--quick] [--commands N] [--command WORDS]
                                     [--platform discord|slack] [--database-url URL]

On Discord: the loopback fake Discord, serving from a thread of its own, sends 200 slash commands
(``/checkin history`` from 200 different members; 50 with ``--quick``) as INTERACTION_CREATE on
the gateway at once. A real App answers them through the Discord platform (the real discord.py
client). The figure is the p99 from each interaction going out on the gateway to the bot's first
answer (the interaction callback) arriving at the fake: what Discord holds to its 3-second limit,
and what the person waits for before anything shows. The time to the answer with content (the
same callback, unless the bot deferred first) is shown too.

For comparison, in the same run and against the same fake: a bare discord.py client that answers
every interaction with ``interaction.response.send_message("ok")`` and does nothing else.

``--platform slack``: the fake Slack posts the same commands to the bot's ``/slack/events`` at
once, signed as Slack signs them (slack-bolt in HTTP mode); the figure is the p99 until the bot's
HTTP answer (the acknowledgement) comes back. The bare comparison is a slack-bolt app that acks
every command with "ok".

Each side first runs one round unmeasured (members are created on first contact, code paths warm
up), then the measured round. Goal: p99 <= 100 ms, and within 1.5x of the bare client's p99.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import statistics
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import discord
import yarl
from _common import (
    ServerThread,
    TimedFakeDiscord,
    TimedFakeSlack,
    bench_database,
    discord_settings,
    free_port,
    parser,
    percentile,
    slack_settings,
)
from _common import result_line as json_line
from aiohttp import web
from discord.gateway import DiscordWebSocket
from discord.http import Route
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.app.async_server import AsyncSlackAppServer
from slack_sdk.web.async_client import AsyncWebClient

from bot import logs
from bot.app import App
from bot.clock import Clock

GOAL_MS = 100.0
GOAL_FACTOR = 1.5
PLATFORM_LIMIT_MS = 3000.0  # Discord and Slack both give up on an unacknowledged interaction
WAIT_SECONDS = 60.0
DISCORD_USER_BASE = 2 * 10**17

Burst = Callable[[ServerThread, list[str], list[str]], Any]


# --- Discord --------------------------------------------------------------------------------


class BareClient(discord.Client):
    """The least a discord.py bot can do: answer every interaction with "ok"."""

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("ok")


async def discord_burst(
    server: ServerThread, users: list[str], words: list[str]
) -> tuple[list[float], list[float]]:
    """Every user runs the command at once. The ms from sending each to its first answer (the
    acknowledgement), and to the answer with content (the same one, unless deferred)."""

    async def send_all(fake: TimedFakeDiscord) -> list[str]:
        group, *sub = words
        made = await asyncio.gather(*(fake.command(u, group, *sub) for u in users))
        return [i.id for i in made]

    ids = await server.call(send_all)
    await until(server, lambda f: sum(1 for i in ids if i in f.completed_at) == len(ids))

    def since_sent(moments: dict[str, float], sent: dict[str, float]) -> list[float]:
        return [(moments[i] - sent[i]) * 1000 for i in ids if i in moments]

    return await server.call(
        lambda f: (
            since_sent(f.answered_at, f.dispatched_at),
            since_sent(f.completed_at, f.dispatched_at),
        )
    )


@contextlib.asynccontextmanager
async def discord_bot(server: ServerThread, url: str | None) -> AsyncIterator[str]:
    async with bench_database(url) as db:
        app = App(discord_settings(db.url, server.fake), clock=Clock(), db_schema=db.schema)
        async with running(app):
            # Up a moment, as in production: discord.py's READY comes ~2 s after the server.
            platform = app.platforms["discord"]
            await asyncio.wait_for(platform.client.wait_until_ready(), 30)  # type: ignore[attr-defined]
            yield db.label


@contextlib.asynccontextmanager
async def discord_bare(server: ServerThread) -> AsyncIterator[None]:
    fake = server.fake
    Route.BASE = fake.base_url
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    intents = discord.Intents.none()
    intents.guilds = True
    client = BareClient(intents=intents, application_id=int(fake.application_id))
    await client.login("x")
    gateway = asyncio.create_task(client.connect(reconnect=False))
    try:
        await asyncio.wait_for(client.wait_until_ready(), 30)
        yield
    finally:
        await client.close()
        gateway.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await gateway


async def discord_fake(count: int) -> tuple[ServerThread, list[str]]:
    server = ServerThread(TimedFakeDiscord)
    await server.start()
    users = [str(DISCORD_USER_BASE + i) for i in range(count)]
    await server.call(lambda f: [f.add_member(u, f"head{i}") for i, u in enumerate(users)])
    return server, users


# --- Slack ----------------------------------------------------------------------------------


async def slack_burst(
    server: ServerThread, users: list[str], words: list[str]
) -> tuple[list[float], list[float]]:
    """Every user runs the command at once. The ms until the bot's HTTP answer (the
    acknowledgement), and until the answer with content (in the ack, or on the response_url)."""
    command, text = "/" + words[0], " ".join(words[1:])

    async def send_all(fake: TimedFakeSlack) -> list[int]:
        made = await asyncio.gather(*(fake.command(u, command, text) for u in users))
        return [id(i) for i in made]

    keys = await server.call(send_all)
    await until(server, lambda f: sum(1 for k in keys if k in f.answer_ms) == len(keys))
    return await server.call(
        lambda f: (
            [f.ack_ms[k] for k in keys if k in f.ack_ms],
            [f.answer_ms[k] for k in keys if k in f.answer_ms],
        )
    )


@contextlib.asynccontextmanager
async def slack_bot(server: ServerThread, url: str | None) -> AsyncIterator[str]:
    port = free_port()
    await server.call(lambda f: setattr(f, "bot_url", f"http://127.0.0.1:{port}/slack/events"))
    async with bench_database(url) as db:
        app = App(slack_settings(db.url, server.fake, port), clock=Clock(), db_schema=db.schema)
        async with running(app):
            yield db.label


@contextlib.asynccontextmanager
async def slack_bare(server: ServerThread) -> AsyncIterator[None]:
    fake = server.fake
    bolt = AsyncApp(
        signing_secret=fake.signing_secret,
        client=AsyncWebClient(token=fake.bot_token, base_url=fake.api_url),
    )

    @bolt.command(re.compile(".*"))
    async def answer(ack: Any) -> None:
        await ack("ok")

    runner = web.AppRunner(AsyncSlackAppServer(0, "/slack/events", bolt).web_app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await server.call(lambda f: setattr(f, "bot_url", f"http://127.0.0.1:{port}/slack/events"))
    try:
        yield
    finally:
        await runner.cleanup()


async def slack_fake(count: int) -> tuple[ServerThread, list[str]]:
    server = ServerThread(TimedFakeSlack)
    await server.start()
    users = [f"U{i:09d}" for i in range(count)]

    def set_up(fake: TimedFakeSlack) -> None:
        fake.mode = "http"
        for u in users:
            fake.add_user(u, f"head{u}")

    await server.call(set_up)
    return server, users


# --- both -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(app: App) -> AsyncIterator[None]:
    """The app started, its outbox worker running, as in production."""
    await app.start()
    worker = asyncio.create_task(app.delivery.run())
    try:
        yield
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await app.stop()


async def until(server: ServerThread, done: Callable[[Any], bool]) -> None:
    """Look every 50 ms until `done(fake)`, for at most WAIT_SECONDS."""
    for _ in range(int(WAIT_SECONDS / 0.05)):
        if await server.call(done):
            return
        await asyncio.sleep(0.05)


async def two_rounds(burst: Burst, server: ServerThread, users: list[str], words: list[str]):
    await burst(server, users, words)  # unmeasured: first contact, warm-up
    began = time.perf_counter()
    acks, answers = await burst(server, users, words)
    return {
        "acks": acks,
        "answers": answers,
        "missing": len(users) - min(len(acks), len(answers)),
        "seconds": time.perf_counter() - began,
    }


async def measure(platform: str, count: int, url: str | None, words: list[str]) -> dict:
    if platform == "discord":
        server, users = await discord_fake(count)
        burst, bot, bare = discord_burst, discord_bot, discord_bare
    else:
        server, users = await slack_fake(count)
        burst, bot, bare = slack_burst, slack_bot, slack_bare
    result: dict = {}
    try:
        async with bot(server, url) as database:
            result["database"] = database
            result["bot"] = await two_rounds(burst, server, users, words)
        async with bare(server):
            result["bare"] = await two_rounds(burst, server, users, words)
    finally:
        await server.stop()
    return result


def main() -> None:
    args = parser(__doc__, "50 commands at once instead of 200")
    args.add_argument("--commands", type=int, default=None)
    args.add_argument("--command", default="checkin history", help="e.g. 'events'")
    args.add_argument("--platform", choices=("discord", "slack"), default="discord")
    options = args.parse_args()
    logs.configure("WARNING")
    logging.getLogger("discord").setLevel(logging.ERROR)
    count = options.commands or (50 if options.quick else 200)
    words = options.command.split()
    r = asyncio.run(measure(options.platform, count, options.database_url, words))
    bot, bare = r["bot"], r["bare"]
    bot_p99 = percentile(bot["acks"], 99) if bot["acks"] else float("inf")
    bare_p99 = percentile(bare["acks"], 99) if bare["acks"] else float("inf")
    factor = bot_p99 / bare_p99 if bare_p99 else float("inf")
    missing = bot["missing"] + bare["missing"]
    library = "discord.py" if options.platform == "discord" else "slack-bolt"
    print(
        f"{count} × /{options.command} at once on {options.platform.capitalize()} "
        f"({r['database']}): acknowledged p50 {statistics.median(bot['acks']):.1f} ms, "
        f"p99 {bot_p99:.1f} ms; full answer p50 {statistics.median(bot['answers']):.1f} ms, "
        f"p99 {percentile(bot['answers'], 99):.1f} ms; all answered in {bot['seconds']:.2f} s "
        f"({count / bot['seconds']:.0f} commands/s). Bare {library}: p50 "
        f"{statistics.median(bare['acks']):.1f} ms, p99 {bare_p99:.1f} ms. "
        f"Bot/bare p99 {factor:.2f}x; acknowledged after {PLATFORM_LIMIT_MS / 1000:.0f} s "
        f"(the platforms' limit): {sum(1 for a in bot['acks'] if a > PLATFORM_LIMIT_MS)}; "
        f"unanswered: bot {bot['missing']}, bare {bare['missing']}"
    )
    print(
        json_line(
            "ack_latency" if options.platform == "discord" else "ack_latency_slack",
            round(bot_p99, 1),
            f"ms (p99, {count} concurrent slash commands to the acknowledgement)",
            f"<= {GOAL_MS:.0f} ms and <= {GOAL_FACTOR}x bare {library} "
            f"(bare p99 {bare_p99:.1f} ms, factor {factor:.2f})",
            bot_p99 <= GOAL_MS and factor <= GOAL_FACTOR and missing == 0,
            GOAL_MS,
            round(bot_p99 / GOAL_MS, 3),
        )
    )


if __name__ == "__main__":
    main()
