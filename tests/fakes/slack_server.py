"""A loopback fake of Slack: the Web API methods the bot calls, response_url posts, file uploads
and the Socket Mode websocket.

It speaks real payload shapes, so the real slack-bolt and slack-sdk code runs against it unchanged
(``[slack] api_base_url`` points at it). It records every Web API call, keeps every message the
bot posts (channel posts, DMs, ephemeral answers, edits) and every file it shares, and can be told
to fail the next matching call (a 429 with Retry-After, or any Slack error).

Tests drive it like people would: ``command`` runs a slash command, ``press`` clicks a button on
a message, ``submit`` sends the modal the bot opened (which stays open, as on Slack, when the bot
answers with ``response_action: errors``), ``dm`` writes to the bot, ``open_home`` opens the App
Home tab. Each comes from the person's own workspace (``add_user(team_id=…)`` for a Slack Connect
user). In HTTP mode each is a request signed exactly as Slack signs them (v0, HMAC-SHA256 of
``v0:{timestamp}:{body}``) posted to the bot's ``/slack/events``; in Socket Mode it is an envelope
on the websocket, and the call returns once the bot has acknowledged it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import WSMsgType, web

TRIGGER_LIFETIME = 3.0  # seconds a trigger_id can open a modal, as on Slack


@dataclass
class Call:
    """One Web API call the bot made."""

    method: str
    args: dict[str, Any]
    token: str


@dataclass
class Failure:
    method: str
    error: str
    status: int
    retry_after: float | None
    times: int


@dataclass
class Interaction:
    """A request we sent to the bot, and what came of it."""

    kind: str
    user_id: str
    channel_id: str | None = None
    status: int | None = None  # the HTTP status of the bot's answer (HTTP mode)
    body: str = ""  # the HTTP body of the bot's answer (HTTP mode)
    ack: dict[str, Any] | None = None  # the acknowledgement's payload (the immediate answer)
    response_url: str | None = None
    trigger_id: str | None = None
    source: dict[str, Any] | None = None  # the message a pressed button is on
    answers: list[dict[str, Any]] = field(default_factory=list)  # messages answering it, in order
    modal: dict[str, Any] | None = None  # the view the bot opened with our trigger_id
    # A submitted modal answered with response_action "errors": block id → the problem shown
    # under that field (the modal stays open).
    errors: dict[str, str] = field(default_factory=dict)
    event_id: str | None = None
    # Set once the acknowledgement is in: Slack shows the acknowledgement's answer before
    # anything the bot then posts to the response_url, whichever of the two reaches us first.
    acked: asyncio.Event = field(default_factory=asyncio.Event)


class FakeSlack:
    """One workspace with channels and members, and the bot user in it."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",
        app_token: str = "xapp-test",
        signing_secret: str = "shhh",
        team_id: str = "T001",
        bot_user_id: str = "UBOT",
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.mode = "socket"  # how events reach the bot: "socket" or "http"
        self.bot_url = ""  # the bot's /slack/events, in HTTP mode
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, str] = {}  # id → name
        self.messages: list[dict[str, Any]] = []  # every message the bot posted, in order
        self.files: list[dict[str, Any]] = []  # every file the bot shared
        self.calls: list[Call] = []
        self.homes: dict[str, dict[str, Any]] = {}  # user → published App Home view
        self.modals: dict[str, dict[str, Any]] = {}  # user → the modal open on their screen
        self.interactions: list[Interaction] = []
        self.hellos = 0
        self._failures: list[Failure] = []
        self._uploads: dict[str, dict[str, Any]] = {}
        self._triggers: dict[str, tuple[float, Interaction]] = {}
        self._responses: dict[str, Interaction] = {}
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._changed = asyncio.Condition()
        self.port = 0

    # --- set-up ---------------------------------------------------------------------------

    def add_user(
        self, user_id: str, name: str, tz: str = "Europe/London", team_id: str | None = None
    ) -> None:
        """A user of the workspace (or, with another `team_id`, a Slack Connect user)."""
        self.users[user_id] = {
            "id": user_id,
            "team_id": team_id or self.team_id,
            "name": name,
            "real_name": name.capitalize(),
            "tz": tz,
            "tz_label": tz,
            "tz_offset": 0,
            "is_bot": False,
            "deleted": False,
            "profile": {"display_name": name, "real_name": name.capitalize()},
        }

    def add_channel(self, channel_id: str, name: str) -> None:
        self.channels[channel_id] = name

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_post("/respond/{token}", self._respond)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def fail_next(
        self,
        method: str,
        error: str = "ratelimited",
        *,
        status: int | None = None,
        retry_after: float | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `method` with `error` (a "ratelimited" one as HTTP 429
        with Retry-After, as Slack sends it; others as HTTP 200 with ok: false)."""
        code = status if status is not None else (429 if error == "ratelimited" else 200)
        self._failures.append(Failure(method, error, code, retry_after, times))

    # --- driving the bot ------------------------------------------------------------------

    async def command(
        self, user_id: str, command: str, text: str = "", *, channel_id: str | None = None
    ) -> Interaction:
        """A slash command typed by `user_id` (in #general unless `channel_id` says otherwise)."""
        channel = channel_id or self._general()
        interaction = self._interaction("command", user_id, channel)
        fields = {
            "token": "verification-token",
            "team_id": self._team(user_id),  # the workspace the person typed it in
            "team_domain": "headstogether",
            "channel_id": channel,
            "channel_name": self.channels.get(channel, "directmessage"),
            "user_id": user_id,
            "user_name": self.users.get(user_id, {}).get("name", user_id),
            "command": command,
            "text": text,
            "api_app_id": "A001",
            "is_enterprise_install": "false",
            "response_url": interaction.response_url,
            "trigger_id": interaction.trigger_id,
        }
        if self.mode == "http":
            await self._post_to_bot(interaction, urlencode(fields), "x-www-form-urlencoded")
        else:
            await self._envelope(interaction, "slash_commands", fields)
        return interaction

    async def press(self, user_id: str, message: dict[str, Any], label: str) -> Interaction:
        """Click the first button on `message` whose label contains `label`."""
        button = _button(message.get("blocks") or [], label)
        in_view = message.get("type") == "home"
        channel = None if in_view else message["channel"]
        interaction = self._interaction("press", user_id, channel, response=not in_view)
        interaction.source = message
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {
                "id": user_id,
                "username": self._name(user_id),
                "team_id": self._team(user_id),
            },
            "api_app_id": "A001",
            "token": "verification-token",
            "trigger_id": interaction.trigger_id,
            "team": {"id": self.team_id, "domain": "headstogether"},
            "enterprise": None,
            "is_enterprise_install": False,
            "state": {"values": {}},
            "actions": [
                {
                    "type": "button",
                    "action_id": button["action_id"],
                    "block_id": "b1",
                    "text": button["text"],
                    "value": button.get("value"),
                    "action_ts": str(time.time()),
                }
            ],
        }
        if in_view:
            payload["container"] = {"type": "view", "view_id": message.get("id", "VHOME")}
            payload["view"] = message
        else:
            ephemeral = message.get("ephemeral_to") is not None
            payload["container"] = {
                "type": "message",
                "message_ts": message["ts"],
                "channel_id": channel,
                "is_ephemeral": ephemeral,
            }
            payload["channel"] = {"id": channel, "name": self.channels.get(channel or "", "dm")}
            payload["response_url"] = interaction.response_url
            if not ephemeral:
                payload["message"] = {k: message[k] for k in ("type", "ts", "text", "blocks")}
        await self._interactive(interaction, payload)
        return interaction

    async def press_home(self, user_id: str, label: str) -> Interaction:
        """Click a button on the App Home tab published for `user_id`."""
        return await self.press(user_id, self.homes[user_id], label)

    async def submit(
        self, user_id: str, opened: Interaction, values: dict[str, str]
    ) -> Interaction:
        """Fill in and submit the modal the bot opened in answer to `opened`."""
        view = opened.modal
        assert view is not None, "the bot opened no modal"
        state: dict[str, Any] = {}
        for block in view.get("blocks", []):
            if block.get("type") != "input":
                continue
            element = block["element"]
            value = values.get(element["action_id"], element.get("initial_value"))
            state[block["block_id"]] = {
                element["action_id"]: {"type": element["type"], "value": value or None}
            }
        interaction = self._interaction("submit", user_id, None, response=False)
        payload = {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": "headstogether"},
            "user": {
                "id": user_id,
                "username": self._name(user_id),
                "team_id": self._team(user_id),
            },
            "api_app_id": "A001",
            "token": "verification-token",
            "trigger_id": interaction.trigger_id,
            "view": {**view, "state": {"values": state}},
            "response_urls": [],
            "is_enterprise_install": False,
        }
        await self._interactive(interaction, payload)
        self._after_submit(interaction, view)
        return interaction

    def _after_submit(self, interaction: Interaction, view: dict[str, Any]) -> None:
        """As Slack does with the answer to a view_submission: "errors" keeps the modal open
        with each problem under its field (an unknown block id is refused); "update" and
        "push" keep a modal open; anything else closes it."""
        ack = interaction.ack or {}
        action = ack.get("response_action")
        if action == "errors":
            inputs = {b.get("block_id") for b in view.get("blocks", []) if b.get("type") == "input"}
            errors = dict(ack.get("errors") or {})
            unknown = set(errors) - inputs
            assert errors and not unknown, f"Slack refuses errors for blocks {unknown or 'none'}"
            interaction.errors = errors
        elif action not in ("update", "push"):
            self.modals.pop(interaction.user_id, None)

    async def dm(
        self,
        user_id: str,
        text: str,
        *,
        thread_ts: str | None = None,
        event_id: str | None = None,
        retry: int = 0,
    ) -> Interaction:
        """A direct message from a member to the bot (a message.im event); `event_id` and `retry`
        resend an earlier one as Slack's retries do."""
        ts = self._ts()
        event: dict[str, Any] = {
            "type": "message",
            "channel": self.dm_channel(user_id),
            "user": user_id,
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "channel_type": "im",
            "team": self._team(user_id),  # the writer's own workspace
            "client_msg_id": str(uuid.uuid4()),
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        return await self.event(user_id, event, event_id=event_id, retry=retry)

    async def open_home(self, user_id: str) -> Interaction:
        """The member opens the bot's App Home tab."""
        ts = self._ts()
        event = {
            "type": "app_home_opened",
            "user": user_id,
            "channel": self.dm_channel(user_id),
            "tab": "home",
            "event_ts": ts,
        }
        return await self.event(user_id, event)

    async def event(
        self, user_id: str, event: dict[str, Any], *, event_id: str | None = None, retry: int = 0
    ) -> Interaction:
        """Any Events API event, wrapped as Slack wraps it."""
        interaction = self._interaction("event", user_id, event.get("channel"), response=False)
        interaction.event_id = event_id or f"Ev{next(self._ids):08d}"
        body = {
            "token": "verification-token",
            "team_id": self.team_id,
            "api_app_id": "A001",
            "event": event,
            "type": "event_callback",
            "event_id": interaction.event_id,
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
        if self.mode == "http":
            headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
            await self._post_to_bot(
                interaction, json.dumps(body), "json", headers=headers if retry else None
            )
        else:
            await self._envelope(interaction, "events_api", body, retry=retry)
        return interaction

    async def post_signed(
        self,
        body: str,
        content_type: str = "application/json",
        *,
        timestamp: int | None = None,
        secret: str | None = None,
        signature: str | None = None,
    ) -> tuple[int, str]:
        """POST a raw body to the bot, signed as Slack signs (or as told), and return its answer."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": signature or self.sign(body, stamp, secret),
        }
        assert self._session is not None and self.bot_url
        async with self._session.post(self.bot_url, data=body.encode(), headers=headers) as r:
            return r.status, await r.text()

    def sign(self, body: str, timestamp: str, secret: str | None = None) -> str:
        """Slack's v0 signature of a request body."""
        base = f"v0:{timestamp}:{body}".encode()
        key = (secret or self.signing_secret).encode()
        return "v0=" + hmac.new(key, base, hashlib.sha256).hexdigest()

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
                    raise AssertionError("the fake Slack never saw what the test waited for")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

    def dm_channel(self, user_id: str) -> str:
        return f"D{user_id}"

    def in_channel(self, channel_id: str) -> list[dict[str, Any]]:
        """Messages everyone in the channel sees (not ephemeral ones)."""
        return [
            m for m in self.messages if m["channel"] == channel_id and m["ephemeral_to"] is None
        ]

    def dms_to(self, user_id: str) -> list[dict[str, Any]]:
        return self.in_channel(self.dm_channel(user_id))

    def ephemerals_to(self, user_id: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["ephemeral_to"] == user_id]

    def sent(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    # --- the Web API ------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _arguments(request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        token = token or str(args.pop("token", ""))
        self.calls.append(Call(method, args, token))
        try:
            failure = self._failure(method)
            if failure is not None:
                headers = {}
                if failure.retry_after is not None:
                    headers["Retry-After"] = str(int(failure.retry_after))
                return _json({"ok": False, "error": failure.error}, failure.status, headers)
            wanted = self.app_token if method == "apps.connections.open" else self.bot_token
            if token != wanted:
                return _json({"ok": False, "error": "invalid_auth"})
            handler = getattr(self, "_" + method.replace(".", "_"), None)
            if handler is None:
                return _json({"ok": False, "error": "unknown_method"}, 404)
            return _json(handler(args))
        finally:
            await self._notify()

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://headstogether.slack.com/",
            "team": "Heads Together",
            "user": "headsup",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": "B001",
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket?ticket={uuid.uuid4()}"}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user")))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": user}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        user = str(args.get("users", ""))
        if user not in self.users:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "channel": {"id": self.dm_channel(user)}}

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(str(args.get("channel", "")))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("text") and not args.get("blocks"):
            return {"ok": False, "error": "no_text"}
        message = self._store(channel, args, via="api")
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": message}

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(str(args.get("channel", "")))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        message = self._store(channel, args, ephemeral_to=str(args.get("user")), via="api")
        return {"ok": True, "message_ts": message["ts"]}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        found = next(
            (
                m
                for m in self.messages
                if m["channel"] == args.get("channel") and m["ts"] == args.get("ts")
            ),
            None,
        )
        if found is None or found["ephemeral_to"] is not None:
            return {"ok": False, "error": "message_not_found"}
        _replace(found, args)
        return {"ok": True, "channel": found["channel"], "ts": found["ts"], "text": found["text"]}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        trigger = self._triggers.get(str(args.get("trigger_id")))
        if trigger is None:
            return {"ok": False, "error": "invalid_trigger_id"}
        made, interaction = trigger
        if time.monotonic() - made > TRIGGER_LIFETIME:
            return {"ok": False, "error": "expired_trigger_id"}
        view = dict(args["view"], id=f"V{next(self._ids):06d}")
        interaction.modal = view
        self.modals[interaction.user_id] = view
        return {"ok": True, "view": view}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        view = dict(args["view"], id=f"V{next(self._ids):06d}")
        self.homes[str(args["user_id"])] = view
        return {"ok": True, "view": view}

    def _files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        file_id = f"F{next(self._ids):06d}"
        self._uploads[file_id] = {
            "id": file_id,
            "filename": args.get("filename"),
            "length": int(args.get("length") or 0),
            "content": None,
        }
        upload_url = f"http://127.0.0.1:{self.port}/upload/{file_id}"
        return {"ok": True, "upload_url": upload_url, "file_id": file_id}

    def _files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        shared = []
        for item in args.get("files") or []:
            upload = self._uploads.get(item.get("id"))
            if upload is None or upload["content"] is None:
                return {"ok": False, "error": "file_not_found"}
            record = {
                **upload,
                "title": item.get("title"),
                "channel": args.get("channel_id"),
                "initial_comment": args.get("initial_comment"),
                "thread_ts": args.get("thread_ts"),
            }
            self.files.append(record)
            shared.append({"id": upload["id"], "title": item.get("title")})
        return {"ok": True, "files": shared}

    async def _upload(self, request: web.Request) -> web.Response:
        upload = self._uploads.get(request.match_info["file_id"])
        if upload is None:
            return web.Response(status=404, text="not found")
        upload["content"] = await request.read()
        await self._notify()
        return web.Response(text=f"OK - {len(upload['content'])}")

    async def _respond(self, request: web.Request) -> web.Response:
        """A post to a response_url: a new ephemeral answer, or a replacement of the message
        the interaction came from."""
        interaction = self._responses.get(request.match_info["token"])
        if interaction is None:
            return web.Response(status=404, text="expired_url")
        body = await request.json()
        await asyncio.wait_for(interaction.acked.wait(), 5.0)
        if body.get("replace_original") and interaction.source is not None:
            _replace(interaction.source, body)
            interaction.answers.append(interaction.source)
        else:
            ephemeral = body.get("response_type", "ephemeral") == "ephemeral"
            channel = interaction.channel_id or self.dm_channel(interaction.user_id)
            message = self._store(
                channel, body, ephemeral_to=interaction.user_id if ephemeral else None, via="url"
            )
            interaction.answers.append(message)
        await self._notify()
        return web.Response(text="ok")

    # --- Socket Mode ------------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        self.hellos += 1
        await ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": len(self._sockets),
                    "debug_info": {"host": "fake", "approximate_connection_time": 3600},
                    "connection_info": {"app_id": "A001"},
                }
            )
        )
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            waiting = self._acks.pop(str(data.get("envelope_id")), None)
            if waiting is not None and not waiting.done():
                waiting.set_result(data.get("payload") or {})
        self._sockets = [s for s in self._sockets if s is not ws]
        return ws

    async def _envelope(
        self, interaction: Interaction, kind: str, payload: dict[str, Any], *, retry: int = 0
    ) -> None:
        assert self._sockets, "the bot has no Socket Mode connection"
        envelope_id = str(uuid.uuid4())
        acked: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[envelope_id] = acked
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
        }
        if kind == "events_api":
            envelope["retry_attempt"] = retry
            envelope["retry_reason"] = "timeout" if retry else ""
        await self._sockets[-1].send_str(json.dumps(envelope))
        self._take_ack(interaction, await asyncio.wait_for(acked, 5.0))

    # --- HTTP mode --------------------------------------------------------------------------

    async def _post_to_bot(
        self,
        interaction: Interaction,
        body: str,
        kind: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        stamp = str(int(time.time()))
        content_type = "application/json" if kind == "json" else f"application/{kind}"
        all_headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": self.sign(body, stamp),
            **(headers or {}),
        }
        assert self._session is not None and self.bot_url, "no bot URL to post to"
        async with self._session.post(self.bot_url, data=body.encode(), headers=all_headers) as r:
            interaction.status = r.status
            interaction.body = await r.text()
        if interaction.body.startswith("{"):
            ack = json.loads(interaction.body)
        elif interaction.body:
            ack = {"text": interaction.body}
        else:
            ack = {}
        self._take_ack(interaction, ack)

    def _take_ack(self, interaction: Interaction, ack: dict[str, Any]) -> None:
        """Record the bot's acknowledgement; a slash command's is its first answer."""
        interaction.ack = ack
        if interaction.kind == "command" and (ack.get("text") or ack.get("blocks")):
            channel = interaction.channel_id or self.dm_channel(interaction.user_id)
            message = self._store(channel, ack, ephemeral_to=interaction.user_id, via="ack")
            interaction.answers.insert(0, message)
        interaction.acked.set()

    async def _interactive(self, interaction: Interaction, payload: dict[str, Any]) -> None:
        if self.mode == "http":
            body = urlencode({"payload": json.dumps(payload)})
            await self._post_to_bot(interaction, body, "x-www-form-urlencoded")
        else:
            await self._envelope(interaction, "interactive", payload)

    # --- helpers --------------------------------------------------------------------------

    def _interaction(
        self, kind: str, user_id: str, channel_id: str | None, *, response: bool = True
    ) -> Interaction:
        interaction = Interaction(kind, user_id, channel_id)
        number = next(self._ids)
        interaction.trigger_id = f"{number}.{self.team_id}.trigger"
        self._triggers[interaction.trigger_id] = (time.monotonic(), interaction)
        if response:
            token = f"R{number:06d}"
            interaction.response_url = f"http://127.0.0.1:{self.port}/respond/{token}"
            self._responses[token] = interaction
        self.interactions.append(interaction)
        return interaction

    def _general(self) -> str:
        general = next((c for c, name in self.channels.items() if name == "general"), None)
        if general is None:
            general = "CGENERAL"
            self.add_channel(general, "general")
        return general

    def _name(self, user_id: str) -> str:
        return str(self.users.get(user_id, {}).get("name", user_id))

    def _team(self, user_id: str) -> str:
        """The person's own workspace (another one for a Slack Connect user)."""
        return str(self.users.get(user_id, {}).get("team_id", self.team_id))

    def _channel(self, channel: str) -> str | None:
        """Where a post goes: a known channel, a DM channel, or a user id (their DM)."""
        if channel in self.channels:
            return channel
        if channel.startswith("D") and channel[1:] in self.users:
            return channel
        if channel in self.users:
            return self.dm_channel(channel)
        return None

    def _ts(self) -> str:
        number = next(self._ids)
        return f"{1767600000 + number}.{number:06d}"

    def _store(
        self,
        channel: str,
        data: dict[str, Any],
        *,
        ephemeral_to: str | None = None,
        via: str,
    ) -> dict[str, Any]:
        message = {
            "type": "message",
            "ts": self._ts(),
            "channel": channel,
            "text": data.get("text") or "",
            "blocks": data.get("blocks") or [],
            "thread_ts": data.get("thread_ts"),
            "ephemeral_to": ephemeral_to,
            "via": via,
            "edits": 0,
            "args": {k: v for k, v in data.items() if k not in ("text", "blocks")},
        }
        self.messages.append(message)
        return message

    def _failure(self, method: str) -> Failure | None:
        for failure in self._failures:
            if failure.method == method and failure.times > 0:
                failure.times -= 1
                return failure
        return None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def _replace(message: dict[str, Any], data: dict[str, Any]) -> None:
    message["text"] = data.get("text") or ""
    message["blocks"] = data.get("blocks") or []
    message["edits"] += 1


def _button(blocks: list[dict[str, Any]], label: str) -> dict[str, Any]:
    for block in blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if label.lower() in element["text"]["text"].lower():
                return element
    raise AssertionError(f"no button like {label!r}")


def buttons(message: dict[str, Any]) -> list[str]:
    """The labels of a posted message's buttons."""
    return [
        element["text"]["text"]
        for block in message.get("blocks", [])
        if block.get("type") == "actions"
        for element in block.get("elements", [])
    ]


def shown_text(message: dict[str, Any]) -> str:
    """What a person reads: the message's section texts (still in Slack's escaped markup)."""
    return "\n".join(
        block["text"]["text"]
        for block in message.get("blocks", [])
        if block.get("type") == "section"
    )


async def _arguments(request: web.Request) -> dict[str, Any]:
    """The call's arguments, from the query, a form or a JSON body (JSON-in-form values too)."""
    args: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        raw = await request.text()
        if request.content_type == "application/json":
            args.update(json.loads(raw or "{}"))
        elif raw:
            args.update(dict(parse_qsl(raw, keep_blank_values=True)))
    for key in ("blocks", "view", "files"):
        value = args.get(key)
        if isinstance(value, str) and re.match(r"\s*[\[{]", value):
            args[key] = json.loads(value)
    return args


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data).encode(),
        headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
    )
