"""How fast the weekly check-in prompts are opened and delivered, for N opted-in members.

    python benchmarks/checkin_prompts.py [--quick] [--members N] [--database-url URL]

Members are written straight to the database; then one scheduler tick opens every member's week
(claim + week row + outbox row, one transaction each) and the delivery worker sends them through a
platform that only records. Prints the figures and one JSON line. The goal is that the core keeps
well ahead of Discord's 50 requests/s global limit, so the platform, not the bot, sets the pace.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot import logs
from bot.app import App
from bot.clock import Clock
from storage.checkin import CheckinSubscription
from storage.models import Identity, Member
from tests.fakes.platform import FakePlatform
from tests.harness import make_settings

DISCORD_GLOBAL_LIMIT = 50.0  # requests per second
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
FIRST_PROMPT = datetime(2026, 1, 12, 8, 0, tzinfo=UTC)


class CountingPlatform(FakePlatform):
    """Accepts every message at once, recording it."""

    name = "console"


async def seed(app: App, members: int) -> None:
    async with app.database.session() as session:
        for i in range(members):
            member = Member(name=f"head{i}", created_at=START, last_seen_at=START)
            session.add(member)
            await session.flush()
            session.add(Identity(member_id=member.id, platform="console", user_id=f"head{i}"))
            session.add(
                CheckinSubscription(
                    member_id=member.id,
                    weekday=0,
                    time="08:00",
                    timezone="Europe/London",
                    next_prompt_at=FIRST_PROMPT,
                    consented_at=START,
                    updated_at=START,
                )
            )
        await session.commit()


async def measure(members: int, url: str | None) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        database_url = url or f"sqlite:///{folder}/bench.db"
        platform = CountingPlatform()
        clock = Clock.frozen(START)
        app = App(make_settings(database_url), clock=clock, platforms=[platform])
        await app.start()
        try:
            await seed(app, members)
            clock.advance(FIRST_PROMPT - START + timedelta(minutes=1))
            began = time.perf_counter()
            opened = await app.ticker.tick()
            queued_s = time.perf_counter() - began
            began = time.perf_counter()
            delivered = await app.delivery.drain()
            delivered_s = time.perf_counter() - began
            again = await app.ticker.tick() + await app.delivery.drain()
        finally:
            await app.stop()
    per_member = Counter(target.recipient for target, _ in platform.sent)
    duplicates = sum(1 for n in per_member.values() if n > 1)
    missed = members - len(per_member)
    rate = members / (queued_s + delivered_s)
    return {
        "members": members,
        "opened": opened,
        "delivered": delivered,
        "queue_seconds": round(queued_s, 2),
        "deliver_seconds": round(delivered_s, 2),
        "duplicates": duplicates,
        "missed": missed,
        "second_tick_sent": again,
        "rate": rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 members instead of 2,000")
    parser.add_argument("--members", type=int, default=None)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()
    logs.configure("WARNING")
    members = args.members or (200 if args.quick else 2000)
    result = asyncio.run(measure(members, args.database_url))
    print(
        f"{result['members']} members: prompts queued in {result['queue_seconds']} s, "
        f"delivered in {result['deliver_seconds']} s ({result['rate']:.0f} prompts/s end to end); "
        f"duplicates {result['duplicates']}, missed {result['missed']}, "
        f"sent by a second tick {result['second_tick_sent']}"
    )
    ratio = result["rate"] / DISCORD_GLOBAL_LIMIT
    print(
        json.dumps(
            {
                "benchmark": "checkin_prompts",
                "value": round(result["rate"], 1),
                "unit": "prompts/s",
                "goal": f">= {DISCORD_GLOBAL_LIMIT:.0f} (the platform sets the pace)",
                "meets": result["rate"] >= DISCORD_GLOBAL_LIMIT
                and result["duplicates"] == 0
                and result["missed"] == 0,
                "limit": DISCORD_GLOBAL_LIMIT,
                "ratio": round(ratio, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
