"""Run the whole bot in a process of its own, as `headsup run` does, for tests that kill it.

    python -m tests.fakes.bot_process

Settings come from the environment (`HEADSUP_<SECTION>__<KEY>`), plus two test knobs:
`HEADSUP_TEST_SCHEMA` (the PostgreSQL schema of the test database) and
`HEADSUP_TEST_LEASE_SECONDS` (a short delivery lease, so a killed worker's rows come back fast).
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta

import bot.delivery
from bot import logs
from bot.app import App
from bot.config import Settings


def main() -> None:
    logs.configure("INFO", json=True)
    lease = os.environ.get("HEADSUP_TEST_LEASE_SECONDS")
    if lease:
        bot.delivery.LEASE = timedelta(seconds=float(lease))
    app = App(Settings(), db_schema=os.environ.get("HEADSUP_TEST_SCHEMA") or None)
    asyncio.run(app.serve())


if __name__ == "__main__":
    main()
