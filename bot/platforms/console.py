"""The console platform: chat with the bot in a terminal, or pipe a script through it.

Each input line is one of (SPEC §5): ``/command args``, ``:as NAME``, ``:click TEXT|N``,
``:advance DURATION``, ``:echo TEXT``, or a DM to the bot. Every message the bot sends is printed
as a block headed by where it went. A line is handled completely — including every message it
causes to be sent — before the next is read, so a piped script behaves like a person typing.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TextIO

import structlog

from bot.config import ConsoleConfig
from bot.core import Actor, Core, Role
from bot.durations import parse_duration
from bot.platforms import DeliveryError, Platform, SentRef, Target
from bot.text import plain_moments
from bot.ui import Channel, Form, Message, Reply

log = structlog.get_logger("headsup.console")


@dataclass
class Shown:
    """A message printed to the console, kept so `:click` and edits can find it again."""

    id: int
    where: str  # "DM alice", "ephemeral alice", "#announcements"
    audience: str | None  # the one user who can see it; None for a channel post
    message: Message
    in_dm: bool


@dataclass
class OpenForm:
    form: Form
    actor: Actor
    in_dm: bool
    values: dict[str, str] = field(default_factory=dict)

    @property
    def next_field(self):
        return self.form.fields[len(self.values)]

    @property
    def complete(self) -> bool:
        return len(self.values) == len(self.form.fields)


class ConsolePlatform(Platform):
    """Reads lines from standard input, prints the chat to standard output."""

    name = "console"

    def __init__(
        self,
        config: ConsoleConfig,
        *,
        settle: Callable[[], Awaitable[None]],
        advance: Callable[[timedelta], Awaitable[None]],
        stdin: TextIO | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.config = config
        self.user = config.user
        self._settle = settle
        self._advance = advance
        self._stdin = stdin or sys.stdin
        self._out = out or sys.stdout
        self._core: Core | None = None
        self._shown: list[Shown] = []
        # Message ids are stored with each sent outbox row; a restarted console numbers its
        # messages from 1 again, so the ids carry this run's token to never match an old one.
        self._run = uuid.uuid4().hex[:8]
        self._form: OpenForm | None = None

    # --- Platform -------------------------------------------------------------------------

    async def start(self, core: Core) -> None:
        self._core = core
        if self._stdin.isatty():
            self._print(
                f"HeadsUp console — you are {self.user!r}. Try /headsup help; "
                ":as NAME switches user; Ctrl-D quits.\n"
            )

    async def run(self) -> None:
        """Read lines until end of input."""
        while True:
            if self._stdin.isatty():
                self._print(f"{self.user}> ", end="")
            line = await asyncio.to_thread(self._stdin.readline)
            if not line:
                return
            await self.handle_line(line.rstrip("\r\n"))

    async def stop(self) -> None:
        self._core = None

    async def send(self, target: Target, message: Message) -> SentRef:
        if target.kind == "dm":
            where, audience, in_dm = f"DM {target.recipient}", target.recipient, True
        else:
            try:
                channel = Channel(target.recipient)
            except ValueError:
                raise DeliveryError("unknown_channel", permanent=True) from None
            where, audience, in_dm = f"#{channel.value}", None, False
        shown = self._show(where, audience, message, in_dm)
        return SentRef(where, f"{self._run}-{shown.id}")

    async def edit(self, ref: SentRef, message: Message) -> None:
        run, _, number = ref.message_id.rpartition("-")
        shown = self._find(int(number)) if run == self._run and number.isdigit() else None
        if shown is None:
            raise DeliveryError("unknown_message", permanent=True)
        shown.message = message
        self._print_block(f"edited {shown.where}", message)

    # --- input ----------------------------------------------------------------------------

    async def handle_line(self, line: str) -> None:
        """Handle one input line completely, including every message it causes."""
        if self._form is not None:
            await self._answer_form(line)
        elif line.startswith(":"):
            await self._console_command(line)
        elif line.startswith("/"):
            group, _, text = line[1:].partition(" ")
            if not group:
                self._note("type a command after the slash, e.g. /headsup help")
                return
            reply = await self.core.command(self.actor(), group, text.strip())
            await self._render(reply, self.actor(), in_dm=False, origin=None)
        elif line.strip():
            reply = await self.core.message(self.actor(), line)
            await self._render(reply, self.actor(), in_dm=True, origin=None)
        try:
            await self._settle()
        except Exception as exc:
            # The database may be down: the person was already told; what is queued stays
            # queued and goes out with a later line. The console must keep reading.
            log.error("console.settle_failed", error=type(exc).__name__)

    async def _console_command(self, line: str) -> None:
        verb, _, arg = line[1:].partition(" ")
        arg = arg.strip()
        if verb == "as":
            if not arg:
                self._note("usage: :as NAME")
                return
            self.user = arg
        elif verb == "echo":
            self._print(arg)
        elif verb == "advance":
            try:
                delta = parse_duration(arg)
            except ValueError as exc:
                self._note(f"usage: :advance DURATION (90m, 2h, 7d) — {exc}")
                return
            try:
                await self._advance(delta)
            except Exception as exc:
                log.error("console.advance_failed", error=type(exc).__name__)
                self._note("could not finish :advance (is the database down?); see the log")
        elif verb == "click":
            await self._click(arg)
        else:
            self._note(f"unknown console command :{verb} — use :as, :click, :advance or :echo")

    async def _click(self, arg: str) -> None:
        if not arg:
            self._note("usage: :click TEXT or :click N")
            return
        visible = [s for s in reversed(self._shown) if s.message.buttons and self._sees(s)]
        if arg.isdigit():
            if not visible:
                self._note("there is no message with buttons to click")
                return
            shown, index = visible[0], int(arg) - 1
            if not 0 <= index < len(shown.message.buttons):
                self._note(f"that message has buttons 1 to {len(shown.message.buttons)}")
                return
        else:
            needle = arg.lower()
            for shown in visible:
                matches = [
                    i for i, b in enumerate(shown.message.buttons) if needle in b.label.lower()
                ]
                if matches:
                    index = matches[0]
                    break
            else:
                self._note(f"no button labelled {arg!r} to click")
                return
        actor = self.actor()
        button = shown.message.buttons[index]
        reply = await self.core.press(actor, button.action, in_dm=shown.in_dm)
        await self._render(reply, actor, in_dm=shown.in_dm, origin=shown)

    async def _answer_form(self, line: str) -> None:
        assert self._form is not None
        open_form = self._form
        field_ = open_form.next_field
        # An empty line leaves the field as it is: empty stays empty, a prefilled value stays.
        open_form.values[field_.name] = line.strip() or field_.value
        if not open_form.complete:
            self._ask(open_form.next_field)
            return
        self._form = None
        reply = await self.core.submit(
            open_form.actor, open_form.form.action, open_form.values, in_dm=open_form.in_dm
        )
        await self._render(reply, open_form.actor, in_dm=open_form.in_dm, origin=None)

    # --- output ---------------------------------------------------------------------------

    async def _render(
        self, reply: Reply, actor: Actor, *, in_dm: bool, origin: Shown | None
    ) -> None:
        if reply.update is not None and origin is not None:
            origin.message = reply.update
            self._print_block(f"edited {origin.where}", reply.update)
        where = f"DM {actor.user_id}" if in_dm else f"ephemeral {actor.user_id}"
        for message in reply.messages:
            self._show(where, actor.user_id, message, in_dm)
        if reply.form is not None:
            self._form = OpenForm(reply.form, actor, in_dm)
            self._print(f"[form {reply.form.title}]")
            self._ask(reply.form.fields[0])

    def _ask(self, form_field) -> None:
        if form_field.value:
            hint = f" [now: {form_field.value}] (an empty line keeps it)"
        elif form_field.required:
            hint = ""
        else:
            hint = " (optional — an empty line leaves it empty)"
        self._print(f"{form_field.label}{hint}:")

    def _show(self, where: str, audience: str | None, message: Message, in_dm: bool) -> Shown:
        shown = Shown(len(self._shown) + 1, where, audience, message, in_dm)
        self._shown.append(shown)
        self._print_block(where, message)
        return shown

    def _print_block(self, header: str, message: Message) -> None:
        lines = [f"[{header}]", plain_moments(message.text)]
        if message.buttons:
            lines.append("  ".join(f"[{i}] {b.label}" for i, b in enumerate(message.buttons, 1)))
        if message.attachment is not None:
            lines.append(f"[file {message.attachment.filename}]")
            if message.attachment.is_text:
                content = message.attachment.content.decode("utf-8", "replace")
                # Calendar files use CRLF line ends; print them as the terminal's own lines.
                lines.append(content.replace("\r\n", "\n").rstrip("\n"))
        self._print("\n".join(lines) + "\n")

    def _note(self, text: str) -> None:
        self._print(f"[console] {text}")

    def _print(self, text: str, end: str = "\n") -> None:
        self._out.write(text + end)
        self._out.flush()

    # --- helpers --------------------------------------------------------------------------

    @property
    def core(self) -> Core:
        if self._core is None:
            raise RuntimeError("the console platform has not been started")
        return self._core

    def actor(self) -> Actor:
        """The current console user, with roles from the [console] config."""
        roles = set()
        if self.user in self.config.coaches:
            roles.add(Role.COACH)
        if self.user in self.config.coordinators:
            roles.add(Role.COORDINATOR)
        return Actor("console", self.user, self.user, frozenset(roles))

    def _sees(self, shown: Shown) -> bool:
        return shown.audience is None or shown.audience == self.user

    def _find(self, shown_id: int) -> Shown | None:
        if 1 <= shown_id <= len(self._shown):
            return self._shown[shown_id - 1]
        return None
