"""How long a coach's offer takes when many members ask for support at the same moment.

    python benchmarks/routing_latency.py [--quick] [--requests N] [--coaches N] [--database-url URL]

A real App on the real clock, its outbox worker running in the background as in production, and
a platform that records the moment each message is handed to it. Three coaches are on duty. 50
members (10 with ``--quick``) at once — ``asyncio.gather`` — each type ``/support …`` and press
*Connect me with a coach*. The figure is the p99 from the press to that case's offer reaching
the platform (stored, routed, committed, claimed by the worker and sent). Goal: <= 500 ms.

Runs on a temporary SQLite file, or on PostgreSQL with ``--database-url`` (in a fresh schema,
dropped afterwards).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import statistics
import time

from _common import bench_database, parser, percentile, result_line

from bot import logs
from bot.app import App
from bot.clock import Clock
from bot.core import Actor, Role
from bot.platforms import Pace, SentRef, Target
from bot.ui import Message
from tests.fakes.platform import FakePlatform
from tests.harness import make_settings

GOAL_MS = 500.0
WAIT_SECONDS = 30.0
OFFER = re.compile(r"asking for support: (H-\d+)")
NUMBER = re.compile(r"Your request is (H-\d+)")


class TimingPlatform(FakePlatform):
    """Records when each coach's offer reached it, by case number."""

    name = "console"
    # Several recipients at once, as the real platforms send; no rate limit, so the figure is
    # the bot's own routing and sending (Discord's 50/s would alone spread 50 offers over a
    # second).
    pace = Pace(concurrency=8)

    def __init__(self) -> None:
        super().__init__()
        self.offers: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def send(self, target: Target, message: Message) -> SentRef:
        ref = await super().send(target, message)
        found = OFFER.search(message.text)
        if found:
            self.offers.setdefault(found[1], time.perf_counter())
            self.changed.set()
        return ref


async def ask(app: App, platform: TimingPlatform, i: int) -> dict:
    """One member: `/support …`, then *Connect*; how long each step took."""
    member = Actor("console", f"head{i}", f"Head {i}")
    began = time.perf_counter()
    reply = await app.core.command(member, "support", "It has been a hard week at school.")
    signposted = time.perf_counter()
    connect = next(
        (b.action for m in reply.messages for b in m.buttons if b.action.startswith("support.c")),
        None,
    )
    if connect is None:
        return {"signposting_ms": (signposted - began) * 1000, "error": "no Connect button"}
    pressed_at = time.perf_counter()
    pressed = await app.core.press(member, connect)
    committed = time.perf_counter()
    text = pressed.update.text if pressed.update else " ".join(m.text for m in pressed.messages)
    number = NUMBER.search(text)
    if number is None:
        return {"signposting_ms": (signposted - began) * 1000, "error": text[:80]}
    deadline = time.monotonic() + WAIT_SECONDS
    while number[1] not in platform.offers and time.monotonic() < deadline:
        platform.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(platform.changed.wait(), deadline - time.monotonic())
    offered = platform.offers.get(number[1])
    return {
        "signposting_ms": (signposted - began) * 1000,
        "stored_ms": (committed - pressed_at) * 1000,
        "offer_ms": None if offered is None else (offered - pressed_at) * 1000,
        "error": None if offered is not None else "no offer",
    }


async def measure(requests: int, coaches: int, url: str | None) -> dict:
    async with bench_database(url) as db:
        platform = TimingPlatform()
        app = App(make_settings(db.url), clock=Clock(), platforms=[platform], db_schema=db.schema)
        await app.start()
        worker = asyncio.create_task(app.delivery.run())
        try:
            for c in range(coaches):
                coach = Actor("console", f"coach{c}", f"Coach {c}", frozenset({Role.COACH}))
                await app.core.command(coach, "coach", "on")
            began = time.perf_counter()
            results = await asyncio.gather(*(ask(app, platform, i) for i in range(requests)))
            total = time.perf_counter() - began
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            await app.stop()
        return {"results": results, "seconds": total, "database": db.label}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def p99_or_nan(values: list[float]) -> float:
    return percentile(values, 99) if values else float("nan")


def main() -> None:
    args = parser(__doc__, "10 requests at once instead of 50")
    args.add_argument("--requests", type=int, default=None)
    args.add_argument("--coaches", type=int, default=3)
    options = args.parse_args()
    logs.configure("WARNING")
    requests = options.requests or (10 if options.quick else 50)
    r = asyncio.run(measure(requests, options.coaches, options.database_url))
    offers = [x["offer_ms"] for x in r["results"] if x.get("offer_ms") is not None]
    signposting = [x["signposting_ms"] for x in r["results"]]
    stored = [x["stored_ms"] for x in r["results"] if x.get("stored_ms") is not None]
    errors = [x["error"] for x in r["results"] if x.get("error")]
    p99 = percentile(offers, 99) if offers else float("inf")
    print(
        f"{requests} support requests at once, {options.coaches} coaches on duty "
        f"({r['database']}): Connect → coach's offer sent p50 {median(offers):.1f} ms, "
        f"p99 {p99:.1f} ms, max {max(offers, default=float('nan')):.1f} ms (of which Connect "
        f"answered, case stored and routed: p50 {median(stored):.1f} ms, "
        f"p99 {p99_or_nan(stored):.1f} ms); /support signposting p50 "
        f"{median(signposting):.1f} ms, p99 {p99_or_nan(signposting):.1f} ms; "
        f"all done in {r['seconds']:.2f} s; without an offer: {len(errors)}"
        + (f" ({errors[0]!r})" if errors else "")
    )
    print(
        result_line(
            "routing_latency",
            round(p99, 1),
            f"ms (p99, Connect to offer sent, {requests} at once)",
            f"<= {GOAL_MS:.0f} ms, every request offered",
            p99 <= GOAL_MS and not errors,
            GOAL_MS,
            round(p99 / GOAL_MS, 3),
        )
    )


if __name__ == "__main__":
    main()
