"""The Discord platform, on discord.py: application commands, buttons, forms (modals) and DMs.

It only translates. A slash command becomes ``core.command``, a button press ``core.press``, a
submitted modal ``core.submit``, a DM to the bot ``core.message``; the ``Reply`` comes back as
ephemeral interaction answers, an edit of the message the button is on, or a modal. The outbox
worker delivers everything else through ``send`` and ``edit``.

Platform quirks that shaped this file:

- An interaction must be answered within 3 seconds. The core usually answers well within that and
  its first message becomes the direct answer; slower work is deferred after ``ACK_WITHIN``.
  A command with a preface (``/support``'s signposting), and a button that runs such a command
  as if typed (*Talk to a coach*), answer with the preface at once, before the core runs, and
  are never deferred.
- A button's ``custom_id`` is the neutral action id itself, handled by one catch-all
  ``DynamicItem``, and a modal's ``custom_id`` is the form's action (plus the fields it cannot
  show), handled in ``on_interaction``: nothing is kept in memory per message, so buttons and
  forms keep working after a restart, and on any instance.
- Discord may deliver an interaction or a message twice (after a resume, or to each of several
  instances holding a gateway connection): each is handled once, by whichever instance records
  its id first in the database (``bot.platforms.seen``).
- Every send and every edit passes ``allowed_mentions=none``: an edit carrying only a new view
  would otherwise let Discord re-read the text with default mentions.
- A modal holds at most five inputs. A longer form shows its first five; the rest keep their
  prefilled values, carried in the modal's ``custom_id``. Commands whose form is longer
  (``/event create``, ``/event edit``) also take the form's fields as options and submit the
  form the core returns, filled in.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import re
import time
import zoneinfo
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, urlencode

import aiohttp
import discord
import structlog
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.config import ConfigError, DiscordConfig
from bot.core import Actor, CommandSpec, Param, Role
from bot.platforms import DeliveryError, Pace, Platform, SentRef, Target
from bot.text import Moment, render_moments
from bot.ui import CalendarEntry, Channel, Form, Message, Reply, Style

if TYPE_CHECKING:
    from datetime import datetime

    from bot.core import Core

log = structlog.get_logger("headsup.discord")

# discord.py's own defaults, kept so a later start without overrides goes back to them.
DISCORD_API_BASE = Route.BASE
DISCORD_GATEWAY = DiscordWebSocket.DEFAULT_GATEWAY

ACK_WITHIN = 0.1  # seconds: answer directly if the core is this quick, else defer first
BUSY_INFLIGHT = 1  # interactions in hand (this one included) beyond which it is deferred at once
READY_TIMEOUT = 60.0  # seconds to wait for the gateway to say the server is there
STOP_GRACE = 5.0  # seconds to let in-flight interactions finish on stop
ROLE_CACHE_SECONDS = 300.0  # how long a member's roles, as Discord told us, are trusted
MAX_RATELIMIT_WAIT = 30.0  # discord.py sleeps through shorter 429s; longer ones come back to us
SEEN_IDS = 2048  # interaction and message ids remembered here, a repeat's fast path
ALREADY_ANSWERED = 40060  # Discord: "Interaction has already been acknowledged"

MAX_CONTENT = 2000
MAX_MODAL_INPUTS = 5
MAX_LABEL = 45  # modal title and input labels
MAX_BUTTON_LABEL = 80
MAX_PLACEHOLDER = 100
MAX_INPUT_LENGTH = 4000
MAX_OPTION_LENGTH = 6000
MAX_DESCRIPTION = 100
MAX_EVENT_NAME = 100  # a scheduled event's name
MAX_EVENT_LOCATION = 100  # an external scheduled event's location
MAX_EVENT_DESCRIPTION = 1000
LINK_IN_DESCRIPTION = "Video call (the link is in the description)"
MAX_CUSTOM_ID = 100
MAX_CHOICES = 25  # autocomplete suggestions
MAX_CHOICE_NAME = 100
BUTTONS_PER_ROW = 5
# A modal's custom_id is the form's action, then "|" and the fields past the fifth, if any.
KEPT_FIELDS = "|"

# Discord cannot run a command that has subcommands without naming one, so a group's bare command
# (`/checkin`) becomes this subcommand (`/checkin now`).
BARE_SUBCOMMAND = "now"

MAX_WEEKS = 52  # a pause or a report: 1 to 52 weeks, as commands.checkin allows

WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# What each option asks for, by parameter name, where the usage word alone would be cryptic.
OPTION_DESCRIPTIONS = {
    "text": "What is happening (optional). Only you and your coach will see it.",
    "day": "The day of the week",
    "at": "The time, on the 24-hour clock, e.g. 08:00",
    "timezone": "Your timezone, e.g. Europe/London",
    "weeks": "A number of weeks",
    "event_id": "The event's id, e.g. E12",
    "span": "Hours like 18:00-22:00, or any",
    "number": "A number, or none",
}

DMS_CLOSED = (
    "A note: I couldn't send you a direct message recently — your Discord privacy settings "
    "don't allow messages from me. To get your check-ins and replies from a coach, please allow "
    "direct messages from this server's members (server menu → Privacy Settings)."
)
FORM_TOO_LATE = "Sorry — that took me too long to open the form. Please try once more."
FORM_EXPIRED = "Sorry — that form has expired. Please open it again."
FORM_TOO_LONG = (
    "Sorry — that form holds more than Discord can carry. Please give the details as the "
    "command's options instead."
)
SORRY = "Sorry — something went wrong on our side. Please try again in a moment."
LEAVE_GAP = "Please fill in {missing} too, or leave out {given}."


@dataclass(frozen=True)
class FormOption:
    """An option that fills a field of the form the command returns (see the module docstring)."""

    name: str
    description: str
    required: bool = False


EVENT_FIELDS = (
    ("title", "The event's title"),
    ("start", "Start, YYYY-MM-DD HH:MM in the network's timezone"),
    ("duration", "How long: minutes, or like 1h30m"),
    ("link", "The video-call link (https://…)"),
    ("description", "What it's about (optional)"),
    ("repeat_until", "Repeat weekly until YYYY-MM-DD (optional)"),
)

FORM_OPTIONS: dict[tuple[str, ...], tuple[FormOption, ...]] = {
    ("event", "create"): tuple(
        FormOption(name, text, required=i < 4) for i, (name, text) in enumerate(EVENT_FIELDS)
    ),
    ("event", "edit"): tuple(FormOption(name, text) for name, text in EVENT_FIELDS),
}

BUTTON_STYLES = {
    Style.DEFAULT: discord.ButtonStyle.secondary,
    Style.PRIMARY: discord.ButtonStyle.primary,
    Style.DANGER: discord.ButtonStyle.danger,
}

NO_MENTIONS = discord.AllowedMentions.none()


# --- buttons ---------------------------------------------------------------------------------


class ActionButton(discord.ui.DynamicItem[discord.ui.Button], template=r"(?s)(?P<action>.+)"):
    """Every button the bot shows: its custom_id is the neutral action id.

    Registered once as a dynamic item, so a press is understood from the custom_id alone —
    on any message, sent before or after a restart.
    """

    def __init__(
        self,
        action: str,
        label: str = "…",
        style: discord.ButtonStyle = discord.ButtonStyle.secondary,
        row: int | None = None,
    ) -> None:
        super().__init__(
            discord.ui.Button(label=label, style=style, custom_id=action, row=row), row=row
        )
        self.action = action

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> ActionButton:
        return cls(match["action"], item.label or "…", item.style)

    async def callback(self, interaction: discord.Interaction) -> None:
        client = interaction.client
        if isinstance(client, _Client):
            await client.platform.on_press(interaction, self.action)


def button_view(message: Message) -> discord.ui.View | None:
    """The message's buttons, five to a row; None when it has none."""
    if not message.buttons:
        return None
    view = discord.ui.View(timeout=None)
    for index, button in enumerate(message.buttons):
        view.add_item(
            ActionButton(
                button.action,
                _clip(button.label, MAX_BUTTON_LABEL),
                BUTTON_STYLES.get(button.style, discord.ButtonStyle.secondary),
                row=index // BUTTONS_PER_ROW,
            )
        )
    return view


def message_kwargs(message: Message, *, edit: bool = False) -> dict[str, Any]:
    """discord.py keyword arguments for sending (or, whole, replacing) a message."""
    kwargs: dict[str, Any] = {
        "content": _clip(render_moments(message.text, discord_moment), MAX_CONTENT),
        "allowed_mentions": NO_MENTIONS,
    }
    view = button_view(message)
    file = (
        discord.File(io.BytesIO(message.attachment.content), filename=message.attachment.filename)
        if message.attachment is not None
        else None
    )
    if edit:
        # An edit replaces the message whole: no buttons and no file unless the new one has them.
        kwargs["view"] = view
        kwargs["attachments"] = [file] if file is not None else []
    else:
        if view is not None:
            kwargs["view"] = view
        if file is not None:
            kwargs["file"] = file
    return kwargs


# --- forms -----------------------------------------------------------------------------------


def build_modal(form: Form, custom_id: str) -> discord.ui.Modal:
    """The form as a modal of at most five text inputs, named by the fields' names."""
    modal = discord.ui.Modal(title=_clip(form.title or "HeadsUp", MAX_LABEL), custom_id=custom_id)
    for field in form.fields[:MAX_MODAL_INPUTS]:
        modal.add_item(
            discord.ui.TextInput(
                label=_clip(field.label, MAX_LABEL),
                custom_id=field.name,
                style=discord.TextStyle.paragraph if field.multiline else discord.TextStyle.short,
                required=field.required,
                max_length=max(1, min(field.max_length, MAX_INPUT_LENGTH)),
                default=field.value[:MAX_INPUT_LENGTH] or None,
                placeholder=_clip(field.placeholder, MAX_PLACEHOLDER) or None,
            )
        )
    # Submissions are handled in on_interaction from the custom_id alone (so a form opened
    # before a restart still works); a stopped modal is not kept in discord.py's store.
    modal.stop()
    return modal


def modal_custom_id(form: Form) -> str:
    """The modal's custom_id: the form's action, then the prefilled fields past the fifth (which
    a modal cannot show) URL-encoded after a "|". A submission needs nothing else, so a form
    opened before a restart, or on another instance, still works. ValueError when it won't fit
    Discord's 100 characters."""
    kept = {f.name: f.value for f in form.fields[MAX_MODAL_INPUTS:] if f.value}
    custom_id = form.action
    if kept or KEPT_FIELDS in form.action:
        custom_id += KEPT_FIELDS + urlencode(kept)
    if len(custom_id) > MAX_CUSTOM_ID:
        raise ValueError("the form's action and kept fields are too long for a custom_id")
    return custom_id


def read_modal_custom_id(custom_id: str) -> tuple[str, dict[str, str]] | None:
    """The form's action and the fields its custom_id kept; None for kept fields in a shape
    this version cannot read (a form opened by an older one)."""
    action, separator, kept = custom_id.rpartition(KEPT_FIELDS)
    if not separator:
        return custom_id, {}
    try:
        pairs = parse_qsl(kept, keep_blank_values=True, strict_parsing=bool(kept))
    except ValueError:
        return None
    return action, dict(pairs)


def submitted_values(data: dict[str, Any]) -> dict[str, str]:
    """Field name → text from a modal submission (inputs in action rows or in labels)."""
    values: dict[str, str] = {}

    def walk(components: Any) -> None:
        if not isinstance(components, list):
            return  # a malformed submission: whatever is well formed still counts
        for component in components:
            if not isinstance(component, dict):
                continue
            custom_id = component.get("custom_id")
            if component.get("type") == 4 and isinstance(custom_id, str):
                value = component.get("value")
                values[custom_id] = value if isinstance(value, str) else ""
            walk(component.get("components"))
            if isinstance(component.get("component"), dict):
                walk([component["component"]])

    walk(data.get("components"))
    return values


# --- commands --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One application-command option, and how its value becomes a word of command text."""

    name: str
    description: str
    required: bool
    annotation: Any
    autocomplete: Literal["timezone", "event"] | None = None  # what it suggests as one types
    rest: bool = False
    form_field: bool = False


@dataclass(frozen=True)
class Invocation:
    """What a Discord command stands for: `/group words…` plus options that fill its form."""

    group: str
    words: tuple[str, ...]
    options: tuple[Option, ...]
    spec: CommandSpec


@cache
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


async def timezone_choices(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    """Up to 25 IANA timezone names containing what has been typed so far."""
    needle = current.strip().lower().replace(" ", "_")
    names = [z for z in _zone_names() if needle in z.lower()] if needle else list(_zone_names())
    names.sort(key=lambda z: (not z.lower().startswith(needle), "/" not in z, z))
    return [app_commands.Choice(name=z, value=z) for z in names[:MAX_CHOICES]]


def option_for(param: Param) -> Option:
    """The option for a command parameter: typed, with choices or autocomplete where it helps."""
    name = _option_name(param.name)
    description = OPTION_DESCRIPTIONS.get(param.name) or param.metavar.capitalize()
    autocomplete = None
    annotation: Any
    if param.choices:
        annotation = Literal[param.choices]  # type: ignore[valid-type]
    elif param.name == "day":
        annotation = Literal[WEEKDAY_NAMES]  # type: ignore[valid-type]
    elif param.name == "timezone":
        annotation = str
        autocomplete = "timezone"
    elif param.name == "event_id":
        annotation = str
        autocomplete = "event"
    elif param.name == "weeks":
        annotation = app_commands.Range[int, 1, MAX_WEEKS]
    elif param.kind is int and param.arg.parse is None:
        annotation = int
    elif param.arg.rest:
        limit = min(param.arg.max_length, MAX_OPTION_LENGTH)
        annotation = app_commands.Range[str, 1, limit]
    else:
        annotation = str
    return Option(
        name,
        _clip(description, MAX_DESCRIPTION),
        param.required,
        annotation,
        autocomplete,
        rest=param.arg.rest,
    )


def invocations(registry_commands: dict[tuple[str, ...], CommandSpec]) -> dict[str, Any]:
    """The Discord command tree for the registry: group → Invocation, or subcommand → Invocation.

    A group with subcommands becomes a Discord group; its bare command (unless hidden) becomes
    ``/group now``. A command without subcommands stays a top-level command.
    """
    tree: dict[str, Any] = {}
    for path, spec in sorted(registry_commands.items()):
        group = path[0]
        has_subcommands = any(p[0] == group and len(p) > 1 for p in registry_commands)
        words = path[1:]
        form_options = FORM_OPTIONS.get(path, ())
        # With its form's fields as options, a command's one-line text form is not offered.
        options = tuple(option_for(p) for p in spec.params if not (form_options and p.arg.rest))
        options += tuple(
            Option(o.name, o.description, o.required, str, form_field=True) for o in form_options
        )
        invocation = Invocation(group, words, options, spec)
        if not has_subcommands:
            if not spec.hidden:
                tree[group] = invocation
            continue
        if len(path) == 1 and spec.hidden:
            continue
        subcommand = path[1] if len(path) > 1 else BARE_SUBCOMMAND
        tree.setdefault(group, {})[subcommand] = invocation
    return tree


QUOTES_AS_APOSTROPHES = str.maketrans({'"': "'", "“": "'", "”": "'", "„": "'"})


def command_text(invocation: Invocation, values: dict[str, Any]) -> str:
    """The command text the core reads: subcommand words, then each option as a word.

    A value with spaces is quoted; the rest-of-line option goes last, as written. Raises
    ValueError (with a kind message) when an optional value comes after one left out.
    """
    words = list(invocation.words)
    skipped: str | None = None
    for option in invocation.options:
        if option.form_field:
            continue
        value = values.get(option.name)
        if value is None or value == "":
            skipped = skipped or option.name
            continue
        if skipped is not None:
            raise ValueError(LEAVE_GAP.format(missing=f"`{skipped}`", given=f"`{option.name}`"))
        text = str(value)
        if not option.rest:
            # One option is one word for the core: quotes of any kind inside become
            # apostrophes, and the whole is quoted when it has spaces or had quotes.
            plain = text.translate(QUOTES_AS_APOSTROPHES)
            if not plain or plain != text or any(c.isspace() for c in plain):
                plain = f'"{plain}"'
            text = plain
        words.append(text)
    return " ".join(words)


def _drop_repeated(reply: Reply, preface: str | None) -> None:
    """The core's answer starts with the preface too (for other platforms): it was sent."""
    if preface is not None and reply.messages and reply.messages[0].text == preface:
        reply.messages.pop(0)


def _option_name(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "_", name.lower())[:32] or "value"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- the platform ----------------------------------------------------------------------------


class DiscordPlatform(Platform):
    """One bot user in one Discord server (``guild_id``), plus DMs with its members."""

    name = "discord"
    # Discord's global limit is 50 requests a second per bot; 48 with a burst of two never
    # goes over it in any one second. discord.py minds the per-route limits itself.
    pace = Pace(per_second=48, concurrency=8)

    def __init__(self, config: DiscordConfig) -> None:
        self.config = config
        self.guild_id = int(config.guild_id)
        self._core: Core | None = None
        self._client: _Client | None = None
        self._gateway: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._inflight: set[asyncio.Task[Any]] = set()
        self._seen: OrderedDict[int, None] = OrderedDict()
        # user id → (roles, a member of the server?, when Discord told us)
        self._roles: dict[int, tuple[frozenset[Role], bool, float]] = {}
        self._dm_told: dict[str, datetime] = {}  # user id → the DM failure they were told of
        self._tree: dict[str, Any] = {}
        self.handled = 0  # interactions and DMs handled to the end (for tests and health)
        self.repeats = 0  # interactions and DMs ignored as repeats (for tests)

    # --- Platform -------------------------------------------------------------------------

    async def start(self, core: Core) -> None:
        """Log in, sync the commands to the server, connect the gateway, wait for the server."""
        self._core = core
        self._ready = asyncio.Event()
        point_discord_py_at(self.config)
        client = _Client(self)
        self._client = client
        try:
            await client.login(self.config.token.get_secret_value())
            self._gateway = asyncio.create_task(client.connect(reconnect=True), name="discord")
            ready = asyncio.create_task(self._ready.wait())
            done, _ = await asyncio.wait(
                {ready, self._gateway}, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            ready.cancel()
            if self._gateway in done:
                self._gateway.result()  # raises what stopped it
                raise ConfigError("discord: the gateway connection closed while starting")
            if not done:
                raise ConfigError(
                    f"discord: no answer from the gateway within {READY_TIMEOUT:.0f} s "
                    "(check discord.gateway_url and the network)"
                )
        except discord.LoginFailure:
            await self._close()
            raise ConfigError(
                "discord.token: Discord did not accept the bot token (copy it again from the "
                "Developer Portal → Bot → Reset Token)"
            ) from None
        except discord.PrivilegedIntentsRequired:
            await self._close()
            raise ConfigError(
                "discord: the bot asked for intents it has not been granted"
            ) from None
        except discord.HTTPException as exc:
            await self._close()
            raise ConfigError(_start_problem(exc, self.config)) from None
        except discord.ConnectionClosed as exc:
            await self._close()
            raise ConfigError(
                f"discord: the gateway closed the connection while starting (code {exc.code})"
            ) from None
        except (aiohttp.ClientError, OSError, discord.GatewayNotFound) as exc:
            await self._close()
            raise ConfigError(
                f"discord: cannot reach Discord at {self.config.api_base_url} "
                f"({type(exc).__name__}); check discord.api_base_url and the network"
            ) from None
        except BaseException:
            await self._close()
            raise
        log.info("discord.started", guild_id=self.guild_id, commands=len(self._tree))

    async def run(self) -> None:
        """Listen until stopped (the gateway reconnects by itself)."""
        if self._gateway is not None:
            await self._gateway

    async def stop(self) -> None:
        """Let interactions in hand finish, then disconnect."""
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=STOP_GRACE)
        await self._close()
        self._core = None
        log.info("discord.stopped")

    async def _close(self) -> None:
        client, gateway = self._client, self._gateway
        self._client, self._gateway = None, None
        if client is not None:
            await client.close()
        if gateway is not None:
            if not gateway.done():
                gateway.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await gateway

    @property
    def connected(self) -> bool:
        client, gateway = self._client, self._gateway
        return (
            client is not None
            and gateway is not None
            and not gateway.done()
            and client.is_ready()
            and not client.is_closed()
        )

    def has_channel(self, channel: Channel) -> bool:
        return bool(self._channel_id(channel.value, strict=False))

    async def send(self, target: Target, message: Message) -> SentRef:
        client = self.client
        with delivery_failures(bad="bad_recipient"):
            if target.kind == "dm":
                channel_id = target.dm_channel_id or await self._open_dm(target.recipient)
            else:
                channel_id = self._channel_id(target.recipient)
            channel = client.get_partial_messageable(int(channel_id))
            # The outbox row id as nonce (when the worker gives it): Discord then answers a
            # resend after a crash with the first message instead of posting a second.
            nonce = getattr(target, "nonce", None)
            sent = await channel.send(**message_kwargs(message), nonce=nonce)
        log.info("discord.sent", kind=target.kind, channel_id=channel_id, message_id=sent.id)
        return SentRef(str(channel_id), str(sent.id))

    async def edit(self, ref: SentRef, message: Message) -> None:
        client = self.client
        with delivery_failures(bad="bad_ref"):
            channel = client.get_partial_messageable(int(ref.channel_id))
            await channel.get_partial_message(int(ref.message_id)).edit(
                **message_kwargs(message, edit=True)
            )
        log.info("discord.edited", channel_id=ref.channel_id, message_id=ref.message_id)

    async def publish_calendar(self, entry: CalendarEntry, ref: SentRef | None) -> SentRef:
        """The event as a native scheduled event (external: Discord shows the location)."""
        fields = scheduled_event_fields(entry)
        with delivery_failures(bad="bad_ref"):
            guild = self.client.get_guild(self.guild_id) or await self.client.fetch_guild(
                self.guild_id
            )
            if ref is None:
                created = await guild.create_scheduled_event(
                    **fields,
                    entity_type=discord.EntityType.external,
                    privacy_level=discord.PrivacyLevel.guild_only,
                )
                log.info("discord.event_created", scheduled_event_id=created.id)
                return SentRef("", str(created.id))
            event = await guild.fetch_scheduled_event(int(ref.message_id), with_counts=False)
            if not entry.cancelled:
                await event.edit(**fields)
            elif event.status is discord.EventStatus.scheduled:
                await event.cancel()
            elif event.status is discord.EventStatus.active:
                await event.end()
            # Already over or cancelled: nothing left to change.
        log.info("discord.event_updated", scheduled_event_id=ref.message_id)
        return ref

    # --- helpers for the Platform side ------------------------------------------------------

    @property
    def core(self) -> Core:
        if self._core is None:
            raise RuntimeError("the Discord platform has not been started")
        return self._core

    @property
    def client(self) -> _Client:
        if self._client is None:
            raise DeliveryError("not_connected")
        return self._client

    def _channel_id(self, name: str, *, strict: bool = True) -> str:
        places = {
            Channel.ANNOUNCEMENTS.value: self.config.announce_channel_id,
            Channel.COORDINATORS.value: self.config.coordinator_channel_id,
        }
        found = places.get(name, "")
        if not found and strict:
            raise DeliveryError("unknown_channel", permanent=True)
        return found

    async def _open_dm(self, user_id: str) -> int:
        """The DM channel with a member (POST /users/@me/channels), for a first DM."""
        channel = await self.client.create_dm(discord.Object(int(user_id)))
        return channel.id

    # --- commands: building and syncing ----------------------------------------------------

    async def sync_commands(self, client: _Client) -> None:
        """Register every command of the registry on the server, replacing what was there."""
        guild = discord.Object(self.guild_id)
        client.tree.clear_commands(guild=guild)
        self._tree = invocations(self.core.registry.commands)
        for name, node in self._tree.items():
            client.tree.add_command(self._app_command(name, node), guild=guild)
        await client.tree.sync(guild=guild)
        log.info("discord.commands_synced", guild_id=self.guild_id, commands=len(self._tree))

    def _app_command(self, name: str, node: Any) -> app_commands.Command | app_commands.Group:
        if isinstance(node, Invocation):
            return self._leaf(name, node)
        bare = self.core.registry.commands.get((name,))
        description = (bare.help if bare is not None else "") or _group_help(name, node)
        group = app_commands.Group(name=name, description=_clip(description, MAX_DESCRIPTION))
        for sub_name, invocation in sorted(node.items()):
            group.add_command(self._leaf(sub_name, invocation))
        return group

    def _leaf(self, name: str, invocation: Invocation) -> app_commands.Command:
        platform = self

        async def callback(interaction: discord.Interaction, **values: Any) -> None:
            await platform.on_command(interaction, invocation, values)

        parameters = [
            inspect.Parameter(
                "interaction",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=discord.Interaction,
            )
        ]
        for option in invocation.options:
            parameters.append(
                inspect.Parameter(
                    option.name,
                    inspect.Parameter.KEYWORD_ONLY,
                    annotation=option.annotation,
                    default=inspect.Parameter.empty if option.required else None,
                )
            )
        callback.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        callback.__discord_app_commands_param_description__ = {  # type: ignore[attr-defined]
            o.name: o.description for o in invocation.options
        }
        suggest = {"timezone": timezone_choices, "event": self.event_choices}
        callback.__discord_app_commands_param_autocomplete__ = {  # type: ignore[attr-defined]
            o.name: suggest[o.autocomplete]
            for o in invocation.options
            if o.autocomplete is not None
        }
        description = invocation.spec.help or invocation.spec.name
        return app_commands.Command(
            name=name, description=_clip(description, MAX_DESCRIPTION), callback=callback
        )

    # --- incoming --------------------------------------------------------------------------

    async def event_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """Upcoming events matching what has been typed, for a coordinator's `/event edit` or
        `/event cancel` (nobody else is offered any): "E12 — Title (Tue 13 Jan 19:00)"."""
        from commands.events import events_to_choose

        try:
            actor = await self.actor_of(interaction.user)
            found = await events_to_choose(
                self.core.services, actor, current, limit=MAX_CHOICES, max_label=MAX_CHOICE_NAME
            )
        except Exception as exc:  # no suggestions is better than an error while typing
            log.warning("discord.suggestions_failed", error=type(exc).__name__)
            return []
        return [app_commands.Choice(name=label, value=code) for label, code in found]

    async def on_command(
        self, interaction: discord.Interaction, invocation: Invocation, values: dict[str, Any]
    ) -> None:
        """A slash command: the preface first (if any), then the core's answer."""
        if self._repeat(interaction.id):
            return
        async with self._handling() as tally:
            name = "/" + " ".join((invocation.group, *invocation.words))
            log.info("discord.command", command=name, interaction_id=interaction.id)
            try:
                preface = await self._preface(interaction, invocation.spec, in_dm=False)
                actor = await self.actor_of(interaction.user)
                try:
                    text = command_text(invocation, values)
                except ValueError as exc:
                    await self._render(interaction, Reply.of(str(exc)), in_dm=False)
                    return
                reply = await self._in_time(
                    interaction,
                    self.core.command(actor, invocation.group, text, event_id=str(interaction.id)),
                    thinking=True,
                )
                _drop_repeated(reply, preface)
                form_values = {
                    o.name: str(values[o.name])
                    for o in invocation.options
                    if o.form_field and values.get(o.name) not in (None, "")
                }
                if reply.form is not None and form_values:
                    filled = {f.name: f.value for f in reply.form.fields} | form_values
                    reply = await self._in_time(
                        interaction,
                        self.core.submit(actor, reply.form.action, filled),
                        thinking=True,
                    )
                dms_failed_at = await self._dms_closed_since_told(actor)
                if dms_failed_at is not None:
                    reply.messages.append(Message(DMS_CLOSED))
                await self._render(interaction, reply, in_dm=False)
                if dms_failed_at is not None:
                    self._dm_told[actor.user_id] = dms_failed_at  # told: it was delivered
            except _Repeat:
                tally.repeat = True
            except Exception as exc:
                await self._failed(interaction, "command", exc)

    async def on_press(self, interaction: discord.Interaction, action: str) -> None:
        """A button: the core's answer may replace the message the button is on."""
        if self._repeat(interaction.id):
            return
        async with self._handling() as tally:
            in_dm = interaction.guild_id is None
            log.info(
                "discord.press",
                action=action.partition(":")[0],
                interaction_id=interaction.id,
                in_dm=in_dm,
            )
            try:
                # A button that runs a command as if typed (*Talk to a coach*) shows that
                # command's preface at once, as the command does.
                spec = self._command_run_by(action)
                preface = await self._preface(interaction, spec, in_dm=in_dm)
                actor = await self.actor_of(interaction.user)
                reply = await self._in_time(
                    interaction,
                    self.core.press(actor, action, in_dm=in_dm, event_id=str(interaction.id)),
                    thinking=False,
                )
                _drop_repeated(reply, preface)
                # The preface is the answer now: an update must not replace it, so it follows.
                await self._render(interaction, reply, in_dm=in_dm, on_message=preface is None)
            except _Repeat:
                tally.repeat = True
            except Exception as exc:
                await self._failed(interaction, "press", exc)

    async def on_modal(self, interaction: discord.Interaction) -> None:
        """A submitted modal: its custom_id is the form's action."""
        if self._repeat(interaction.id):
            return
        async with self._handling() as tally:
            data: dict[str, Any] = dict(interaction.data or {})  # type: ignore[arg-type]
            in_dm = interaction.guild_id is None
            read = read_modal_custom_id(str(data.get("custom_id", "")))
            action, kept = read if read is not None else ("", {})
            log.info(
                "discord.submit",
                action=action.partition(":")[0],
                interaction_id=interaction.id,
                in_dm=in_dm,
            )
            try:
                if read is None:
                    await self._render(interaction, Reply.of(FORM_EXPIRED), in_dm=in_dm)
                    return
                values = kept | submitted_values(data)
                actor = await self.actor_of(interaction.user)
                # A form opened from a button may be deferred as an update of that message;
                # one opened from a command has no message to update, so it "thinks" instead.
                reply = await self._in_time(
                    interaction,
                    self.core.submit(
                        actor, action, values, in_dm=in_dm, event_id=str(interaction.id)
                    ),
                    thinking=interaction.message is None,
                    ephemeral=not in_dm,
                )
                await self._render(
                    interaction, reply, in_dm=in_dm, on_message=interaction.message is not None
                )
            except _Repeat:
                tally.repeat = True
            except Exception as exc:
                await self._failed(interaction, "submit", exc)

    async def on_direct_message(self, message: discord.Message) -> None:
        """A DM to the bot (not a command): the core decides (a relay, or the menu)."""
        client = self._client
        if (
            client is None
            or message.guild is not None
            or message.author.bot
            or (client.user is not None and message.author.id == client.user.id)
            or message.type not in (discord.MessageType.default, discord.MessageType.reply)
            or not message.content.strip()
        ):
            return
        if self._repeat(message.id):
            return
        async with self._handling() as tally:
            log.info("discord.direct_message", message_id=message.id, user_id=message.author.id)
            try:
                actor = await self.actor_of(message.author)
                reply = await self.core.message(actor, message.content, event_id=str(message.id))
                if reply.repeat:
                    tally.repeat = True
                    return
                outgoing = list(reply.messages)
                if reply.update is not None:
                    outgoing.insert(0, reply.update)
                if reply.form is not None:
                    log.warning("discord.form_from_dm", action=reply.form.action.partition(":")[0])
                for item in outgoing:
                    await message.channel.send(**message_kwargs(item))
            except Exception as exc:
                log.exception("discord.dm_failed", message_id=message.id, error=type(exc).__name__)

    def guild_available(self, guild: discord.Guild) -> None:
        if guild.id == self.guild_id:
            self._ready.set()

    def gateway_ready(self) -> None:
        # Every server in READY has arrived (or timed out); start even if ours wasn't there,
        # so DMs and delivery still work, but say so.
        client = self._client
        if client is not None and client.get_guild(self.guild_id) is None:
            log.warning("discord.guild_missing", guild_id=self.guild_id)
        self._ready.set()

    # --- who is asking -----------------------------------------------------------------------

    async def actor_of(self, user: discord.User | discord.Member) -> Actor:
        """The neutral actor: roles from the member's server roles (looked up for a DM). Someone
        who is not in the network's server is a stranger, whom the core turns away."""
        if isinstance(user, discord.Member) and user.guild.id == self.guild_id:
            roles, member = self._roles_from([r.id for r in user.roles]), True
            self._roles[user.id] = (roles, True, time.monotonic())
        elif isinstance(user, discord.Member):
            roles, member = frozenset(), False  # another server's member
        else:
            roles, member = await self._roles_of(user.id)
        return Actor("discord", str(user.id), user.display_name, roles, stranger=not member)

    def _roles_from(self, role_ids: list[int]) -> frozenset[Role]:
        found = set()
        if self.config.coach_role_id and int(self.config.coach_role_id) in role_ids:
            found.add(Role.COACH)
        if self.config.coordinator_role_id and int(self.config.coordinator_role_id) in role_ids:
            found.add(Role.COORDINATOR)
        return frozenset(found)

    async def _roles_of(self, user_id: int) -> tuple[frozenset[Role], bool]:
        """A member's roles when the event itself doesn't carry them (DMs), and whether they are
        in the server at all: cached, else asked for (GET /guilds/{id}/members/{user}, which
        needs no privileged intent). If Discord can't say, they are taken to be a member: a
        person in crisis is never turned away for an outage."""
        cached = self._roles.get(user_id)
        if cached is not None and time.monotonic() - cached[2] < ROLE_CACHE_SECONDS:
            return cached[0], cached[1]
        try:
            data = await self.client.http.get_member(self.guild_id, user_id)
        except discord.NotFound:
            roles, member = frozenset(), False
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            log.warning("discord.roles_unknown", user_id=user_id, error=type(exc).__name__)
            return (cached[0], cached[1]) if cached is not None else (frozenset(), True)
        else:
            roles, member = self._roles_from([int(r) for r in data.get("roles", [])]), True
        self._roles[user_id] = (roles, member, time.monotonic())
        return roles, member

    async def _dms_closed_since_told(self, actor: Actor) -> datetime | None:
        """When a DM to this member last failed for good, if they haven't been told since."""
        from sqlmodel import select

        from storage.models import Identity

        try:
            async with self.core.services.database.session() as session:
                failed_at = (
                    await session.exec(
                        select(Identity.dm_failed_at).where(
                            Identity.platform == self.name, Identity.user_id == actor.user_id
                        )
                    )
                ).first()
        except Exception as exc:
            log.warning("discord.dm_state_unknown", error=type(exc).__name__)
            return None
        if failed_at is None or self._dm_told.get(actor.user_id) == failed_at:
            return None
        return failed_at

    # --- answering an interaction ----------------------------------------------------------

    async def _preface(
        self, interaction: discord.Interaction, spec: CommandSpec | None, *, in_dm: bool
    ) -> str | None:
        """Answer with the command's preface (``/support``'s signposting) at once, before the
        core runs, so it is the interaction's direct answer and never deferred."""
        if spec is None or spec.preface is None:
            return None
        preface = spec.preface(self.core.services.settings)
        with _answered_elsewhere():
            await interaction.response.send_message(
                _clip(preface, MAX_CONTENT), ephemeral=not in_dm, allowed_mentions=NO_MENTIONS
            )
        return preface

    def _command_run_by(self, action: str) -> CommandSpec | None:
        from commands.help import command_run_by

        return command_run_by(self.core.registry, action)

    async def _in_time(
        self,
        interaction: discord.Interaction,
        work: Awaitable[Reply],
        *,
        thinking: bool,
        ephemeral: bool = True,
    ) -> Reply:
        """Run the core; if it is slow, defer the interaction so Discord doesn't time it out.

        While many interactions are in hand at once, defer before the core even starts: the
        core's work for the others would otherwise hold up this one's quick-answer timer."""
        if len(self._inflight) > BUSY_INFLIGHT and not interaction.response.is_done():
            await self._defer(interaction, thinking=thinking, ephemeral=ephemeral)
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=ACK_WITHIN)
        if not done and not interaction.response.is_done():
            await self._defer(interaction, thinking=thinking, ephemeral=ephemeral)
        reply = await task
        if reply.repeat:
            raise _Repeat
        return reply

    async def _defer(
        self, interaction: discord.Interaction, *, thinking: bool, ephemeral: bool
    ) -> None:
        log.info("discord.deferred", interaction_id=interaction.id)
        with _answered_elsewhere():
            if thinking:
                await interaction.response.defer(ephemeral=ephemeral, thinking=True)
            else:
                await interaction.response.defer()

    async def _render(
        self,
        interaction: discord.Interaction,
        reply: Reply,
        *,
        in_dm: bool,
        on_message: bool = False,
    ) -> None:
        response = interaction.response
        messages = list(reply.messages)
        opened = False
        if reply.form is not None:
            try:
                custom_id = modal_custom_id(reply.form)
            except ValueError:
                messages.append(Message(FORM_TOO_LONG))
            else:
                if response.is_done():
                    messages.append(Message(FORM_TOO_LATE))
                else:
                    # The modal is the answer; anything said with it follows as a follow-up.
                    await response.send_modal(build_modal(reply.form, custom_id))
                    opened = True
        if reply.update is not None and not opened:
            if on_message:
                kwargs = message_kwargs(reply.update, edit=True)
                if response.is_done():
                    await interaction.edit_original_response(**kwargs)
                else:
                    await response.edit_message(**kwargs)
            else:
                messages.insert(0, reply.update)
        ephemeral = not in_dm
        for item in messages:
            kwargs = message_kwargs(item)
            if response.is_done():
                await interaction.followup.send(**kwargs, ephemeral=ephemeral)
            else:
                await response.send_message(**kwargs, ephemeral=ephemeral)
        if not response.is_done():
            await response.defer()  # a press with nothing to say: acknowledge it quietly

    async def _failed(self, interaction: discord.Interaction, what: str, exc: Exception) -> None:
        log.error(f"discord.{what}_failed", interaction_id=interaction.id, error=type(exc).__name__)
        with contextlib.suppress(discord.HTTPException, aiohttp.ClientError, OSError):
            if interaction.response.is_done():
                await interaction.followup.send(
                    SORRY, ephemeral=interaction.guild_id is not None, allowed_mentions=NO_MENTIONS
                )
            else:
                await interaction.response.send_message(
                    SORRY, ephemeral=interaction.guild_id is not None, allowed_mentions=NO_MENTIONS
                )

    # --- bookkeeping -----------------------------------------------------------------------

    def _repeat(self, event_id: int) -> bool:
        """True for an interaction or message this process has seen: Discord may resend one
        after a resume. Between instances (each gateway connection gets every event) the core
        decides, recording the id in the request's own unit of work."""
        if event_id in self._seen:
            log.info("discord.repeat_ignored", event_id=event_id)
            self.repeats += 1
            return True
        self._seen[event_id] = None
        while len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        return False

    @contextlib.asynccontextmanager
    async def _handling(self):
        """Count this handler as in flight, so stop() lets it finish; at the end, count it as
        handled, or as a repeat when it turned out to be one."""
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        tally = _Tally()
        try:
            yield tally
        finally:
            if task is not None:
                self._inflight.discard(task)
            if tally.repeat:
                self.repeats += 1
            else:
                self.handled += 1


class _Repeat(Exception):
    """This interaction was handled already (here before a restart, or by another instance)."""


@dataclass
class _Tally:
    repeat: bool = False


@contextlib.contextmanager
def _answered_elsewhere() -> Iterator[None]:
    """An interaction another instance has already answered (both hold a gateway connection)
    is that instance's: stop here quietly."""
    try:
        yield
    except discord.HTTPException as exc:
        if exc.code == ALREADY_ANSWERED:
            raise _Repeat from None
        raise


# --- the discord.py client -------------------------------------------------------------------


class _Client(discord.Client):
    """discord.py's client, wired to one DiscordPlatform."""

    def __init__(self, platform: DiscordPlatform) -> None:
        # The bot never joins voice: no warning about voice libraries that aren't installed.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        intents = discord.Intents.none()
        intents.guilds = True  # the server, its roles and channels
        intents.dm_messages = True  # DMs to the bot (their text needs no privileged intent)
        super().__init__(
            intents=intents,
            application_id=int(platform.config.application_id),
            allowed_mentions=NO_MENTIONS,
            max_ratelimit_timeout=MAX_RATELIMIT_WAIT,
        )
        self.platform = platform
        self.tree = app_commands.CommandTree(self)
        self.tree.on_error = self._on_tree_error  # type: ignore[method-assign]
        # discord.py parses each gateway event in its reader, where an exception ends the
        # connection: one malformed event would take the bot off Discord. Drop it instead.
        parsers = self._connection.parsers
        for name, parse in list(parsers.items()):
            parsers[name] = _guarded(name, parse)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(ActionButton)
        await self.platform.sync_commands(self)

    async def on_guild_available(self, guild: discord.Guild) -> None:
        self.platform.guild_available(guild)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        self.platform.guild_available(guild)

    async def on_ready(self) -> None:
        self.platform.gateway_ready()

    async def on_message(self, message: discord.Message) -> None:
        await self.platform.on_direct_message(message)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        if interaction.type is discord.InteractionType.modal_submit:
            await self.platform.on_modal(interaction)

    async def _on_tree_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        # E.g. Discord still showing an older version of a command: say sorry, log the kind.
        log.error(
            "discord.command_error", interaction_id=interaction.id, error=type(error).__name__
        )
        with contextlib.suppress(discord.HTTPException, aiohttp.ClientError, OSError):
            if not interaction.response.is_done():
                await interaction.response.send_message(
                    SORRY, ephemeral=True, allowed_mentions=NO_MENTIONS
                )

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        log.exception("discord.event_error", handler=event_method)


def discord_moment(moment: Moment) -> str:
    """A time as Discord's timestamp markup, which each reader sees in their own timezone."""
    if moment.end is None:
        return f"<t:{moment.start}:f>"
    if moment.end - moment.start < 24 * 3600:
        return f"<t:{moment.start}:f>–<t:{moment.end}:t>"
    return f"<t:{moment.start}:f> – <t:{moment.end}:f>"


def scheduled_event_fields(entry: CalendarEntry) -> dict[str, Any]:
    """Name, times, location and description within Discord's limits. The video link is the
    location when it fits in 100 characters, else it goes at the top of the description."""
    description = entry.description
    if entry.link is None:
        location = entry.place
    elif len(entry.link) <= MAX_EVENT_LOCATION:
        location = entry.link
    else:
        location = LINK_IN_DESCRIPTION
        description = f"Video link: {entry.link}\n\n{description}"
    return {
        "name": _clip(entry.title, MAX_EVENT_NAME),
        "start_time": entry.starts_at,
        "end_time": entry.ends_at,
        "location": _clip(location, MAX_EVENT_LOCATION),
        "description": _clip(description, MAX_EVENT_DESCRIPTION),
    }


def _guarded(name: str, parse: Callable[[Any], Any]) -> Callable[[Any], None]:
    def guarded(data: Any) -> None:
        try:
            parse(data)
        except Exception as exc:
            log.error("discord.bad_event", event_type=name, error=type(exc).__name__)

    return guarded


def point_discord_py_at(config: DiscordConfig) -> None:
    """Aim discord.py at the configured REST base and gateway (a proxy, or a test double).

    Both are class attributes in discord.py, so they apply to the whole process — there is one
    Discord connection per process.
    """
    Route.BASE = config.api_base_url.rstrip("/")
    DiscordWebSocket.DEFAULT_GATEWAY = (
        yarl.URL(config.gateway_url) if config.gateway_url else DISCORD_GATEWAY
    )


@contextlib.contextmanager
def delivery_failures(*, bad: str) -> Iterator[None]:
    """Discord's exceptions while delivering, as the worker's kinds of failure; a ValueError
    (an id that is not a number) is the permanent failure `bad`."""
    try:
        yield
    except discord.RateLimited as exc:
        raise DeliveryError("429", retry_after=exc.retry_after) from None
    except discord.HTTPException as exc:
        raise delivery_error(exc) from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise DeliveryError(f"network:{type(exc).__name__}") from None
    except ValueError:
        raise DeliveryError(bad, permanent=True) from None


def delivery_error(exc: discord.HTTPException) -> DeliveryError:
    """Discord's answer as the delivery worker's kind of failure."""
    if exc.code == 50007:  # Cannot send messages to this user: their DMs are closed to us
        return DeliveryError("50007", permanent=True)
    if exc.status == 429:  # still limited after discord.py's own waits
        return DeliveryError("429", retry_after=MAX_RATELIMIT_WAIT)
    if exc.status >= 500:
        return DeliveryError(f"http_{exc.status}")
    code = f"{exc.status}:{exc.code}"
    if exc.status in (400, 404):  # malformed, or the channel/message is gone: retrying won't help
        return DeliveryError(code, permanent=True)
    return DeliveryError(code)  # e.g. 403 missing permissions: an admin can fix it


def _start_problem(exc: discord.HTTPException, config: DiscordConfig) -> str:
    if exc.status == 403 or exc.code in (50001, 10004):
        return (
            f"discord: Discord refused to set up the commands in server {config.guild_id} "
            f"(HTTP {exc.status}, code {exc.code}) — is the bot in that server, invited with "
            "the bot and applications.commands scopes, and is discord.guild_id right?"
        )
    return (
        f"discord: Discord answered HTTP {exc.status} (code {exc.code}) while starting; "
        "check discord.application_id and discord.guild_id"
    )


def _group_help(name: str, node: dict[str, Invocation]) -> str:
    return "Commands: " + ", ".join(f"/{name} {sub}" for sub in sorted(node))
