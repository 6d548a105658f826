"""The Slack platform, on slack-bolt's ``AsyncApp``: slash commands, Block Kit buttons, modals,
direct messages and an App Home tab.

It only translates. A slash command becomes ``core.command`` (the core parses the text), a button
press ``core.press``, a submitted modal ``core.submit``, a DM to the bot ``core.message``; the
``Reply`` comes back as ephemeral answers, an update of the message the button is on, or a modal.
The outbox worker delivers everything else through ``send`` and ``edit``.

Socket Mode (``slack.app_token``) is the default; ``slack.mode = "http"`` serves
``POST /slack/events`` on ``slack.http_port`` instead, so several instances can run behind a load
balancer. Platform quirks that shaped this file:

- Every request must be acknowledged within 3 seconds. A command whose answer is ready within
  ``ACK_WITHIN`` is answered in the acknowledgement itself; otherwise it is acknowledged empty and
  answered through its ``response_url``. A command with a preface (``/support``'s signposting) is
  acknowledged with the preface at once, before the core runs. Buttons and forms are acknowledged
  first and worked after.
- A modal must be opened with the request's ``trigger_id`` within 3 seconds of the click.
- A button's ``value`` is the neutral action id and a modal's ``private_metadata`` carries the
  form's action, so nothing is kept in memory per message: buttons and forms work after a restart.
- Slack resends an event it thinks went unanswered (``X-Slack-Retry-Num``, the same ``event_id``),
  possibly to another instance: event ids are recorded in the database and a repeat is ignored.
- Text is escaped (``&``, ``<``, ``>``) everywhere it is rendered and ``link_names`` is never set,
  so nothing a person typed can become ``<!here>``, ``<!channel>``, a user or group mention.
  Incoming text arrives in Slack's own markup and is turned back into plain words first.
- An ephemeral message cannot carry a file: a private calendar file goes to the person's DM.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog
import yaml
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.config import ConfigError, SlackConfig
from bot.core import Actor, Registry, Role, split_words
from bot.errors import UserError
from bot.platforms import DeliveryError, Pace, Platform, SentRef, Target
from bot.text import Moment, render_moments
from bot.ui import Attachment, Channel, Form, Message, Reply, Style

if TYPE_CHECKING:
    from bot.core import Core

log = structlog.get_logger("headsup.slack")

# bolt and slack-sdk log through the standard library; keep them apart from the bot's own logs.
# Their warnings name event types and ids; every event type we subscribe to has a listener, so
# none of them ever logs a request body. Below WARNING they log every request and answer whole
# (message text, user ids), so they never log below it, whatever the root logger allows.
LIBRARY_LOG = "headsup.slack.library"

ACK_WITHIN = 0.1  # seconds: answer in the acknowledgement if the core is this quick
BUSY_INFLIGHT = 1  # requests in hand (this one included) beyond which it is acknowledged at once
# Seconds a submitted modal waits for the core's checks before it is closed regardless: a bad
# value found in time keeps the modal open, what was typed kept. Within Slack's 3 s, with room.
FORM_CHECK_WITHIN = 2.0
STOP_GRACE = 5.0  # seconds to let requests in hand finish on stop
CONNECT_TIMEOUT = 30.0  # seconds to open the Socket Mode websocket
USER_CACHE_SECONDS = 3600.0  # how long a member's name and timezone from users.info are kept
MAX_RATELIMIT_WAIT = 30.0  # a 429 asking for a shorter wait is waited out in the send itself

MAX_SECTION = 3000  # characters of mrkdwn in one section block
MAX_FALLBACK = 3000  # characters of a message's top-level (notification) text
MAX_BLOCKS = 50  # blocks in a message
MAX_HOME_BLOCKS = 100  # blocks in the App Home view
MAX_BUTTONS_PER_BLOCK = 25
MAX_BUTTON_LABEL = 75
MAX_ACTION_ID = 255
MAX_MODAL_TITLE = 24  # a modal's title and its submit and close labels
MAX_INPUT_LABEL = 2000
MAX_INPUT_LENGTH = 3000
MAX_PLACEHOLDER = 150
MAX_METADATA = 3000  # a modal's private_metadata
MAX_FIELD_ERROR = 2000  # characters of a problem shown under a modal's field

FORM_CALLBACK = "headsup.form"

FORM_TOO_LATE = "Sorry — that took me too long to open the form. Please try once more."
SORRY = "Sorry — something went wrong on our side. Please try again in a moment."
FILE_IN_DM = "📎 I've put {filename} in our direct messages."

# Slack answers that retrying the same call cannot fix (the delivery worker records and stops).
PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "user_not_found",
        "user_disabled",
        "cannot_dm_bot",
        "messages_tab_disabled",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "invalid_arguments",
        "message_not_found",
        "cant_update_message",
        "edit_window_closed",
        "restricted_action",
    }
)

BOT_SCOPES = ("commands", "chat:write", "im:write", "im:history", "users:read", "files:write")
BOT_EVENTS = ("app_home_opened", "message.im")

STYLES = {Style.PRIMARY: "primary", Style.DANGER: "danger"}


# --- text ------------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Text made safe for Slack: ``&``, ``<`` and ``>`` as entities, so nothing in it can be
    read as a mention, a special command (``<!here>``) or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(text: str) -> str:
    """The core's text as Slack mrkdwn: escaped, then each marked moment as ``<!date^…>``, the
    one piece of markup the bot writes itself (its fallback was escaped with the rest)."""
    return render_moments(escape(text), slack_moment)


def slack_moment(moment: Moment) -> str:
    """A time as Slack's date markup, shown in each reader's own timezone."""
    start = f"<!date^{moment.start}^{{date_short_pretty}}, {{time}}|{moment.fallback}>"
    if moment.end is None:
        return start
    end = datetime.fromtimestamp(moment.end, UTC)
    if moment.end - moment.start < 24 * 3600:
        return f"{start}–<!date^{moment.end}^{{time}}|{end:%H:%M} UTC>"
    return f"{start} – <!date^{moment.end}^{{date_short_pretty}}, {{time}}|{end:%d %b %H:%M} UTC>"


_MARKUP = re.compile(r"<([^<>\n]*)>")


def _markup_as_words(match: re.Match[str]) -> str:
    inner = match.group(1)
    target, _, label = inner.partition("|")
    if target.startswith("!"):
        command = target[1:]
        if command in ("here", "channel", "everyone"):
            return "@" + command
        if command.startswith("subteam^"):
            return label or "@group"
        return label or ""  # <!date^…|fallback> and the like
    if target.startswith("@"):
        return "@" + (label or target[1:])
    if target.startswith("#"):
        return "#" + (label or target[1:])
    if label and label != target:
        return f"{label} ({target})"
    return target


def plain_text(text: str) -> str:
    """Text as Slack sends it (mentions and links in its markup, entities escaped) as the plain
    words a person typed: ``<!here>`` → ``@here``, ``<@U1|ann>`` → ``@ann``, ``&lt;`` → ``<``."""
    return html.unescape(_MARKUP.sub(_markup_as_words, text))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _safe_cut(text: str, cut: int) -> int:
    """`cut`, or an earlier place, so that cutting escaped mrkdwn there splits neither an
    entity (``&amp;``) nor a piece of Slack markup (``<!date^…|…>``, ``<https://…|…>``,
    ``<@U…>``): Slack would show half of one as raw text. After escaping, every ``<`` left
    opens markup the bot wrote itself."""
    opening = text.rfind("<", 0, cut)
    if opening > 0 and text.find(">", opening, cut) == -1:
        cut = opening
    entity = text.rfind("&", max(0, cut - 5), cut)
    if entity > 0 and ";" not in text[entity:cut]:
        cut = entity
    return cut


def _clip_mrkdwn(text: str, limit: int) -> str:
    """Escaped mrkdwn cut to at most `limit` characters, never inside an entity or markup."""
    return text if len(text) <= limit else text[: _safe_cut(text, limit - 1)] + "…"


def _pieces(text: str, size: int) -> list[str]:
    """Escaped mrkdwn cut into pieces of at most `size`, never inside an entity or markup, at
    line breaks where possible."""
    pieces: list[str] = []
    while len(text) > size:
        cut = text.rfind("\n", size // 2, size)
        cut = _safe_cut(text, size if cut <= 0 else cut)
        pieces.append(text[:cut])
        text = text[cut:].lstrip("\n")
    if text:
        pieces.append(text)
    return pieces


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": _clip(text, limit) or " ", "emoji": True}


# --- rendering ---------------------------------------------------------------------------------


def button_elements(message: Message) -> list[dict[str, Any]]:
    """The message's buttons as Block Kit buttons; each button's value is its action id."""
    elements: list[dict[str, Any]] = []
    used: set[str] = set()
    for index, button in enumerate(message.buttons):
        action_id = button.action if button.action not in used else f"{button.action}#{index}"
        used.add(action_id)
        element: dict[str, Any] = {
            "type": "button",
            "text": _plain(button.label, MAX_BUTTON_LABEL),
            "action_id": action_id[:MAX_ACTION_ID],
            "value": button.action,
        }
        if button.style in STYLES:
            element["style"] = STYLES[button.style]
        elements.append(element)
    return elements


def blocks_for(message: Message, *, max_blocks: int = MAX_BLOCKS) -> list[dict[str, Any]]:
    """The message as blocks: its escaped text in sections, then its buttons."""
    sections = [
        {"type": "section", "text": {"type": "mrkdwn", "text": piece}}
        for piece in _pieces(slack_text(message.text), MAX_SECTION)
    ]
    elements = button_elements(message)
    actions = [
        {"type": "actions", "elements": elements[i : i + MAX_BUTTONS_PER_BLOCK]}
        for i in range(0, len(elements), MAX_BUTTONS_PER_BLOCK)
    ]
    return sections[: max(1, max_blocks - len(actions))] + actions


def message_body(message: Message) -> dict[str, Any]:
    """chat.postMessage / chat.update / response_url arguments for the message (never
    ``link_names``: escaped text and no name linking means no mention can be made)."""
    return {
        "text": _clip_mrkdwn(slack_text(message.text), MAX_FALLBACK) or " ",
        "blocks": blocks_for(message),
    }


def home_view(page: list[Message]) -> dict[str, Any]:
    """The App Home view: each message's blocks, with a divider between messages."""
    blocks: list[dict[str, Any]] = []
    for message in page:
        part = blocks_for(message)
        if blocks:
            part.insert(0, {"type": "divider"})
        if len(blocks) + len(part) > MAX_HOME_BLOCKS:
            break
        blocks += part
    return {"type": "home", "blocks": blocks}


def modal_view(form: Form, metadata: str) -> dict[str, Any]:
    """The form as a modal: one plain-text input per field, named by the field's name."""
    blocks = []
    for field in form.fields:
        element: dict[str, Any] = {
            "type": "plain_text_input",
            "action_id": field.name,
            "multiline": field.multiline,
            "max_length": max(1, min(field.max_length, MAX_INPUT_LENGTH)),
        }
        if field.value:
            element["initial_value"] = field.value[:MAX_INPUT_LENGTH]
        if field.placeholder:
            element["placeholder"] = _plain(field.placeholder, MAX_PLACEHOLDER)
        blocks.append(
            {
                "type": "input",
                "block_id": field.name,
                "optional": not field.required,
                "label": _plain(field.label, MAX_INPUT_LABEL),
                "element": element,
            }
        )
    return {
        "type": "modal",
        "callback_id": FORM_CALLBACK,
        "private_metadata": metadata,
        "title": _plain(form.title or "HeadsUp", MAX_MODAL_TITLE),
        "submit": _plain(form.submit_label or "Submit", MAX_MODAL_TITLE),
        "close": _plain("Cancel", MAX_MODAL_TITLE),
        "blocks": blocks,
    }


def form_errors(view: dict[str, Any], reply: Reply) -> dict[str, str] | None:
    """Slack's ``errors`` (block id → text) for a modal whose values the core turned down: the
    problem under the field it is about — the one the core names, else the first one its text
    names, else the first field. None when the reply is no such problem."""
    if not reply.bad_input or not reply.messages:
        return None
    fields = _input_block_ids(view)
    if not fields:
        return None
    text = "\n".join(m.text for m in reply.messages)
    field = reply.bad_field if reply.bad_field in fields else _named_field(text, fields)
    return {field or fields[0]: _clip(text, MAX_FIELD_ERROR)}


def _input_block_ids(view: dict[str, Any]) -> list[str]:
    blocks = view.get("blocks")
    return [
        block["block_id"]
        for block in (blocks if isinstance(blocks, list) else [])
        if isinstance(block, dict)
        and block.get("type") == "input"
        and isinstance(block.get("block_id"), str)
        and block["block_id"]
    ]


def _named_field(text: str, fields: list[str]) -> str | None:
    """The field whose name ("repeat_until" as "repeat until" or "repeat-until") the text
    mentions first."""
    found: list[tuple[int, str]] = []
    for name in fields:
        words = r"[\s_-]".join(re.escape(word) for word in name.split("_"))
        match = re.search(rf"\b{words}\b", text, re.IGNORECASE)
        if match is not None:
            found.append((match.start(), name))
    return min(found)[1] if found else None


def submitted_values(view: dict[str, Any]) -> dict[str, str]:
    """Field name → text from a submitted modal (``view.state.values``)."""
    values: dict[str, str] = {}
    state = view.get("state") or {}
    for entries in (state.get("values") or {}).values():
        if not isinstance(entries, dict):
            continue
        for name, entry in entries.items():
            if isinstance(entry, dict):
                values[str(name)] = str(entry.get("value") or "")
    return values


# --- the app manifest --------------------------------------------------------------------------


def _usage_hint(registry: Registry, group: str) -> str:
    subs = [s.path[1] for s in registry.subcommands(group) if not s.hidden]
    bare = registry.commands.get((group,))
    words = [p.usage() for p in bare.params] if bare is not None else []
    if subs:
        words.insert(0, "[" + "|".join(subs) + "]" if bare is not None else "|".join(subs))
    return " ".join(words)


def manifest(registry: Registry, *, name: str = "HeadsUp", request_url: str | None = None) -> str:
    """A ready-to-import Slack app manifest (YAML): every command group as a slash command, the
    bot scopes and events this adapter needs, interactivity, and Socket Mode — or, with
    `request_url`, HTTP mode with every request sent there."""
    commands = []
    for group in registry.groups():
        bare = registry.commands.get((group,))
        subs = [s.path[1] for s in registry.subcommands(group) if not s.hidden]
        description = (bare.help if bare is not None else "") or "Commands: " + ", ".join(
            f"/{group} {sub}" for sub in subs
        )
        command: dict[str, Any] = {
            "command": f"/{group}",
            "description": _clip(description, 100),
            "should_escape": False,
        }
        hint = _usage_hint(registry, group)
        if hint:
            command["usage_hint"] = _clip(hint, 100)
        if request_url:
            command["url"] = request_url
        commands.append(command)
    events: dict[str, Any] = {"bot_events": list(BOT_EVENTS)}
    interactivity: dict[str, Any] = {"is_enabled": True}
    if request_url:
        events = {"request_url": request_url, **events}
        interactivity["request_url"] = request_url
    data = {
        "display_information": {
            "name": _clip(name, 35),
            "description": "Weekly check-ins, a coach when things are hard, and the calls.",
            "background_color": "#2b4f6e",
        },
        "features": {
            "app_home": {
                "home_tab_enabled": True,
                "messages_tab_enabled": True,
                "messages_tab_read_only_enabled": False,
            },
            "bot_user": {"display_name": _clip(name, 80), "always_online": True},
            "slash_commands": commands,
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": {
            "event_subscriptions": events,
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": not request_url,
            "token_rotation_enabled": False,
        },
    }
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


# --- Slack's answers ---------------------------------------------------------------------------


def _retry_after(headers: Any) -> float | None:
    """Retry-After in seconds from slack-sdk's headers (values may be lists)."""
    for key, value in dict(headers or {}).items():
        if str(key).lower() == "retry-after":
            first = value[0] if isinstance(value, list | tuple) and value else value
            try:
                return max(0.0, float(first))
            except (TypeError, ValueError):
                return None
    return None


class WaitOutShortRateLimits(AsyncRateLimitErrorRetryHandler):
    """Waits out a 429 in the call itself when Slack asks for at most `MAX_RATELIMIT_WAIT`
    seconds; a longer wait goes back to the outbox, which retries the row after it."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = _retry_after(response.headers)
        return wait is not None and wait <= MAX_RATELIMIT_WAIT


def delivery_error(exc: SlackApiError) -> DeliveryError:
    """Slack's answer as the delivery worker's kind of failure."""
    response = exc.response
    status = getattr(response, "status_code", 200)
    error = str(response.get("error", "") if response is not None else "")
    if status == 429 or error == "ratelimited":
        wait = _retry_after(getattr(response, "headers", {}))
        return DeliveryError("429", retry_after=wait if wait is not None else MAX_RATELIMIT_WAIT)
    if error in PERMANENT_ERRORS:
        return DeliveryError(error, permanent=True)
    if status >= 500:
        return DeliveryError(f"http_{status}")
    return DeliveryError(error or f"http_{status}")  # e.g. invalid_auth: an admin can fix it


def _start_problem(exc: SlackApiError, what: str) -> str:
    error = str(exc.response.get("error", "") if exc.response is not None else "")
    if what == "bot_token":
        return (
            f"slack.bot_token: Slack did not accept the bot token ({error or 'refused'}); copy "
            "the xoxb- token again from the app's OAuth & Permissions page"
        )
    return (
        f"slack.app_token: Slack did not accept the app-level token ({error or 'refused'}); it "
        "must be an xapp- token with the connections:write scope (Basic Information → App-Level "
        "Tokens), and Socket Mode must be on"
    )


# --- where an answer goes ----------------------------------------------------------------------


@dataclass
class Request:
    """One interaction from a person, and where its answers go."""

    user_id: str
    name: str
    ack: Callable[..., Awaitable[None]] | None
    response_url: str | None = None
    trigger_id: str | None = None
    channel_id: str | None = None
    message_ts: str | None = None
    ephemeral: bool = False  # the message a button is on is ephemeral
    in_dm: bool = False  # the message a button is on is in the person's DM with the bot
    in_home: bool = False  # the button is on the App Home tab
    acked: bool = False
    team_id: str | None = None  # the person's own workspace, as the request says

    async def acknowledge(self, body: dict[str, Any] | None = None) -> None:
        """Acknowledge once; `body` becomes the immediate answer (a slash command's)."""
        if self.acked or self.ack is None:
            return
        self.acked = True
        await self.ack(**(body or {}))


@dataclass
class _Profile:
    name: str
    timezone: str | None
    fetched: float
    team_id: str | None = None  # their home workspace (another one for a Slack Connect user)


# --- the platform ------------------------------------------------------------------------------


class SlackPlatform(Platform):
    """One bot user in one Slack workspace, plus DMs with its members."""

    name = "slack"
    # chat.postMessage: about one message a second per channel (each DM is its own), within a
    # workspace-wide budget; slack-sdk waits out a short 429 should one still come.
    pace = Pace(per_second=20, per_channel_per_second=1, concurrency=8)

    def __init__(self, config: SlackConfig) -> None:
        self.config = config
        self._core: Core | None = None
        self._session: aiohttp.ClientSession | None = None
        self._client: AsyncWebClient | None = None  # interactive calls: never waits on a 429
        self._delivery: AsyncWebClient | None = None  # outbox sends: waits out short 429s
        self._app: AsyncApp | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._runner: web.AppRunner | None = None
        self._stopped = asyncio.Event()
        self._inflight: set[asyncio.Task[Any]] = set()
        self._profiles: dict[str, _Profile] = {}
        self._dm_channels: dict[str, str] = {}
        self.bot_user_id = ""
        self.team_id = ""  # the network's workspace
        self.http_port = 0  # where HTTP mode listens, once started
        self.handled = 0  # requests handled to the end (for tests and health)

    # --- Platform -----------------------------------------------------------------------

    async def start(self, core: Core) -> None:
        """Check the token, then connect Socket Mode (or start serving HTTP)."""
        self._core = core
        self._stopped = asyncio.Event()
        token = self.config.bot_token.get_secret_value()
        base_url = self.config.api_base_url.rstrip("/") + "/"
        library_log = _library_logger()
        self._session = aiohttp.ClientSession()
        self._client = AsyncWebClient(
            token=token, base_url=base_url, session=self._session, logger=library_log
        )
        retries: list[AsyncRetryHandler] = [
            AsyncConnectionErrorRetryHandler(),
            WaitOutShortRateLimits(max_retry_count=2),
        ]
        self._delivery = AsyncWebClient(
            token=token,
            base_url=base_url,
            session=self._session,
            logger=library_log,
            retry_handlers=retries,
        )
        try:
            auth = await self._client.auth_test()
            self.bot_user_id = str(auth.get("user_id") or "")
            self.team_id = str(auth.get("team_id") or "")
            self._app = self._build_app(library_log)
            if self.config.mode == "socket":
                await self._connect_socket(library_log)
            else:
                await self._serve_http()
        except SlackApiError as exc:
            await self._close()
            raise ConfigError(_start_problem(exc, "bot_token")) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self._close()
            raise ConfigError(
                f"slack: cannot reach Slack at {self.config.api_base_url} "
                f"({type(exc).__name__}); check slack.api_base_url and the network"
            ) from None
        except BaseException:
            await self._close()
            raise
        log.info("slack.started", mode=self.config.mode, bot_user_id=self.bot_user_id)

    async def run(self) -> None:
        """Listen until stopped (Socket Mode reconnects by itself)."""
        await self._stopped.wait()

    async def stop(self) -> None:
        """Let requests in hand finish, then disconnect."""
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=STOP_GRACE)
        await self._close()
        self._stopped.set()
        self._core = None
        log.info("slack.stopped")

    @property
    def connected(self) -> bool:
        if self._socket is not None:
            session = self._socket.client.current_session
            return session is not None and not session.closed
        return self._runner is not None

    def has_channel(self, channel: Channel) -> bool:
        return bool(self._channel_id(channel.value, strict=False))

    async def send(self, target: Target, message: Message) -> SentRef:
        client = self._delivery_client
        try:
            if target.kind == "dm":
                channel = target.dm_channel_id or await self._open_dm(target.recipient, client)
            else:
                channel = self._channel_id(target.recipient)
            sent = await client.chat_postMessage(
                channel=channel, **message_body(message), unfurl_links=False, unfurl_media=False
            )
        except SlackApiError as exc:
            raise delivery_error(exc) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise DeliveryError(f"network:{type(exc).__name__}") from None
        ref = SentRef(str(sent["channel"]), str(sent["ts"]))
        if message.attachment is not None:
            # The message is out, so a failed file must not make the worker post it again.
            await self._upload(ref.channel_id, message.attachment, client)
        log.info("slack.sent", kind=target.kind, channel_id=ref.channel_id, ts=ref.message_id)
        return ref

    async def edit(self, ref: SentRef, message: Message) -> None:
        client = self._delivery_client
        if message.attachment is not None:
            log.warning("slack.edit_drops_file", channel_id=ref.channel_id, ts=ref.message_id)
        try:
            await client.chat_update(
                channel=ref.channel_id, ts=ref.message_id, **message_body(message)
            )
        except SlackApiError as exc:
            raise delivery_error(exc) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise DeliveryError(f"network:{type(exc).__name__}") from None
        log.info("slack.edited", channel_id=ref.channel_id, ts=ref.message_id)

    # --- helpers for the Platform side -------------------------------------------------------

    @property
    def core(self) -> Core:
        if self._core is None:
            raise RuntimeError("the Slack platform has not been started")
        return self._core

    @property
    def client(self) -> AsyncWebClient:
        if self._client is None:
            raise DeliveryError("not_connected")
        return self._client

    @property
    def _delivery_client(self) -> AsyncWebClient:
        if self._delivery is None:
            raise DeliveryError("not_connected")
        return self._delivery

    def _channel_id(self, name: str, *, strict: bool = True) -> str:
        places = {
            Channel.ANNOUNCEMENTS.value: self.config.announce_channel,
            Channel.COORDINATORS.value: self.config.coordinator_channel,
        }
        found = places.get(name, "")
        if not found and strict:
            raise DeliveryError("unknown_channel", permanent=True)
        return found

    async def _open_dm(self, user_id: str, client: AsyncWebClient | None = None) -> str:
        """The DM channel with a member (conversations.open), remembered for next time."""
        known = self._dm_channels.get(user_id)
        if known:
            return known
        opened = await (client or self.client).conversations_open(users=user_id)
        channel_id = str(opened["channel"]["id"])
        self._dm_channels[user_id] = channel_id
        return channel_id

    async def _upload(
        self, channel_id: str, attachment: Attachment, client: AsyncWebClient | None = None
    ) -> bool:
        """Share a file in a channel (files.getUploadURLExternal → upload →
        files.completeUploadExternal); False, and logged, when it could not be."""
        try:
            await (client or self.client).files_upload_v2(
                channel=channel_id,
                file=attachment.content,
                filename=attachment.filename,
                title=attachment.filename,
            )
        except (SlackApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("slack.file_failed", channel_id=channel_id, error=type(exc).__name__)
            return False
        log.info("slack.file_shared", channel_id=channel_id)
        return True

    async def _close(self) -> None:
        socket, runner, session = self._socket, self._runner, self._session
        self._socket, self._runner, self._session = None, None, None
        self._client, self._delivery, self._app = None, None, None
        if socket is not None:
            with contextlib.suppress(Exception):
                await socket.close_async()
        if runner is not None:
            await runner.cleanup()
        if session is not None:
            await session.close()

    # --- connecting ----------------------------------------------------------------------------

    def _build_app(self, library_log: Any) -> AsyncApp:
        secret = self.config.signing_secret.get_secret_value()
        app = AsyncApp(
            client=self.client,
            signing_secret=secret or None,
            # Socket Mode requests arrive on our own authenticated websocket: nothing to sign.
            request_verification_enabled=self.config.mode == "http",
            logger=library_log,
        )
        app.command(re.compile(r"^/"))(self._on_command)
        app.block_action(re.compile(r"(?s).*"))(self._on_action)
        app.view_submission(re.compile(r"(?s).*"))(self._on_view)
        app.view_closed(re.compile(r"(?s).*"))(self._on_view_closed)
        app.event("message")(self._on_message)
        app.event("app_home_opened")(self._on_home_opened)
        app.event(re.compile(r"(?s).*"))(self._on_other_event)
        app.error(self._on_error)
        return app

    async def _connect_socket(self, library_log: Any) -> None:
        app_token = self.config.app_token.get_secret_value()
        try:
            opened = await self.client.apps_connections_open(app_token=app_token)
        except SlackApiError as exc:
            raise ConfigError(_start_problem(exc, "app_token")) from None
        assert self._app is not None
        handler = AsyncSocketModeHandler(
            self._app, app_token, logger=library_log, web_client=self.client
        )
        self._socket = handler

        async def checked(client: Any, request: SocketModeRequest) -> None:
            # bolt reads some fields before any listener runs; a request without them is
            # acknowledged (so Slack doesn't resend it) and dropped, as HTTP mode answers 400.
            problem = _malformed(request.payload)
            if problem is not None:
                log.warning("slack.malformed_request", problem=problem)
                await client.send_socket_mode_response(
                    SocketModeResponse(envelope_id=request.envelope_id)
                )
                return
            await handler.handle(client, request)

        handler.client.socket_mode_request_listeners[:] = [checked]
        handler.client.wss_uri = str(opened["url"])
        try:
            await asyncio.wait_for(handler.connect_async(), CONNECT_TIMEOUT)
        except TimeoutError:
            raise ConfigError(
                f"slack: the Socket Mode connection did not open within {CONNECT_TIMEOUT:.0f} s "
                "(check the network)"
            ) from None

    async def _serve_http(self) -> None:
        web_app = web.Application()
        web_app.router.add_post("/slack/events", self._http_request)
        runner = web.AppRunner(web_app, handle_signals=False, access_log=None)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, port=self.config.http_port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(
                f"slack.http_port: cannot listen on port {self.config.http_port} "
                f"({exc.strerror or exc})"
            ) from None
        sockets = getattr(site._server, "sockets", None) or []  # the port actually bound
        self.http_port = sockets[0].getsockname()[1] if sockets else self.config.http_port

    async def _http_request(self, request: web.Request) -> web.Response:
        """``POST /slack/events``: verify Slack's signature (a bad one, or a timestamp over five
        minutes old, is refused with 401 before anything is read), then hand it to bolt."""
        if self._app is None:
            return web.Response(status=503, text="not ready")
        try:
            body = await request.text()
        except (UnicodeDecodeError, ValueError):
            return web.Response(status=400, text="malformed request")
        if not self._signature_valid(request, body):
            log.warning("slack.bad_signature")
            return web.Response(status=401, text="invalid request")
        try:
            bolt_request = AsyncBoltRequest(
                body=body, query=request.query_string, headers=dict(request.headers)
            )
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            log.warning("slack.malformed_request", error=type(exc).__name__)
            return web.Response(status=400, text="malformed request")
        problem = _malformed(bolt_request.body)
        if problem is not None:
            log.warning("slack.malformed_request", problem=problem)
            return web.Response(status=400, text="malformed request")
        if request.headers.get("X-Slack-Retry-Num"):
            log.info("slack.retried_request", retry=request.headers.get("X-Slack-Retry-Num"))
        response = await self._app.async_dispatch(bolt_request)
        return await to_aiohttp_response(response)

    def _signature_valid(self, request: web.Request, body: str) -> bool:
        verifier = SignatureVerifier(self.config.signing_secret.get_secret_value())
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        try:
            return verifier.is_valid(body, timestamp, signature)
        except (ValueError, TypeError):
            return False

    # --- incoming: slash commands --------------------------------------------------------------

    async def _on_command(self, ack: Any, body: dict[str, Any]) -> None:
        """A slash command: the preface at once (if any), then the core's answer."""
        async with self._handling():
            group = str(body.get("command", "")).lstrip("/").lower()
            text = plain_text(str(body.get("text") or ""))
            request = Request(
                user_id=str(body["user_id"]),
                name=str(body.get("user_name") or ""),
                ack=ack,
                response_url=body.get("response_url"),
                trigger_id=body.get("trigger_id"),
                channel_id=body.get("channel_id"),
                team_id=_text_or_none(body.get("team_id")),
            )
            log.info("slack.command", command=f"/{group}", user_id=request.user_id)
            try:
                preface = self._preface(group, text)
                if preface is not None:
                    await request.acknowledge(_ephemeral(Message(preface)))
                reply = await self._in_time(request, self._command_reply(request, group, text))
                if preface is not None and reply.messages and reply.messages[0].text == preface:
                    reply.messages.pop(0)
                await self._render(request, reply)
            except Exception as exc:
                await self._failed(request, "command", exc)

    async def _command_reply(self, request: Request, group: str, text: str) -> Reply:
        actor = await self.actor_of(request.user_id, request.name, team_id=request.team_id)
        return await self.core.command(actor, group, text)

    def _preface(self, group: str, text: str) -> str | None:
        try:
            spec, _ = self.core.registry.resolve(group, split_words(text))
        except UserError:
            return None
        return spec.preface(self.core.services.settings) if spec.preface else None

    # --- incoming: buttons and forms -----------------------------------------------------------

    async def _on_action(self, ack: Any, body: dict[str, Any]) -> None:
        """A button: acknowledged first; the answer may replace the message it is on."""
        await ack()
        async with self._handling():
            container = _object(body.get("container"))
            channel_id = container.get("channel_id") or _object(body.get("channel")).get("id")
            ephemeral = bool(container.get("is_ephemeral"))
            user = body["user"]
            request = Request(
                user_id=str(user["id"]),
                name=str(user.get("username") or user.get("name") or ""),
                ack=None,
                response_url=body.get("response_url"),
                trigger_id=body.get("trigger_id"),
                channel_id=channel_id,
                message_ts=container.get("message_ts"),
                ephemeral=ephemeral,
                in_dm=bool(channel_id and str(channel_id).startswith("D")) and not ephemeral,
                in_home=container.get("type") == "view",
                acked=True,
                team_id=_text_or_none(user.get("team_id")),
            )
            pressed = body["actions"][0]
            action = str(pressed.get("value") or pressed.get("action_id") or "")
            log.info(
                "slack.press",
                action=action.partition(":")[0],
                user_id=request.user_id,
                in_dm=request.in_dm,
            )
            try:
                actor = await self.actor_of(request.user_id, request.name, team_id=request.team_id)
                reply = await self.core.press(actor, action, in_dm=request.in_dm)
                await self._render(request, reply, on_message=True)
                if request.in_home:
                    await self.publish_home(request.user_id, request.team_id)
            except Exception as exc:
                await self._failed(request, "press", exc)

    async def _on_view(self, ack: Any, body: dict[str, Any]) -> None:
        """A submitted modal: its private_metadata holds the form's action and where the
        answer goes (the response_url of the command or button that opened it).

        The core checks the values before the acknowledgement when it answers within
        ``FORM_CHECK_WITHIN``: a value it turns down is acknowledged with Slack's
        ``response_action: errors``, so the modal stays open with what was typed and the
        problem under its field. Anything else — or a slow core — closes the modal, and the
        answer comes as a private message."""
        async with self._handling():
            view = body["view"]
            user = body["user"]
            metadata = _metadata(view.get("private_metadata"))
            request = Request(
                user_id=str(user["id"]),
                name=str(user.get("username") or user.get("name") or ""),
                ack=ack,
                response_url=metadata.get("r"),
                trigger_id=body.get("trigger_id"),
                channel_id=metadata.get("c"),
                in_dm=bool(metadata.get("d")),
                team_id=_text_or_none(user.get("team_id")),
            )
            action = str(metadata.get("a") or "")
            log.info("slack.submit", action=action.partition(":")[0], user_id=request.user_id)
            try:
                if not action:
                    await request.acknowledge()
                    await self._render(request, Reply.of(SORRY))
                    return
                submitted = self._submit_reply(request, action, submitted_values(view))
                reply = await self._in_time(request, submitted, within=FORM_CHECK_WITHIN)
                errors = None if request.acked else form_errors(view, reply)
                if errors:
                    await request.acknowledge({"response_action": "errors", "errors": errors})
                    log.info("slack.form_kept_open", action=action.partition(":")[0])
                    return
                await request.acknowledge()  # closes the modal
                await self._render(request, reply)
            except Exception as exc:
                await request.acknowledge()  # a modal can't take a message as its answer
                await self._failed(request, "submit", exc)
            finally:
                await request.acknowledge()

    async def _submit_reply(self, request: Request, action: str, values: dict[str, str]) -> Reply:
        actor = await self.actor_of(request.user_id, request.name, team_id=request.team_id)
        return await self.core.submit(actor, action, values, in_dm=request.in_dm)

    async def _on_view_closed(self, ack: Any) -> None:
        await ack()

    # --- incoming: events ----------------------------------------------------------------------

    async def _on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """A DM to the bot (not a command): the core decides (a relay, or the menu). A reply in
        a thread names the message it replies to, so it reaches that message's case."""
        async with self._handling():
            user_id = event.get("user")
            if (
                event.get("channel_type") != "im"
                or event.get("subtype")
                or event.get("bot_id")
                or not user_id
                or user_id == self.bot_user_id
            ):
                return
            text = plain_text(str(event.get("text") or ""))
            if not text.strip():
                return
            thread_ts = event.get("thread_ts")
            reply_to = thread_ts if thread_ts and thread_ts != event.get("ts") else None
            channel_id = str(event.get("channel") or "")
            log.info("slack.direct_message", user_id=user_id, in_thread=reply_to is not None)
            try:
                actor = await self.actor_of(str(user_id), team_id=_team_of_event(event))
                # Slack resends an event it thinks went unanswered, perhaps to another
                # instance: the core records its id with the message's effects, once.
                event_id = str(body.get("event_id") or "") or None
                reply = await self.core.message(actor, text, reply_to=reply_to, event_id=event_id)
                if reply.repeat:
                    log.info("slack.repeat_ignored", event_id=event_id)
                    return
                outgoing = list(reply.messages)
                if reply.update is not None:
                    outgoing.insert(0, reply.update)
                if reply.form is not None:
                    log.warning("slack.form_from_dm", action=reply.form.action.partition(":")[0])
                for item in outgoing:
                    await self._post(
                        channel_id or await self._open_dm(str(user_id)), item, reply_to
                    )
            except Exception as exc:
                log.exception("slack.dm_failed", user_id=user_id, error=type(exc).__name__)

    async def _on_home_opened(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """The App Home tab was opened: publish the member's home page."""
        async with self._handling():
            if event.get("tab", "home") != "home" or not event.get("user"):
                return
            try:
                event_id = str(body.get("event_id") or "") or None
                await self.publish_home(str(event["user"]), _team_of_event(event), event_id)
            except Exception as exc:
                log.exception("slack.home_failed", error=type(exc).__name__)

    async def _on_other_event(self, body: dict[str, Any]) -> None:
        """An event we don't act on (the app may be subscribed to more than we need)."""
        log.info("slack.event_ignored", kind=(body.get("event") or {}).get("type"))

    async def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        log.error("slack.listener_error", kind=body.get("type"), error=type(error).__name__)

    async def publish_home(
        self, user_id: str, team_id: str | None = None, event_id: str | None = None
    ) -> None:
        """views.publish the person's home page, as the core gives it (for a stranger, a kind
        word that the bot is not for them), on their App Home tab; once for a resent event."""
        actor = await self.actor_of(user_id, team_id=team_id)
        reply = await self.core.home(actor, event_id=event_id)
        if reply.repeat:
            log.info("slack.repeat_ignored", event_id=event_id)
            return
        await self.client.views_publish(user_id=user_id, view=home_view(reply.messages))
        log.info("slack.home_published", user_id=user_id)

    # --- who is asking -------------------------------------------------------------------------

    async def actor_of(
        self, user_id: str, fallback_name: str = "", *, team_id: str | None = None
    ) -> Actor:
        """The neutral actor: roles from ``[slack] coaches``/``coordinators``, name, timezone
        and home workspace from users.info (kept for an hour). `team_id` is the workspace the
        request itself names for the person, used when users.info can't be asked."""
        profile = await self._profile(user_id, fallback_name, team_id)
        roles = set()
        if user_id in self.config.coaches:
            roles.add(Role.COACH)
        if user_id in self.config.coordinators:
            roles.add(Role.COORDINATOR)
        # Someone from another workspace (in a shared channel) is a stranger, turned away.
        stranger = bool(self.team_id and profile.team_id and profile.team_id != self.team_id)
        return Actor(
            "slack", user_id, profile.name, frozenset(roles), profile.timezone, stranger=stranger
        )

    async def _profile(self, user_id: str, fallback_name: str, team_id: str | None) -> _Profile:
        """Who the person is, from users.info. When Slack can't say, the last known profile
        (their workspace with it), else the workspace the request names. With neither, they
        are taken as a member — a passing Slack outage must not lock out the network's own
        people — and that is logged."""
        cached = self._profiles.get(user_id)
        if cached is not None and time.monotonic() - cached.fetched < USER_CACHE_SECONDS:
            return cached
        try:
            found = await self.client.users_info(user=user_id)
        except (SlackApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("slack.user_unknown", user_id=user_id, error=type(exc).__name__)
            if cached is not None:
                return cached
            if not team_id:
                log.warning("slack.team_unknown", user_id=user_id)
            return _Profile(fallback_name or user_id, None, 0.0, team_id or None)
        user = found.get("user") or {}
        details = user.get("profile") or {}
        name = (
            details.get("display_name")
            or details.get("real_name")
            or user.get("real_name")
            or user.get("name")
            or fallback_name
            or user_id
        )
        profile = _Profile(
            str(name), user.get("tz") or None, time.monotonic(), user.get("team_id") or team_id
        )
        self._profiles[user_id] = profile
        return profile

    # --- answering a request -------------------------------------------------------------------

    async def _in_time(
        self, request: Request, work: Awaitable[Reply], *, within: float | None = None
    ) -> Reply:
        """Run the core; acknowledge empty first if it is slower than `within` seconds
        (``ACK_WITHIN`` unless said), so Slack doesn't time out. While other requests are in
        hand, acknowledge before the core even starts: their work would hold up the timer."""
        if not request.acked and within is None and len(self._inflight) > BUSY_INFLIGHT:
            log.info("slack.acknowledged_early", user_id=request.user_id)
            await request.acknowledge()
        task = asyncio.ensure_future(work)
        if not request.acked:
            done, _ = await asyncio.wait({task}, timeout=ACK_WITHIN if within is None else within)
            if not done:
                log.info("slack.acknowledged_early", user_id=request.user_id)
                await request.acknowledge()
        return await task

    async def _render(self, request: Request, reply: Reply, *, on_message: bool = False) -> None:
        """Show the core's answer: a modal, an update of the pressed message, private messages."""
        messages = list(reply.messages)
        if reply.form is not None:
            await request.acknowledge()
            if not await self._open_form(request, reply.form):
                messages.append(Message(FORM_TOO_LATE))
            elif messages:
                log.info("slack.messages_with_form", count=len(messages))
        if reply.update is not None and not (
            on_message and await self._update_pressed(request, reply.update)
        ):
            messages.insert(0, reply.update)  # nothing to replace: say it as a new message
        if messages and not request.acked and messages[0].attachment is None:
            await request.acknowledge(_ephemeral(messages.pop(0)))
        await request.acknowledge()
        for item in messages:
            await self._private(request, item)

    async def _update_pressed(self, request: Request, message: Message) -> bool:
        """Replace the message the button is on; False when there is none to replace."""
        if request.in_home:
            return False  # the home tab is published again after the press
        if request.ephemeral and request.response_url:
            return await self._respond(request.response_url, message, replace=True)
        if request.channel_id and request.message_ts:
            try:
                await self.client.chat_update(
                    channel=request.channel_id, ts=request.message_ts, **message_body(message)
                )
            except SlackApiError as exc:
                log.warning("slack.update_failed", error=str(exc.response.get("error", "")))
                return False
            return True
        return False

    async def _private(self, request: Request, message: Message) -> None:
        """A message only the asker sees: in their DM when they acted there (or on the home
        tab), else ephemeral through the response_url. A file goes to their DM."""
        if message.attachment is not None:
            dm = await self._open_dm(request.user_id)
            if await self._upload(dm, message.attachment):
                note = FILE_IN_DM.format(filename=message.attachment.filename)
                message = Message(f"{message.text}\n{note}", message.buttons)
            else:
                message = Message(message.text, message.buttons)
        if request.in_dm and request.channel_id:
            await self._post(request.channel_id, message)
        elif request.response_url and not request.in_home:
            if not await self._respond(request.response_url, message):
                await self._post(await self._open_dm(request.user_id), message)
        else:
            await self._post(await self._open_dm(request.user_id), message)

    async def _post(self, channel_id: str, message: Message, thread_ts: str | None = None) -> None:
        extra = {"thread_ts": thread_ts} if thread_ts else {}
        await self.client.chat_postMessage(
            channel=channel_id,
            **message_body(message),
            unfurl_links=False,
            unfurl_media=False,
            **extra,
        )
        if message.attachment is not None:
            await self._upload(channel_id, message.attachment)

    async def _respond(self, url: str, message: Message, *, replace: bool = False) -> bool:
        """Answer through a response_url (ephemeral; `replace` swaps the original message)."""
        body = {**_ephemeral(message), "replace_original": replace}
        try:
            webhook = AsyncWebhookClient(url, session=self._session, logger=_library_logger())
            answer = await webhook.send_dict(body)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("slack.respond_failed", error=type(exc).__name__)
            return False
        if answer.status_code != 200:
            log.warning("slack.respond_failed", status=answer.status_code)
            return False
        return True

    async def _open_form(self, request: Request, form: Form) -> bool:
        """views.open with the request's trigger_id; False when Slack refused (too late)."""
        if not request.trigger_id:
            return False
        metadata: dict[str, Any] = {"a": form.action}
        if request.channel_id:
            metadata["c"] = request.channel_id
        if request.in_dm:
            metadata["d"] = 1
        if request.response_url and not request.in_home:
            metadata["r"] = request.response_url
        text = json.dumps(metadata, separators=(",", ":"))
        if len(text) > MAX_METADATA:
            metadata.pop("r", None)
            text = json.dumps(metadata, separators=(",", ":"))
        try:
            await self.client.views_open(trigger_id=request.trigger_id, view=modal_view(form, text))
        except SlackApiError as exc:
            log.warning("slack.form_failed", error=str(exc.response.get("error", "")))
            return False
        return True

    async def _failed(self, request: Request, what: str, exc: Exception) -> None:
        log.error(f"slack.{what}_failed", user_id=request.user_id, error=type(exc).__name__)
        with contextlib.suppress(Exception):
            if not request.acked:
                await request.acknowledge(_ephemeral(Message(SORRY)))
            else:
                await self._private(request, Message(SORRY))

    # --- bookkeeping ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _handling(self):
        """Count this handler as in flight, so stop() lets it finish."""
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._inflight.discard(task)
            self.handled += 1


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _team_of_event(event: dict[str, Any]) -> str | None:
    """The workspace of the person behind an event (in a shared channel, their own)."""
    return _text_or_none(event.get("user_team")) or _text_or_none(event.get("team"))


def _ephemeral(message: Message) -> dict[str, Any]:
    return {"response_type": "ephemeral", **message_body(message)}


def _metadata(text: Any) -> dict[str, Any]:
    try:
        data = json.loads(text) if isinstance(text, str) and text else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# Fields bolt reads from any request before a listener runs, and the shapes it can read.
_SHAPES: dict[str, tuple[type, ...]] = {
    "event": (dict,),
    "team": (str, dict, type(None)),
    "channel": (str, dict, type(None)),
    "enterprise": (str, dict, type(None)),
    "authorizations": (list, type(None)),
}


def _malformed(body: Any) -> str | None:
    """What a request is missing for its kind, or None when it has what it needs."""
    if not isinstance(body, dict):
        return "not an object"
    for key, shapes in _SHAPES.items():
        if key in body and not isinstance(body[key], shapes):
            return f"{key} of the wrong shape"
    if not all(isinstance(a, dict) for a in body.get("authorizations") or []):
        return "authorizations of the wrong shape"
    if "command" in body:
        return None if body.get("user_id") else "command without user_id"
    kind = body.get("type")
    if kind in ("block_actions", "view_submission", "view_closed"):
        user = body.get("user")
        if not isinstance(user, dict) or not user.get("id"):
            return f"{kind} without user"
        if kind == "block_actions":
            actions = body.get("actions")
            if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
                return "block_actions without actions"
            if not isinstance(actions[0].get("action_id"), str):
                return "block_actions without an action_id"
        elif not isinstance(body.get("view"), dict):
            return f"{kind} without view"
        elif (
            not isinstance(body["view"].get("callback_id"), str) or not body["view"]["callback_id"]
        ):
            return f"{kind} without a callback_id"
        elif body["view"].get("type") != "modal":
            # bolt reads view.type (for a workflow step) before any listener, and fails on a
            # view without one; ours are all modals, as Slack always says.
            return f"{kind} not of a modal"
        return None
    if kind == "event_callback":
        event = body.get("event")
        return None if isinstance(event, dict) and event.get("type") else "event without type"
    return None


def _library_logger() -> Any:
    import logging

    logger = logging.getLogger(LIBRARY_LOG)
    logger.setLevel(logging.WARNING)
    return logger
