"""A loopback fake of Discord: the REST routes the bot uses and the gateway websocket.

It speaks real payload shapes, so the real discord.py client runs against it unchanged
(``[discord] api_base_url`` and ``gateway_url`` point at it). It records every request, keeps
every message the bot posts (channel posts, DMs, interaction answers and follow-ups), and can
be told to fail the next matching request (a 429 with Retry-After, a 50007, a 5xx).

Tests drive it like people would: ``command`` runs a slash command, ``press`` clicks a button
on a message, ``submit`` sends a modal, ``dm`` writes to the bot; each returns once the event
is on the gateway, and ``wait_for`` waits until the bot has reacted. Every event goes to each
gateway connection (two instances of one bot both get it), and ``redeliver_last`` repeats the
last one, as Discord may after a resume.

As on Discord, an interaction not answered within 3 seconds is gone: a late first answer gets
404 ``10062 Unknown interaction``. Each recorded request notes when it arrived.

By default it answers every request at once. ``enforce_global_limit`` holds the bot to
Discord's global limit (requests per second per bot token) as Discord does: a request beyond it
gets a 429 with ``"global": true``, a ``Retry-After`` header and ``X-RateLimit-Global`` /
``X-RateLimit-Scope: global``, and interaction answers are exempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

JSON = {"Content-Type": "application/json"}  # exactly: discord.py checks it byte for byte

EPHEMERAL = 1 << 6
LOADING = 1 << 7

# Interaction callback types
PONG, MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE, AUTOCOMPLETE, MODAL = 1, 4, 5, 6, 7, 8, 9

ANSWER_WITHIN = 3.0  # seconds Discord waits for an interaction's first answer


@dataclass
class Recorded:
    """One REST request the bot made."""

    method: str
    path: str  # after the /api/v10 prefix
    body: Any
    query: dict[str, str]
    files: list[tuple[str, bytes]] = field(default_factory=list)
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class Failure:
    method: str
    path: re.Pattern[str]
    status: int
    code: int
    retry_after: float | None
    times: int


@dataclass
class Interaction:
    """An interaction we sent to the bot, and what the bot answered."""

    id: str
    token: str
    type: int
    user_id: str
    channel_id: str
    message_id: str | None = None  # the message a pressed button is on
    responses: list[dict[str, Any]] = field(default_factory=list)  # callback bodies, in order
    original_id: str | None = None  # the message the first answer created
    followups: list[str] = field(default_factory=list)  # message ids
    modal: dict[str, Any] | None = None
    choices: list[dict[str, Any]] | None = None
    created_at: float = field(default_factory=time.monotonic)  # when it went on the gateway


class FakeDiscord:
    """One server (guild) with roles, channels and members, and the bot user in it."""

    def __init__(
        self,
        *,
        application_id: str = "1",
        guild_id: str = "2",
        bot_id: str = "900",
        token: str = "x",
    ) -> None:
        self.application_id = application_id
        self.token = token  # the bot token it accepts
        self.guild_id = guild_id
        self.bot = _user(bot_id, "HeadsUp", bot=True)
        self.users: dict[str, dict[str, Any]] = {}
        self.member_roles: dict[str, list[str]] = {}
        self.roles: dict[str, str] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.dm_channels: dict[str, str] = {}  # user id → DM channel id
        self.messages: dict[str, dict[str, Any]] = {}  # every message the bot posted, by id
        self.scheduled_events: dict[str, dict[str, Any]] = {}  # the server's scheduled events
        self.last_dispatch: tuple[str, dict[str, Any]] | None = None
        self.strangers: set[str] = set()  # users outside the server
        self.requests: list[Recorded] = []
        self.commands: list[dict[str, Any]] = []
        self.interactions: dict[str, Interaction] = {}
        self.dms_closed: set[str] = set()
        self.identifies: list[dict[str, Any]] = []
        self._failures: list[Failure] = []
        self._nonces: dict[tuple[str, str], str] = {}
        self._ids = itertools.count(10_000)
        self._sockets: list[tuple[web.WebSocketResponse, itertools.count]] = []
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()
        self.port = 0
        # The global limit, when enforced: at most `_global_count` requests in any window of
        # `_global_window` seconds; `_served` holds when the requests in the window were served.
        self._global_count = 0
        self._global_window = 1.0
        self._served: deque[float] = deque()
        self.rate_limited = 0  # 429s answered because of the global limit

    # --- set-up ---------------------------------------------------------------------------

    def add_role(self, role_id: str, name: str) -> None:
        self.roles[role_id] = name

    def add_channel(self, channel_id: str, name: str) -> None:
        self.channels[channel_id] = {
            "id": channel_id,
            "type": 0,
            "guild_id": self.guild_id,
            "name": name,
            "position": len(self.channels),
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
        }

    def add_member(self, user_id: str, name: str, roles: list[str] | None = None) -> None:
        self.users[user_id] = _user(user_id, name)
        self.member_roles[user_id] = list(roles or [])

    def add_stranger(self, user_id: str, name: str) -> None:
        """A Discord user who can DM the bot but is not in the server."""
        self.users[user_id] = _user(user_id, name)
        self.strangers.add(user_id)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/gateway", self._gateway)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        for ws, _ in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def fail_next(
        self,
        method: str,
        path: str,
        status: int,
        *,
        code: int = 0,
        retry_after: float | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests matching `method` and the `path` regex with an error
        (a 429 carries `retry_after` as Discord sends it: body, Retry-After header and Via)."""
        self._failures.append(
            Failure(method.upper(), re.compile(path), status, code, retry_after, times)
        )

    def enforce_global_limit(self, per_second: float = 50.0) -> None:
        """Hold the bot to Discord's global limit: at most `per_second` requests in any one
        second (counted over a longer window when it is below one a second). Requests to the
        interaction endpoints are exempt, as on Discord. ``0`` stops enforcing it."""
        if per_second < 0:
            raise ValueError("per_second must be 0 or more")
        self._global_count = max(1, round(per_second)) if per_second else 0
        self._global_window = self._global_count / per_second if per_second else 1.0
        self._served.clear()
        self.rate_limited = 0

    # --- driving the bot ------------------------------------------------------------------

    async def command(
        self, user_id: str, name: str, *subcommand: str, **options: Any
    ) -> Interaction:
        """A slash command `/name [subcommand] option=value…` in the server's first channel."""
        values = [
            {"name": key, "type": 4 if isinstance(v, int) else 3, "value": v}
            for key, v in options.items()
        ]
        if subcommand:
            values = [{"name": subcommand[0], "type": 1, "options": values}]
        command = next((c for c in self.commands if c["name"] == name), None)
        data = {
            "id": command["id"] if command else "1",
            "name": name,
            "type": 1,
            "options": values,
            "guild_id": self.guild_id,
        }
        return await self._interact(2, user_id, self._first_channel(), data)

    async def autocomplete(
        self, user_id: str, name: str, subcommand: str, focused: str, typed: str, **options: Any
    ) -> Interaction:
        values = [{"name": k, "type": 3, "value": v} for k, v in options.items()]
        values.append({"name": focused, "type": 3, "value": typed, "focused": True})
        command = next(c for c in self.commands if c["name"] == name)
        data = {
            "id": command["id"],
            "name": name,
            "type": 1,
            "options": [{"name": subcommand, "type": 1, "options": values}],
            "guild_id": self.guild_id,
        }
        return await self._interact(4, user_id, self._first_channel(), data)

    async def press(self, user_id: str, message: dict[str, Any], label: str) -> Interaction:
        """Click the first button on `message` whose label contains `label`."""
        button = next(
            b
            for row in message.get("components", [])
            for b in row.get("components", [])
            if label.lower() in b.get("label", "").lower()
        )
        return await self.press_custom_id(user_id, message, button["custom_id"])

    async def press_custom_id(
        self, user_id: str, message: dict[str, Any], custom_id: str
    ) -> Interaction:
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._interact(3, user_id, message["channel_id"], data, message=message)

    async def submit(
        self,
        user_id: str,
        interaction: Interaction,
        values: dict[str, str],
    ) -> Interaction:
        """Fill in and submit the modal the bot opened in answer to `interaction`."""
        assert interaction.modal is not None, "the bot opened no form"
        rows = [
            {"type": 1, "components": [{"type": 4, "custom_id": name, "value": value}]}
            for name, value in values.items()
        ]
        data = {"custom_id": interaction.modal["custom_id"], "components": rows}
        message = self.messages.get(interaction.message_id or "")
        return await self._interact(5, user_id, interaction.channel_id, data, message=message)

    async def dm(self, user_id: str, text: str) -> str:
        """A direct message from a member to the bot (MESSAGE_CREATE in their DM channel)."""
        channel_id = self._dm_channel(user_id)["id"]
        message_id = self._id()
        await self.dispatch(
            "MESSAGE_CREATE",
            {
                "id": message_id,
                "channel_id": channel_id,
                "author": self.users[user_id],
                "content": text,
                "timestamp": _now(),
                "edited_timestamp": None,
                "tts": False,
                "mention_everyone": False,
                "mentions": [],
                "mention_roles": [],
                "attachments": [],
                "embeds": [],
                "pinned": False,
                "type": 0,
                "flags": 0,
                "components": [],
            },
        )
        return message_id

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a DISPATCH to every identified gateway connection, as Discord does when one
        bot holds several (two instances of it, unsharded)."""
        open_sockets = [(ws, seq) for ws, seq in self._sockets if not ws.closed]
        assert open_sockets, "no gateway connection"
        self.last_dispatch = (event, data)
        for ws, seq in open_sockets:
            await ws.send_str(json.dumps({"op": 0, "t": event, "s": next(seq), "d": data}))

    async def redeliver_last(self) -> None:
        """Send the last event again, as Discord may after a resume."""
        assert self.last_dispatch is not None, "nothing dispatched yet"
        await self.dispatch(*self.last_dispatch)

    # --- looking at what the bot did -------------------------------------------------------

    async def wait_for(self, check: Callable[[], Any], within: float = 5.0) -> Any:
        """Wait until `check()` returns something truthy (re-checked on every request)."""
        deadline = time.monotonic() + within
        async with self._changed:
            while True:
                found = check()
                if found:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("the fake Discord never saw what the test waited for")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

    async def answered(self, interaction: Interaction, count: int = 1) -> Interaction:
        """Wait until the bot answered `interaction` with `count` callbacks/follow-ups/edits."""
        await self.wait_for(lambda: _answers(interaction) >= count)
        return interaction

    def texts_in(self, channel_id: str) -> list[str]:
        return [m["content"] for m in self.messages.values() if m["channel_id"] == channel_id]

    def dms_to(self, user_id: str) -> list[dict[str, Any]]:
        channel_id = self.dm_channels.get(user_id)
        return [m for m in self.messages.values() if m["channel_id"] == channel_id]

    def replies_to(self, interaction: Interaction) -> list[dict[str, Any]]:
        """The messages the bot answered `interaction` with (its first answer, then follow-ups)."""
        ids = ([interaction.original_id] if interaction.original_id else []) + list(
            interaction.followups
        )
        seen: list[str] = []
        for message_id in ids:
            if message_id not in seen:
                seen.append(message_id)
        return [self.messages[i] for i in seen if i in self.messages]

    def sent(self, method: str, pattern: str) -> list[Recorded]:
        regex = re.compile(pattern)
        return [r for r in self.requests if r.method == method and regex.fullmatch(r.path)]

    # --- the gateway ----------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        seq = itertools.count(1)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            payload = json.loads(msg.data)
            op = payload.get("op")
            if op == 1:  # heartbeat
                await ws.send_str(json.dumps({"op": 11}))
            elif op == 2:  # identify
                self.identifies.append(payload["d"])
                self._sockets.append((ws, seq))
                await self._ready(ws, seq)
            elif op == 6:  # resume: not kept; the client identifies again
                await ws.send_str(json.dumps({"op": 9, "d": False}))
        self._sockets = [(w, s) for w, s in self._sockets if w is not ws]
        return ws

    async def _ready(self, ws: web.WebSocketResponse, seq: itertools.count) -> None:
        ready = {
            "v": 10,
            "user": self.bot,
            "guilds": [{"id": self.guild_id, "unavailable": True}],
            "session_id": f"session-{self._id()}",
            "resume_gateway_url": self.gateway_url,
            "shard": [0, 1],
            "application": {"id": self.application_id, "flags": 0},
        }
        await ws.send_str(json.dumps({"op": 0, "t": "READY", "s": next(seq), "d": ready}))
        await ws.send_str(
            json.dumps({"op": 0, "t": "GUILD_CREATE", "s": next(seq), "d": self._guild()})
        )

    def _guild(self) -> dict[str, Any]:
        roles = [_role(self.guild_id, "@everyone", 0)] + [
            _role(role_id, name, i + 1) for i, (role_id, name) in enumerate(self.roles.items())
        ]
        return {
            "id": self.guild_id,
            "name": "Heads Together",
            "icon": None,
            "owner_id": "1",
            "unavailable": False,
            "member_count": len(self.users) + 1,
            "large": False,
            "roles": roles,
            "emojis": [],
            "stickers": [],
            "features": [],
            "channels": list(self.channels.values()),
            "threads": [],
            "members": [self._member(self.bot["id"])]
            + [self._member(user_id) for user_id in self.users],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "joined_at": _now(),
            "premium_tier": 0,
            "preferred_locale": "en-GB",
            "system_channel_flags": 0,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
        }

    def _member(self, user_id: str) -> dict[str, Any]:
        user = self.bot if user_id == self.bot["id"] else self.users[user_id]
        return {
            "user": user,
            "roles": list(self.member_roles.get(user_id, [])),
            "nick": None,
            "joined_at": _now(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
        }

    # --- REST -----------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/api/v10/"):
            return await handler(request)
        path = request.path[len("/api/v10") :]
        body, files = await _read_body(request)
        self.requests.append(Recorded(request.method, path, body, dict(request.query), files))
        try:
            failure = self._failure_for(request.method, path)
            if failure is not None:
                return failure
            webhook = path.startswith(("/interactions/", "/webhooks/"))
            if not webhook and request.headers.get("Authorization") != f"Bot {self.token}":
                return _error(401, 0, "401: Unauthorized")
            if not webhook:
                limited = self._global_limit()
                if limited is not None:
                    return limited
            return self._rest(request.method, path, body, files)
        finally:
            async with self._changed:
                self._changed.notify_all()

    def _failure_for(self, method: str, path: str) -> web.Response | None:
        for failure in self._failures:
            if failure.method == method and failure.path.fullmatch(path):
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                if failure.status == 429:
                    after = failure.retry_after or 1.0
                    return web.Response(
                        status=429,
                        body=json.dumps(
                            {
                                "message": "You are being rate limited.",
                                "retry_after": after,
                                "global": False,
                            }
                        ).encode(),
                        headers={
                            **JSON,
                            "Retry-After": str(after),
                            "X-RateLimit-Scope": "user",
                            "Via": "1.1 google",
                        },
                    )
                return _error(failure.status, failure.code, "injected failure")
        return None

    def _global_limit(self) -> web.Response | None:
        """A global 429 when this request would exceed the enforced limit; else count it."""
        if not self._global_count:
            return None
        now = time.monotonic()
        while self._served and self._served[0] <= now - self._global_window:
            self._served.popleft()
        if len(self._served) < self._global_count:
            self._served.append(now)
            return None
        self.rate_limited += 1
        after = math.ceil((self._served[0] + self._global_window - now) * 1000) / 1000
        # As Discord answers: the precise wait in the body, whole seconds in Retry-After, and
        # Via (discord.py takes a 429 without it for a Cloudflare ban).
        return web.Response(
            status=429,
            body=json.dumps(
                {"message": "You are being rate limited.", "retry_after": after, "global": True}
            ).encode(),
            headers={
                **JSON,
                "Retry-After": str(math.ceil(after)),
                "X-RateLimit-Global": "true",
                "X-RateLimit-Scope": "global",
                "Via": "1.1 google",
            },
        )

    def _rest(self, method: str, path: str, body: Any, files: list) -> web.Response:
        routes: list[tuple[str, str, Callable[..., web.Response]]] = [
            ("GET", r"/users/@me", lambda: _ok(self.bot)),
            ("GET", r"/oauth2/applications/@me", lambda: _ok(self._application())),
            ("GET", r"/gateway", lambda: _ok({"url": self.gateway_url})),
            ("GET", r"/gateway/bot", lambda: _ok(self._gateway_bot())),
            ("PUT", r"/applications/(\d+)/guilds/(\d+)/commands", self._sync_commands),
            ("GET", r"/applications/(\d+)/guilds/(\d+)/commands", lambda a, g: _ok(self.commands)),
            ("POST", r"/interactions/(\d+)/([^/]+)/callback", self._callback),
            ("POST", r"/webhooks/(\d+)/([^/]+)", self._followup),
            ("PATCH", r"/webhooks/(\d+)/([^/]+)/messages/([^/]+)", self._webhook_edit),
            ("GET", r"/webhooks/(\d+)/([^/]+)/messages/([^/]+)", self._webhook_get),
            ("DELETE", r"/webhooks/(\d+)/([^/]+)/messages/([^/]+)", self._webhook_delete),
            ("POST", r"/channels/(\d+)/messages", self._create_message),
            ("PATCH", r"/channels/(\d+)/messages/(\d+)", self._edit_message),
            ("POST", r"/users/@me/channels", lambda: _ok(self._open_dm(body))),
            ("GET", r"/guilds/(\d+)/members/(\d+)", self._get_member),
            ("POST", r"/guilds/(\d+)/scheduled-events", self._create_event),
            ("GET", r"/guilds/(\d+)/scheduled-events/(\d+)", self._get_event),
            ("PATCH", r"/guilds/(\d+)/scheduled-events/(\d+)", self._edit_event),
        ]
        for route_method, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if route_method == method and match:
                if handler in (
                    self._sync_commands,
                    self._callback,
                    self._followup,
                    self._webhook_edit,
                    self._create_message,
                    self._edit_message,
                    self._create_event,
                    self._edit_event,
                ):
                    return handler(*match.groups(), body=body, files=files)
                return handler(*match.groups())
        return _error(404, 0, "404: Not Found")

    def _application(self) -> dict[str, Any]:
        return {
            "id": self.application_id,
            "name": "HeadsUp",
            "description": "",
            "icon": None,
            "bot_public": False,
            "bot_require_code_grant": False,
            "owner": _user("1", "owner"),
            "team": None,
            "verify_key": "0" * 64,
            "flags": 0,
            "summary": "",
            "rpc_origins": [],
        }

    def _gateway_bot(self) -> dict[str, Any]:
        return {
            "url": self.gateway_url,
            "shards": 1,
            "session_start_limit": {
                "total": 1000,
                "remaining": 999,
                "reset_after": 0,
                "max_concurrency": 1,
            },
        }

    def _sync_commands(self, app_id: str, guild_id: str, *, body: Any, files: Any) -> web.Response:
        if guild_id != self.guild_id:
            return _error(403, 50001, "Missing Access")
        self.commands = [
            {
                **command,
                "id": self._id(),
                "application_id": app_id,
                "guild_id": guild_id,
                "version": "1",
                "type": command.get("type", 1),
                "default_member_permissions": None,
            }
            for command in body
        ]
        return _ok(self.commands)

    def _callback(self, interaction_id: str, token: str, *, body: Any, files: Any) -> web.Response:
        interaction = self.interactions.get(interaction_id)
        if interaction is None or interaction.token != token:
            return _error(404, 10062, "Unknown interaction")
        if time.monotonic() - interaction.created_at > ANSWER_WITHIN:
            # Unanswered for 3 seconds, the interaction is gone: the person saw it fail.
            return _error(404, 10062, "Unknown interaction")
        if interaction.responses:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        interaction.responses.append(body)
        kind, data = body["type"], body.get("data") or {}
        resource: dict[str, Any] = {"type": kind}
        ephemeral = bool(data.get("flags", 0) & EPHEMERAL)
        if kind == MESSAGE:
            message = self._post(interaction.channel_id, data, files, ephemeral=ephemeral)
            interaction.original_id = message["id"]
            resource["message"] = message
        elif kind == DEFERRED_MESSAGE:
            message = self._post(
                interaction.channel_id,
                {"content": "", "flags": data.get("flags", 0) | LOADING},
                [],
                ephemeral=ephemeral,
            )
            interaction.original_id = message["id"]
            resource["message"] = message
        elif kind == UPDATE:
            message = self._edit(interaction.message_id or "", data, files)
            resource["message"] = message
        elif kind == DEFERRED_UPDATE:
            interaction.original_id = interaction.message_id
        elif kind == MODAL:
            interaction.modal = data
        elif kind == AUTOCOMPLETE:
            interaction.choices = data.get("choices", [])
        return _ok(
            {
                "interaction": {
                    "id": interaction_id,
                    "type": interaction.type,
                    "response_message_id": interaction.original_id,
                    "response_message_loading": kind == DEFERRED_MESSAGE,
                    "response_message_ephemeral": ephemeral,
                },
                "resource": resource,
            }
        )

    def _followup(self, app_id: str, token: str, *, body: Any, files: Any) -> web.Response:
        interaction = self._by_token(token)
        if interaction is None:
            return _error(404, 10015, "Unknown Webhook")
        original = self.messages.get(interaction.original_id or "")
        if original is not None and original["flags"] & LOADING:
            # After a "thinking" defer, Discord turns the first follow-up into the answer.
            message = self._edit(original["id"], {**body, "flags": original["flags"] & ~LOADING})
        else:
            ephemeral = bool(body.get("flags", 0) & EPHEMERAL)
            message = self._post(interaction.channel_id, body, files, ephemeral=ephemeral)
            message["webhook_id"] = app_id
        interaction.followups.append(message["id"])
        return _ok(message)

    def _webhook_message_id(self, token: str, message_id: str) -> str | None:
        interaction = self._by_token(token)
        if interaction is None:
            return None
        return interaction.original_id if message_id == "@original" else message_id

    def _webhook_edit(
        self, app_id: str, token: str, message_id: str, *, body: Any, files: Any
    ) -> web.Response:
        target = self._webhook_message_id(token, message_id)
        if target is None or target not in self.messages:
            return _error(404, 10008, "Unknown Message")
        interaction = self._by_token(token)
        assert interaction is not None
        interaction.followups.append(target)
        return _ok(self._edit(target, body, files))

    def _webhook_get(self, app_id: str, token: str, message_id: str) -> web.Response:
        target = self._webhook_message_id(token, message_id)
        if target is None or target not in self.messages:
            return _error(404, 10008, "Unknown Message")
        return _ok(self.messages[target])

    def _webhook_delete(self, app_id: str, token: str, message_id: str) -> web.Response:
        target = self._webhook_message_id(token, message_id)
        self.messages.pop(target or "", None)
        return web.Response(status=204)

    def _create_message(self, channel_id: str, *, body: Any, files: Any) -> web.Response:
        channel = self.channels.get(channel_id)
        if channel is None:
            return _error(404, 10003, "Unknown Channel")
        if channel["type"] == 1 and channel["recipients"][0]["id"] in self.dms_closed:
            return _error(403, 50007, "Cannot send messages to this user")
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            earlier = self._nonces.get((channel_id, str(nonce)))
            if earlier is not None:
                return _ok(self.messages[earlier])
        message = self._post(channel_id, body, files)
        if nonce is not None:
            self._nonces[(channel_id, str(nonce))] = message["id"]
        return _ok(message)

    def _edit_message(self, channel_id: str, message_id: str, *, body: Any, files: Any):
        message = self.messages.get(message_id)
        if message is None or message["channel_id"] != channel_id:
            return _error(404, 10008, "Unknown Message")
        return _ok(self._edit(message_id, body, files))

    def _open_dm(self, body: Any) -> dict[str, Any]:
        return self._dm_channel(str(body["recipient_id"]))

    def _get_member(self, guild_id: str, user_id: str) -> web.Response:
        if guild_id != self.guild_id or user_id not in self.users or user_id in self.strangers:
            return _error(404, 10007, "Unknown Member")
        return _ok(self._member(user_id))

    def _create_event(self, guild_id: str, *, body: Any, files: Any) -> web.Response:
        if guild_id != self.guild_id:
            return _error(404, 10004, "Unknown Guild")
        event = {
            "id": self._id(),
            "guild_id": guild_id,
            "channel_id": None,
            "creator_id": self.bot["id"],
            "creator": self.bot,
            "name": body.get("name"),
            "description": body.get("description"),
            "scheduled_start_time": body.get("scheduled_start_time"),
            "scheduled_end_time": body.get("scheduled_end_time"),
            "privacy_level": body.get("privacy_level"),
            "status": 1,  # scheduled
            "entity_type": body.get("entity_type"),
            "entity_id": None,
            "entity_metadata": body.get("entity_metadata"),
            "user_count": 0,
            "image": None,
        }
        problem = _event_problem(event)
        if problem:
            return _error(400, 50035, problem)
        self.scheduled_events[event["id"]] = event
        return _ok(event)

    def _get_event(self, guild_id: str, event_id: str) -> web.Response:
        event = self.scheduled_events.get(event_id)
        if guild_id != self.guild_id or event is None:
            return _error(404, 10070, "Unknown Guild Scheduled Event")
        return _ok(event)

    def _edit_event(self, guild_id: str, event_id: str, *, body: Any, files: Any):
        event = self.scheduled_events.get(event_id)
        if guild_id != self.guild_id or event is None:
            return _error(404, 10070, "Unknown Guild Scheduled Event")
        if event["status"] in (3, 4):  # completed or cancelled: Discord refuses any change
            return _error(400, 180000, "Cannot modify a finished event")
        changed = {**event, **{k: v for k, v in body.items() if k != "channel_id"}}
        problem = _event_problem(changed)
        if problem:
            return _error(400, 50035, problem)
        event.update(changed)
        return _ok(event)

    # --- helpers --------------------------------------------------------------------------

    def _id(self) -> str:
        return str(next(self._ids))

    def _first_channel(self) -> str:
        """Where commands are typed: a #general channel, made on first use."""
        general = next((c for c, v in self.channels.items() if v.get("name") == "general"), None)
        if general is None:
            general = self._id()
            self.add_channel(general, "general")
        return general

    def _dm_channel(self, user_id: str) -> dict[str, Any]:
        channel_id = self.dm_channels.get(user_id)
        if channel_id is None:
            channel_id = self._id()
            self.dm_channels[user_id] = channel_id
            self.channels[channel_id] = {
                "id": channel_id,
                "type": 1,
                "recipients": [self.users.get(user_id) or _user(user_id, f"user{user_id}")],
                "last_message_id": None,
            }
        return self.channels[channel_id]

    def _by_token(self, token: str) -> Interaction | None:
        return next((i for i in self.interactions.values() if i.token == token), None)

    def _post(
        self, channel_id: str, data: dict[str, Any], files: list, *, ephemeral: bool = False
    ) -> dict[str, Any]:
        message_id = self._id()
        flags = data.get("flags", 0) | (EPHEMERAL if ephemeral else 0)
        message = {
            "id": message_id,
            "channel_id": channel_id,
            "author": self.bot,
            "content": data.get("content") or "",
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": _attachments(files),
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": flags,
            "components": _components(data.get("components") or []),
            "nonce": data.get("nonce"),
            "allowed_mentions": data.get("allowed_mentions"),
        }
        if channel_id in self.channels and self.channels[channel_id]["type"] == 0:
            message["guild_id"] = self.guild_id
        self.messages[message_id] = message
        return message

    def _edit(
        self, message_id: str, data: dict[str, Any], files: list | None = None
    ) -> dict[str, Any]:
        message = self.messages[message_id]
        if "content" in data:
            message["content"] = data["content"] or ""
        if "components" in data:
            message["components"] = _components(data["components"] or [])
        if "attachments" in data or files:
            message["attachments"] = _attachments(files or [])
        if "flags" in data:
            message["flags"] = data["flags"]
        message["allowed_mentions"] = data.get("allowed_mentions")
        message["edited_timestamp"] = _now()
        return message

    async def _interact(
        self,
        kind: int,
        user_id: str,
        channel_id: str,
        data: dict[str, Any],
        *,
        message: dict[str, Any] | None = None,
    ) -> Interaction:
        interaction_id = self._id()
        token = f"token-{interaction_id}"
        interaction = Interaction(
            interaction_id,
            token,
            kind,
            user_id,
            channel_id,
            message_id=message["id"] if message else None,
        )
        self.interactions[interaction_id] = interaction
        payload: dict[str, Any] = {
            "id": interaction_id,
            "application_id": self.application_id,
            "type": kind,
            "data": data,
            "token": token,
            "version": 1,
            "app_permissions": "2248473465835073",
            "locale": "en-GB",
            "entitlements": [],
            "authorizing_integration_owners": {"0": self.guild_id},
            "attachment_size_limit": 10 * 1024 * 1024,
            "channel_id": channel_id,
        }
        channel = self.channels.get(channel_id, {"id": channel_id, "type": 0})
        if channel["type"] == 1:
            payload["user"] = self.users[user_id]
            payload["channel"] = channel
            payload["context"] = 1
        else:
            payload["guild_id"] = self.guild_id
            payload["guild_locale"] = "en-GB"
            payload["channel"] = channel
            payload["member"] = {**self._member(user_id), "permissions": "2248473465835073"}
            payload["context"] = 0
        if message is not None:
            payload["message"] = message
        await self.dispatch("INTERACTION_CREATE", payload)
        return interaction


def _answers(interaction: Interaction) -> int:
    return len(interaction.responses) + len(interaction.followups)


def _user(user_id: str, name: str, *, bot: bool = False) -> dict[str, Any]:
    user: dict[str, Any] = {
        "id": user_id,
        "username": name,
        "global_name": name.capitalize(),
        "discriminator": "0",
        "avatar": None,
        "public_flags": 0,
        "flags": 0,
    }
    if bot:
        user["bot"] = True
    return user


def _role(role_id: str, name: str, position: int) -> dict[str, Any]:
    return {
        "id": role_id,
        "name": name,
        "color": 0,
        "hoist": False,
        "position": position,
        "permissions": "0",
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def _components(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(row, components=[dict(c) for c in row.get("components", [])]) for row in rows]


def _attachments(files: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    return [
        {
            "id": str(i + 1),
            "filename": name,
            "size": len(content),
            "url": f"https://cdn.invalid/{name}",
            "proxy_url": f"https://cdn.invalid/{name}",
            "_content": content.decode("utf-8", "replace"),
        }
        for i, (name, content) in enumerate(files)
    ]


async def _read_body(request: web.Request) -> tuple[Any, list[tuple[str, bytes]]]:
    """JSON, or multipart with payload_json and files (how discord.py sends a file)."""
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        body = json.loads(str(form.get("payload_json") or "{}"))
        files = [
            (value.filename, value.file.read())
            for key, value in form.items()
            if key.startswith("files[") and isinstance(value, web.FileField)
        ]
        return body, files
    text = await request.text()
    return (json.loads(text) if text else None), []


def _event_problem(event: dict[str, Any]) -> str | None:
    """What Discord would refuse in an external scheduled event, if anything."""
    location = (event.get("entity_metadata") or {}).get("location")
    if event.get("entity_type") != 3 or not location:
        return "external events need a location"
    if len(location) > 100:
        return "location longer than 100 characters"
    if not event.get("name") or len(event["name"]) > 100:
        return "name must be 1-100 characters"
    if len(event.get("description") or "") > 1000:
        return "description longer than 1000 characters"
    if not event.get("scheduled_end_time"):
        return "external events need an end time"
    return None


def _ok(data: Any) -> web.Response:
    return web.Response(status=200, body=json.dumps(data).encode(), headers=JSON)


def _error(status: int, code: int, message: str) -> web.Response:
    return web.Response(
        status=status, body=json.dumps({"code": code, "message": message}).encode(), headers=JSON
    )


def _now() -> str:
    return datetime.now(UTC).isoformat()
