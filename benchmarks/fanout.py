"""The weekly check-in fan-out: how close to the platform's rate limit the prompts go out.

    python benchmarks/fanout.py [--quick] [--members N] [--platform discord|slack] [--cold]
                                [--limit R] [--database-url URL]

10,000 opted-in members (1,000 with ``--quick``) are written straight to the database, each with
their prompt due now. A real App runs with the Discord platform (the real discord.py client)
against the loopback fake Discord, which serves from a thread of its own and enforces Discord's
global limit of 50 requests/s the way Discord does (429, ``"global": true``, ``Retry-After``,
``X-RateLimit-Global``/``X-RateLimit-Scope``), so discord.py waits exactly as in production.

One scheduler tick opens every member's week and queues the prompts; then the outbox worker
starts, as in production, and the figure is the prompts stored by the fake per second, from the
first DM to the last. Duplicates (a member prompted twice) and missed members are counted, and a
second tick must send nothing. Opening the weeks is timed too, but kept apart: its pace is
``benchmarks/checkin_prompts.py``'s figure.

By default every member has had a DM from the bot before (the usual week: the DM channel is
known, one request a prompt). ``--cold`` is a first week ever: each DM channel is opened first
(``POST /users/@me/channels``), two requests a prompt, so the platform bound is half the limit.
Goal: at least 0.9 of that bound, no duplicates, nobody missed. (Below about 1,000 members the
first second's allowance, sent at once, makes the rate from first to last DM read high.)

``--platform slack`` runs the same against the loopback fake Slack (the real slack-bolt and
slack-sdk code, HTTP mode). Slack allows about one message a second per channel (every DM is a
channel of its own, so that never binds a fan-out) plus limits for the whole workspace that it
does not publish: for this benchmark the fake holds ``chat.postMessage`` and
``conversations.open`` together to 50 calls/s workspace-wide (``--limit``), answering beyond it
as Slack does (429, ``"error": "ratelimited"``, ``Retry-After`` in whole seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta

from _common import (
    DISCORD_GLOBAL_LIMIT,
    ServerThread,
    TimedFakeDiscord,
    TimedFakeSlack,
    bench_database,
    discord_settings,
    free_port,
    parser,
    result_line,
    seed_members,
    slack_settings,
)

from bot import logs
from bot.app import App
from bot.clock import Clock

GOAL_RATIO = 0.9
STALL_SECONDS = 60.0  # no new DM for this long: stop waiting and count the rest as missed
DISCORD_USER_BASE = 10**17  # Discord user ids are snowflakes
SLACK_PER_CHANNEL = 1.0  # chat.postMessage: about one message a second per channel


async def fake_platform(
    platform: str, members: int, *, cold: bool, limit: float
) -> tuple[ServerThread, list[str], dict[str, str]]:
    """The fake, enforcing its limits, the members' user ids, and their DM channels if known."""
    if platform == "discord":
        discord = ServerThread(TimedFakeDiscord)
        await discord.start()
        await discord.call(lambda f: f.enforce_global_limit(limit))
        users = [str(DISCORD_USER_BASE + i) for i in range(members)]
        channels = (
            {} if cold else await discord.call(lambda f: {u: f.open_dm_channel(u) for u in users})
        )
        return discord, users, channels
    slack = ServerThread(TimedFakeSlack)
    await slack.start()
    users = [f"U{i:09d}" for i in range(members)]

    def set_up(fake: TimedFakeSlack) -> dict[str, str]:
        fake.enforce_limits(limit, SLACK_PER_CHANNEL)
        for u in users:
            fake.add_user(u, f"head{u}")
        return {} if cold else {u: fake.dm_channel(u) for u in users}

    return slack, users, await slack.call(set_up)


async def measure(members: int, url: str | None, *, platform: str, cold: bool, limit: float):
    server, user_ids, channels = await fake_platform(platform, members, cold=cold, limit=limit)
    fake = server.fake
    try:
        async with bench_database(url) as db:
            now = datetime.now(UTC).replace(second=0, microsecond=0)
            settings = (
                discord_settings(db.url, fake)
                if platform == "discord"
                else slack_settings(db.url, fake, free_port())
            )
            app = App(settings, clock=Clock(), db_schema=db.schema)
            await app.start()
            worker: asyncio.Task | None = None
            try:
                await seed_members(
                    app.database,
                    members,
                    now,
                    platform=platform,
                    user_id=lambda i: user_ids[i],
                    dm_channel=lambda i: channels.get(user_ids[i]),
                    prompt_at=now - timedelta(minutes=1),
                )
                began = time.perf_counter()
                opened = await app.ticker.tick()
                queue_s = time.perf_counter() - began
                limited_before = await server.call(lambda f: f.rate_limited)
                worker = asyncio.create_task(app.delivery.run())
                delivered = await wait_for_dms(server, members)
                again = await app.ticker.tick()
                await asyncio.sleep(1.5)  # a worker poll: anything queued again would go now
                after = await server.call(dm_times)
                limited = await server.call(lambda f: f.rate_limited) - limited_before
            finally:
                if worker is not None:
                    worker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await worker
                await app.stop()
            database = db.label
    finally:
        await server.stop()
    stamps = sorted(t for times in delivered.values() for t in times)
    per_member = {channel: len(times) for channel, times in after.items()}
    duplicates = sum(1 for n in per_member.values() if n > 1)
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    rate = (len(stamps) - 1) / span if span > 0 else 0.0
    return {
        "members": members,
        "opened": opened,
        "queue_seconds": queue_s,
        "delivered": len(stamps),
        "span_seconds": span,
        "rate": rate,
        "duplicates": duplicates,
        "missed": members - len(per_member),
        "second_tick": again + sum(per_member.values()) - len(stamps),
        "rate_limited": limited,
        "database": database,
    }


def dm_times(fake) -> dict[str, list[float]]:
    """When each message was stored, by DM channel (copied on the fake's own loop)."""
    if isinstance(fake, TimedFakeDiscord):
        dms = set(fake.dm_channels.values())
        return {c: list(times) for c, times in fake.stored_at.items() if c in dms}
    return {c: list(times) for c, times in fake.stored_at.items() if c.startswith("D")}


async def wait_for_dms(server: ServerThread, members: int) -> dict[str, list[float]]:
    """Wait until every member has a DM, or nothing new has come for STALL_SECONDS."""
    seen, last_change = -1, time.monotonic()
    while True:
        times = await server.call(dm_times)
        count = len(times)
        if count >= members:
            return times
        if count != seen:
            seen, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > STALL_SECONDS:
            return times
        await asyncio.sleep(0.5)


def main() -> None:
    args = parser(__doc__, "1,000 members instead of 10,000")
    args.add_argument("--members", type=int, default=None)
    args.add_argument("--platform", choices=("discord", "slack"), default="discord")
    args.add_argument("--cold", action="store_true", help="no DM channel known yet (first week)")
    args.add_argument(
        "--limit",
        type=float,
        default=DISCORD_GLOBAL_LIMIT,
        help="requests/s: Discord's global limit, or the workspace limit the fake Slack holds to",
    )
    options = args.parse_args()
    logs.configure("WARNING")
    logging.getLogger("discord").setLevel(logging.ERROR)  # each 429 is counted, not logged
    members = options.members or (1000 if options.quick else 10_000)
    r = asyncio.run(
        measure(
            members,
            options.database_url,
            platform=options.platform,
            cold=options.cold,
            limit=options.limit,
        )
    )
    per_prompt = 2 if options.cold else 1
    bound = options.limit / per_prompt
    ratio = r["rate"] / bound
    print(
        f"{r['members']} members on {options.platform.capitalize()} ({r['database']}, "
        f"{'cold: DM channels opened first' if options.cold else 'DM channels known'}): "
        f"{r['opened']} weeks opened in {r['queue_seconds']:.1f} s "
        f"({r['opened'] / max(r['queue_seconds'], 1e-9):.0f}/s); "
        f"{r['delivered']} prompts delivered in {r['span_seconds']:.1f} s from first to last DM "
        f"= {r['rate']:.1f} prompts/s ({ratio:.2f} of the {bound:.0f}/s bound); "
        f"429s from the fake {r['rate_limited']}; "
        f"duplicates {r['duplicates']}, missed {r['missed']}, "
        f"sent by a second tick {r['second_tick']}"
    )
    print(
        result_line(
            "fanout" if options.platform == "discord" else "fanout_slack",
            round(r["rate"], 1),
            "prompts/s (first to last DM)",
            f">= {GOAL_RATIO} x {bound:.0f}/s, no duplicates, none missed",
            ratio >= GOAL_RATIO
            and r["duplicates"] == 0
            and r["missed"] == 0
            and r["second_tick"] == 0,
            bound,
            round(ratio, 3),
        )
    )


if __name__ == "__main__":
    main()
