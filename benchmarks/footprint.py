"""The running bot's memory, and the yearly report's time, with a year of data for 10,000 members.

    python benchmarks/footprint.py [--quick] [--members N] [--database-url URL]

10,000 members (1,000 with ``--quick``), each opted in to check-ins with 52 weeks of answers
behind them (about 90% answered, 5% skipped, 5% unanswered), are written in bulk with plain SQL
INSERTs. Then, in a fresh process so that the seeding's own memory is not counted, the bot
starts (a real App on the same database, with a platform that only records) and runs what is
due; its resident memory (VmRSS from /proc/self/status) is read after the start, and again after
a coordinator's ``/checkin report 52`` — which reads every answer of the year. The report is run
three times; the first (coldest) run is the figure. Goals: the report within 1 s, and the bot
within 200 MB all along: its peak (VmHWM), which includes the reports, is what is held to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta

from _common import CHUNK, bench_database, parser, result_line, rss_mb, seed_members
from sqlalchemy import insert

from bot import logs
from bot.app import App
from bot.clock import Clock
from bot.core import Actor, Role
from storage.checkin import CheckinWeek
from storage.db import Database, sqlite_path
from tests.fakes.platform import FakePlatform
from tests.harness import make_settings

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday morning
FIRST_PROMPT = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
WEEKS = 52
REPORT_GOAL_S = 1.0
RSS_GOAL_MB = 200.0


class RecordingPlatform(FakePlatform):
    """Takes the console's place: records what it is given, prints nothing."""

    name = "console"


async def seed(url: str, schema: str | None, members: int) -> dict:
    """Members, identities, subscriptions and a year of weeks, in bulk."""
    database = Database(url, schema=schema)
    began = time.perf_counter()
    try:
        await database.upgrade()
        ids = await seed_members(
            database,
            members,
            NOW - timedelta(weeks=WEEKS + 1),
            platform="console",
            user_id=lambda i: f"head{i}",
            prompt_at=FIRST_PROMPT + timedelta(weeks=1),
        )
        pick = random.Random(52)
        rows: list[dict] = []
        weeks = 0
        async with database.engine.begin() as conn:
            for member_id in ids:
                for k in range(WEEKS):
                    opens = FIRST_PROMPT - timedelta(weeks=k)
                    roll = pick.random()
                    answered = roll < 0.9
                    rows.append(
                        {
                            "member_id": member_id,
                            "opens_at": opens,
                            "closes_at": opens + timedelta(weeks=1),
                            "prompted_at": opens,
                            "score": pick.randint(1, 5) if answered else None,
                            "skipped": 0.9 <= roll < 0.95,
                            "answered_at": opens + timedelta(hours=2) if roll < 0.95 else None,
                        }
                    )
                if len(rows) >= CHUNK * 5:
                    await conn.execute(insert(CheckinWeek), rows)
                    weeks += len(rows)
                    rows.clear()
            if rows:
                await conn.execute(insert(CheckinWeek), rows)
                weeks += len(rows)
    finally:
        await database.close()
    return {"weeks": weeks, "seed_seconds": time.perf_counter() - began}


async def run_bot(url: str, schema: str | None) -> dict:
    """In the measuring process: start the bot, read its memory, time the report."""
    imported = rss_mb()
    app = App(
        make_settings(url),
        clock=Clock.frozen(NOW),
        platforms=[RecordingPlatform()],
        db_schema=schema,
    )
    await app.start()
    await app.settle()
    started = rss_mb()
    coordinator = Actor("console", "coordinator", "Coordinator", frozenset({Role.COORDINATOR}))
    times: list[float] = []
    text = ""
    try:
        for _ in range(3):
            began = time.perf_counter()
            reply = await app.core.command(coordinator, "checkin", "report 52")
            times.append(time.perf_counter() - began)
            text = reply.messages[0].text if reply.messages else ""
    finally:
        after = rss_mb()
        await app.stop()
    peak = rss_mb("VmHWM")
    return {
        "imported_mb": imported,
        "started_mb": started,
        "after_report_mb": after,
        "peak_mb": peak,
        "report_seconds": times,
        "report_ok": text.startswith("Check-in totals") and "answers —" in text,
    }


async def measure(members: int, url: str | None) -> dict:
    async with bench_database(url) as db:
        seeded = await seed(db.url, db.schema, members)
        command = [sys.executable, __file__, "--measure", db.url]
        if db.schema:
            command += ["--schema", db.schema]
        child = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await child.communicate()
        if child.returncode != 0:
            raise SystemExit(f"the measuring process failed:\n{err.decode()[-2000:]}")
        measured = json.loads(out.decode().strip().splitlines()[-1])
        path = sqlite_path(db.url)
        size = path.stat().st_size / 2**20 if path is not None and path.exists() else None
        return {**seeded, **measured, "database": db.label, "file_mb": size}


def main() -> None:
    args = parser(__doc__, "1,000 members instead of 10,000")
    args.add_argument("--members", type=int, default=None)
    args.add_argument("--measure", metavar="URL", help=argparse.SUPPRESS)
    args.add_argument("--schema", default=None, help=argparse.SUPPRESS)
    options = args.parse_args()
    logs.configure("WARNING")
    if options.measure:
        print(json.dumps(asyncio.run(run_bot(options.measure, options.schema))))
        return
    members = options.members or (1000 if options.quick else 10_000)
    r = asyncio.run(measure(members, options.database_url))
    first, *rest = r["report_seconds"]
    rss = r["peak_mb"]
    size = f", database file {r['file_mb']:.0f} MB" if r["file_mb"] is not None else ""
    print(
        f"{members} members, {r['weeks']:,} check-in weeks ({r['database']}{size}; seeded in "
        f"{r['seed_seconds']:.1f} s): /checkin report 52 took {first:.3f} s "
        f"(then {', '.join(f'{t:.3f}' for t in rest)} s); resident memory "
        f"{r['imported_mb']:.0f} MB once imported, {r['started_mb']:.0f} MB started, "
        f"{r['after_report_mb']:.0f} MB after the reports (peak {r['peak_mb']:.0f} MB); "
        f"report as expected: {r['report_ok']}"
    )
    print(
        result_line(
            "footprint",
            round(first, 3),
            f"s (/checkin report 52 over {r['weeks']:,} weeks)",
            f"report <= {REPORT_GOAL_S:.0f} s and peak RSS <= {RSS_GOAL_MB:.0f} MB "
            f"(peak {rss:.0f} MB)",
            first <= REPORT_GOAL_S and rss <= RSS_GOAL_MB and r["report_ok"],
            REPORT_GOAL_S,
            round(first / REPORT_GOAL_S, 3),
        )
    )


if __name__ == "__main__":
    main()
