"""The neutral core: who is asking, what they asked, the command registry, and the dispatcher.

Adapters translate a platform event into one of the calls on ``Core`` — a slash command, a
button press, a form submission, a direct message, or opening one's home page — and render the
``Reply`` it returns.
Commands are plain async functions registered on a ``Registry``; a command's docstring is its
help and its signature is its argument parser. Role checks happen here, never in an adapter.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args, get_origin

import structlog
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.errors import Refused, Unavailable, UsageError, UserError
from bot.ui import Destination, Form, Message, Priority, Reply
from storage.db import is_connection_error

if typing.TYPE_CHECKING:
    from bot.clock import Clock
    from bot.config import Settings
    from bot.delivery import Outbox
    from storage.crypto import Cipher
    from storage.db import Database
    from storage.models import Member

log = structlog.get_logger("headsup.core")

MAX_INPUT = 5000  # characters of free text accepted in any one command, form field or DM
# A whole-number argument is an id, a count or a score: it must fit a 32-bit database column
# (PostgreSQL's INTEGER), or a forged button id would fail in the database instead of kindly.
MAX_WHOLE = 2**31 - 1


class Role(StrEnum):
    MEMBER = "member"
    COACH = "coach"
    COORDINATOR = "coordinator"


ROLE_NAMES = {Role.COACH: "coaches", Role.COORDINATOR: "coordinators"}


@dataclass(frozen=True)
class Actor:
    """Who is asking, as their platform told us: the adapter fills this in, the core trusts it."""

    platform: str
    user_id: str
    display_name: str
    roles: frozenset[Role] = frozenset()
    timezone: str | None = None  # the platform's idea of their zone (Slack's users.info), if any
    # Not in the network's server or workspace (another guild, an external Slack user): the
    # core refuses them everything and stores nothing about them.
    stranger: bool = False

    def has(self, role: Role) -> bool:
        return role == Role.MEMBER or role in self.roles


@dataclass
class Services:
    """Everything a command or a due job may use, built once by the app."""

    settings: Settings
    clock: Clock
    database: Database
    cipher: Cipher
    outbox: Outbox
    registry: Registry


@dataclass
class Context:
    """One unit of work for one person: a session, who they are, and the time."""

    services: Services
    session: AsyncSession
    actor: Actor
    member: Member
    now: datetime
    in_dm: bool = False
    # A direct message written as a reply: the platform's id of the message replied to.
    reply_to: str | None = None

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def member_id(self) -> int:
        assert self.member.id is not None
        return self.member.id

    async def send(
        self,
        to: Destination,
        message: Message,
        *,
        priority: Priority = Priority.NORMAL,
        key: str | None = None,
    ) -> None:
        """Queue a message in this unit of work; it is sent after the commit, never before."""
        await self.services.outbox.send(
            self.session, self.now, to, message, priority=priority, key=key
        )

    async def edit(self, key: str, message: Message, *, priority: Priority = Priority.NORMAL):
        """Queue an edit of every message sent under `key`."""
        await self.services.outbox.edit(self.session, self.now, key, message, priority=priority)


# --- argument parsing from signatures -------------------------------------------------------


@dataclass(frozen=True)
class Arg:
    """Extra facts about a command parameter, given with ``Annotated[T, Arg(...)]``.

    ``parse`` turns the word into a value or raises ``ValueError`` with a kind message;
    ``rest`` takes the rest of the line as one text; ``metavar`` names it in the usage line.
    """

    metavar: str | None = None
    parse: Callable[[str], Any] | None = None
    rest: bool = False
    max_length: int = MAX_INPUT


REST = Arg(rest=True)


@dataclass(frozen=True)
class Param:
    name: str
    required: bool
    default: Any
    kind: type | None
    arg: Arg
    choices: tuple[str, ...] = ()

    @property
    def metavar(self) -> str:
        if self.arg.metavar:
            return self.arg.metavar
        if self.choices:
            return "|".join(self.choices)
        return self.name.replace("_", " ")

    def usage(self) -> str:
        shown = self.metavar + ("…" if self.arg.rest else "")
        return f"<{shown}>" if self.required else f"[{shown}]"

    def convert(self, word: str) -> Any:
        if len(word) > self.arg.max_length:
            raise ValueError(
                f"{self.metavar} is too long ({len(word):,} characters; "
                f"the most is {self.arg.max_length:,})"
            )
        if self.arg.parse is not None:
            return self.arg.parse(word)
        if self.choices:
            lowered = word.lower()
            if lowered not in self.choices:
                raise ValueError(f"{word!r} isn't one of {', '.join(self.choices)}")
            return lowered
        if self.kind is int:
            try:
                number = int(word)
            except ValueError:
                raise ValueError(f"{self.metavar} should be a whole number, not {word!r}") from None
            if not -MAX_WHOLE <= number <= MAX_WHOLE:
                raise ValueError(f"{self.metavar} is too big a number ({MAX_WHOLE:,} at most)")
            return number
        return word


def _params_of(handler: Callable[..., Any], skip: int) -> list[Param]:
    hints = typing.get_type_hints(handler, include_extras=True)
    params: list[Param] = []
    for p in list(inspect.signature(handler).parameters.values())[skip:]:
        if p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            continue
        hint = hints.get(p.name, str)
        arg = Arg()
        if get_origin(hint) is Annotated:
            hint, *extras = get_args(hint)
            arg = next((e for e in extras if isinstance(e, Arg)), arg)
        if get_origin(hint) in (typing.Union, types.UnionType):
            hint = next(a for a in get_args(hint) if a is not type(None))
        choices: tuple[str, ...] = ()
        kind: type | None = hint if isinstance(hint, type) else None
        if get_origin(hint) is Literal:
            choices = tuple(str(c) for c in get_args(hint))
            kind = str
        required = p.default is inspect.Parameter.empty
        params.append(Param(p.name, required, None if required else p.default, kind, arg, choices))
    return params


@dataclass(frozen=True)
class Word:
    """A word of command text, and the text from where it starts (for a rest-of-line argument)."""

    text: str
    tail: str


def _bind(params: list[Param], words: list[Word], usage: str) -> dict[str, Any]:
    """Match words to parameters, converting each; wrong counts or values raise UsageError.

    A rest-of-line parameter takes the text exactly as written from its first word on — spacing,
    quotes and line breaks kept — since it is usually someone's own words.
    """
    values: dict[str, Any] = {}
    remaining = list(words)
    for param in params:
        if param.arg.rest:
            text = remaining[0].tail.strip() if remaining else ""
            remaining = []
            if not text:
                if param.required:
                    raise UsageError(f"please add the {param.metavar}", usage)
                values[param.name] = param.default
                continue
            word = text
        elif remaining:
            word = remaining.pop(0).text
        elif param.required:
            raise UsageError(f"I need the {param.metavar}", usage)
        else:
            values[param.name] = param.default
            continue
        try:
            values[param.name] = param.convert(word)
        except ValueError as exc:
            raise UsageError(str(exc), usage) from None
    if remaining:
        raise UsageError(f"I didn't expect {' '.join(w.text for w in remaining)!r}", usage)
    return values


# --- the registry ----------------------------------------------------------------------------

Handler = Callable[..., Awaitable[Reply | Message | Form | str | None]]


@dataclass
class CommandSpec:
    """A slash command: ``path`` is ("checkin",) for ``/checkin`` or ("checkin", "settings")."""

    path: tuple[str, ...]
    handler: Handler
    roles: frozenset[Role]
    params: list[Param]
    hidden: bool = False
    # Shown before any answer, even an error or an outage (``/support``'s signposting).
    preface: Callable[[Settings], str] | None = None

    @property
    def name(self) -> str:
        return "/" + " ".join(self.path)

    @property
    def usage(self) -> str:
        return " ".join([self.name, *(p.usage() for p in self.params)])

    @property
    def help(self) -> str:
        """The first line of the docstring: the command's help."""
        doc = inspect.getdoc(self.handler) or ""
        return doc.splitlines()[0] if doc else ""

    def allows(self, actor: Actor) -> bool:
        return not self.roles or any(actor.has(r) for r in self.roles)


@dataclass
class ActionSpec:
    """A button or form action: ``name`` is the part of the action id before the first colon."""

    name: str
    handler: Handler
    roles: frozenset[Role]
    params: list[Param]
    form: bool = False


@dataclass
class DueJob:
    """Work that falls due with time: ``run`` does what is due now; ``next_due`` says when next."""

    name: str
    run: Callable[[Services, datetime], Awaitable[int]]
    next_due: Callable[[Services], Awaitable[datetime | None]] | None = None


DirectMessageHandler = Callable[[Context, str], Awaitable[Reply | Message | str | None]]
HomePage = Callable[[Context], Awaitable[list[Message]]]


@dataclass
class Registry:
    """Every command, action, direct-message handler and due job the features provide."""

    commands: dict[tuple[str, ...], CommandSpec] = field(default_factory=dict)
    actions: dict[str, ActionSpec] = field(default_factory=dict)
    direct_message_handlers: list[tuple[int, DirectMessageHandler]] = field(default_factory=list)
    due_jobs: dict[str, DueJob] = field(default_factory=dict)
    home_page: HomePage | None = None

    def command(
        self,
        path: str,
        *,
        roles: set[Role] | frozenset[Role] = frozenset(),
        hidden: bool = False,
        preface: Callable[[Settings], str] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register ``async def handler(ctx, ...)`` as the slash command ``/path``.

        ``preface`` is text the person sees first whatever happens next — an answer, a refusal,
        a usage error or the database being down — as its own message.
        """

        def register(handler: Handler) -> Handler:
            key = tuple(path.split())
            if key in self.commands:
                raise ValueError(f"command /{path} registered twice")
            self.commands[key] = CommandSpec(
                key, handler, frozenset(roles), _params_of(handler, 1), hidden, preface
            )
            return handler

        return register

    def action(
        self, name: str, *, roles: set[Role] | frozenset[Role] = frozenset(), form: bool = False
    ) -> Callable[[Handler], Handler]:
        """Register a button action (or, with ``form=True``, a form submission).

        The action id is ``name:arg:arg``; the args arrive as the handler's parameters. Ids come
        back from the platform and can be forged: handlers check the member may act on them.
        """

        def register(handler: Handler) -> Handler:
            if ":" in name or name in self.actions:
                raise ValueError(f"bad or duplicate action name {name!r}")
            params = _params_of(handler, 1)
            if form:
                # A form handler's ``values`` come from the submission, not from the action id.
                params = [p for p in params if p.name != "values"]
            self.actions[name] = ActionSpec(name, handler, frozenset(roles), params, form)
            return handler

        return register

    def form(self, name: str, *, roles: set[Role] | frozenset[Role] = frozenset()):
        """Register a form submission; the handler gets the field values as ``values``."""
        return self.action(name, roles=roles, form=True)

    def direct_message(self, order: int = 50) -> Callable[[DirectMessageHandler], Any]:
        """Register a handler for plain DMs to the bot; the first to return a reply wins."""

        def register(handler: DirectMessageHandler) -> DirectMessageHandler:
            self.direct_message_handlers.append((order, handler))
            self.direct_message_handlers.sort(key=lambda pair: pair[0])
            return handler

        return register

    def due(
        self, name: str, *, next_due: Callable[[Services], Awaitable[datetime | None]] | None
    ) -> Callable[[Callable[[Services, datetime], Awaitable[int]]], Any]:
        """Register a job the scheduler runs each tick."""

        def register(run: Callable[[Services, datetime], Awaitable[int]]):
            if name in self.due_jobs:
                raise ValueError(f"due job {name!r} registered twice")
            self.due_jobs[name] = DueJob(name, run, next_due)
            return run

        return register

    def home(self, build: HomePage) -> HomePage:
        """Register the builder of a person's home page (one message per part)."""
        if self.home_page is not None:
            raise ValueError("home page registered twice")
        self.home_page = build
        return build

    # lookups

    def groups(self) -> list[str]:
        return sorted({path[0] for path in self.commands})

    def subcommands(self, group: str) -> list[CommandSpec]:
        return [s for p, s in sorted(self.commands.items()) if p[0] == group and len(p) > 1]

    def resolve(self, group: str, words: list[str]) -> tuple[CommandSpec, list[str]]:
        """Find the command for ``/group words…``; raise UserError when there is none."""
        group = group.lower().lstrip("/")
        if group not in self.groups():
            raise UserError(f"I don't know /{group}. Try /headsup help to see what I can do.")
        if words and (group, words[0].lower()) in self.commands:
            return self.commands[(group, words[0].lower())], words[1:]
        default = self.commands.get((group,))
        if default is not None and (not words or default.params or not self.subcommands(group)):
            return default, words
        choices = ", ".join(s.path[1] for s in self.subcommands(group))
        if words:
            raise UserError(
                f"I don't know /{group} {words[0]}. /{group} can be followed by: {choices}."
            )
        raise UserError(f"/{group} needs one of: {choices}.")

    def copy(self) -> Registry:
        return Registry(
            dict(self.commands),
            dict(self.actions),
            list(self.direct_message_handlers),
            dict(self.due_jobs),
            self.home_page,
        )


_SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"'})
_QUOTED_OR_WORD = re.compile(r'"([^"]*)"|(\S+)')


def tokenize(text: str) -> list[Word]:
    """Split command text into words; "double quotes" (straight or smart) group a phrase.

    An apostrophe is a letter ("I'm fine, it's ok"), and nothing starts a comment. A quotation
    mark without its partner is taken as an ordinary character rather than refused: free text
    may well contain one.
    """
    normalised = text.translate(_SMART_QUOTES)  # same length: offsets still fit `text`
    if normalised.count('"') % 2:
        return [Word(m.group(0), text[m.start() :]) for m in re.finditer(r"\S+", text)]
    return [
        Word(m.group(1) if m.group(1) is not None else m.group(2), text[m.start() :])
        for m in _QUOTED_OR_WORD.finditer(normalised)
    ]


def split_words(text: str) -> list[str]:
    """The words of command text (see `tokenize`)."""
    return [w.text for w in tokenize(text)]


# --- the dispatcher ---------------------------------------------------------------------------

SORRY = (
    "Sorry — something went wrong on our side and nothing was changed. "
    "Please try again in a moment."
)
STRANGER = (
    "Sorry — this bot is only for members of the {network} network's own space, so I can't help "
    "here. If you need to talk to someone now: {emergency}"
)
UNAVAILABLE = (
    "Sorry — HeadsUp is temporarily unavailable, please try again in a minute. "
    "If you need to talk to someone now: {emergency}"
)


def refusal(spec_name: str, roles: frozenset[Role]) -> str:
    who = " or ".join(ROLE_NAMES.get(r, r.value) for r in sorted(roles))
    return f"Sorry — {spec_name} is only for {who}."


class Core:
    """Runs one unit of work per request: resolve the member, run the handler, commit, deliver."""

    def __init__(self, services: Services, on_commit: Callable[[], None] = lambda: None) -> None:
        self.services = services
        self.registry = services.registry
        self._on_commit = on_commit

    async def command(
        self,
        actor: Actor,
        group: str,
        text: str = "",
        *,
        in_dm: bool = False,
        event_id: str | None = None,
    ) -> Reply:
        """A slash command: ``/group text``. ``event_id`` is the platform's id of the request,
        when the platform may deliver it twice (to two instances, after a resume): the first
        to commit it handles it, and every repeat gets a ``Reply`` marked ``repeat``."""

        async def run(ctx: Context) -> Any:
            words = tokenize(text)
            spec, rest_words = self.registry.resolve(group, [w.text for w in words])
            rest = words[len(words) - len(rest_words) :]
            if not spec.allows(actor):
                raise Refused(refusal(spec.name, spec.roles))
            if len(text) > MAX_INPUT:
                raise UserError(
                    f"That's a bit long for me ({len(text):,} characters; the most is "
                    f"{MAX_INPUT:,}). Could you shorten it?"
                )
            kwargs = _bind(spec.params, rest, spec.usage)
            return await spec.handler(ctx, **kwargs)

        reply = await self._unit(
            actor, run, event="command", name=f"/{group}", in_dm=in_dm, event_id=event_id
        )
        return reply if reply.repeat else self._prefaced(group, text, reply)

    def _prefaced(self, group: str, text: str, reply: Reply) -> Reply:
        try:
            spec, _ = self.registry.resolve(group, split_words(text))
        except UserError:
            return reply
        if spec.preface is not None:
            reply.messages.insert(0, Message(spec.preface(self.services.settings)))
        return reply

    async def press(
        self, actor: Actor, action_id: str, *, in_dm: bool = False, event_id: str | None = None
    ) -> Reply:
        """A button press carrying ``action_id``."""
        return await self._action(actor, action_id, None, in_dm, event_id)

    async def submit(
        self,
        actor: Actor,
        action_id: str,
        values: dict[str, str],
        *,
        in_dm: bool = False,
        event_id: str | None = None,
    ) -> Reply:
        """A form submission: ``values`` maps field names to text."""
        return await self._action(actor, action_id, values, in_dm, event_id)

    async def message(
        self,
        actor: Actor,
        text: str,
        *,
        reply_to: str | None = None,
        event_id: str | None = None,
    ) -> Reply:
        """A plain direct message to the bot; ``reply_to`` is the platform's id of the message
        it replies to (a Slack thread), when it is one."""

        async def run(ctx: Context) -> Any:
            # A platform message id is short printable text; anything else (a NUL, which
            # PostgreSQL cannot store or compare) is no reply to look up.
            ctx.reply_to = (
                reply_to if reply_to and reply_to.isprintable() and len(reply_to) <= 100 else None
            )
            if len(text) > MAX_INPUT:
                raise UserError(
                    f"That message is too long for me to pass on ({len(text):,} characters; "
                    f"the most is {MAX_INPUT:,}). Could you split it?"
                )
            for _order, handler in self.registry.direct_message_handlers:
                result = await handler(ctx, text)
                if result is not None:
                    return result
            return None

        return await self._unit(
            actor, run, event="direct_message", name="dm", in_dm=True, event_id=event_id
        )

    async def home(self, actor: Actor, *, event_id: str | None = None) -> Reply:
        """The person's home page (Slack's App Home tab), as a request like any other: a
        stranger is turned away and nothing is stored about them."""
        build = self.registry.home_page

        async def run(ctx: Context) -> Reply:
            return Reply(messages=await build(ctx) if build is not None else [])

        return await self._unit(
            actor, run, event="home", name="home", in_dm=False, event_id=event_id
        )

    async def _action(
        self,
        actor: Actor,
        action_id: str,
        values: dict[str, str] | None,
        in_dm: bool,
        event_id: str | None,
    ) -> Reply:
        name, _, rest = action_id.partition(":")
        spec = self.registry.actions.get(name)

        async def run(ctx: Context) -> Any:
            if spec is None or spec.form != (values is not None):
                raise UserError("That button no longer does anything — sorry for the confusion.")
            if not any(actor.has(r) for r in spec.roles) and spec.roles:
                raise Refused(refusal("that button", spec.roles))
            parts = rest.split(":") if rest else []
            words = [Word(p, ":".join(parts[i:])) for i, p in enumerate(parts)]
            try:
                kwargs = _bind(spec.params, words, name)
            except UsageError:
                raise UserError("That button no longer does anything — sorry.") from None
            if values is not None:
                kwargs["values"] = {k: v.strip() for k, v in values.items()}
            return await spec.handler(ctx, **kwargs)

        return await self._unit(
            actor, run, event="action", name=name, in_dm=in_dm, event_id=event_id
        )

    async def _unit(
        self,
        actor: Actor,
        work: Callable[[Context], Awaitable[Any]],
        *,
        event: str,
        name: str,
        in_dm: bool,
        event_id: str | None = None,
    ) -> Reply:
        from storage.members import member_for
        from storage.platform_events import first_sighting

        services = self.services
        now = services.clock.now()
        if actor.stranger:
            log.info(event, name=name, outcome="stranger", platform=actor.platform)
            return Reply.of(
                STRANGER.format(
                    network=services.settings.network.name,
                    emergency=services.settings.support.emergency,
                )
            )
        try:
            async with services.database.session() as session:
                try:
                    # Recorded in this unit of work, so it commits (or not) with its effects:
                    # of two deliveries of one event, only one can change anything.
                    if event_id is not None and not await first_sighting(
                        session, actor.platform, event_id, now
                    ):
                        await session.rollback()
                        log.info(event, name=name, outcome="repeat", platform=actor.platform)
                        return Reply(repeat=True)
                    member = await member_for(session, actor, now)
                    ctx = Context(services, session, actor, member, now, in_dm)
                    reply = Reply.of(await work(ctx))
                    await session.commit()
                except UserError as exc:
                    await session.rollback()
                    log.info(
                        event,
                        name=name,
                        outcome="refused" if isinstance(exc, Refused) else "bad_input",
                        platform=actor.platform,
                    )
                    return Reply(
                        [Message(_explain(exc))],
                        bad_input=not isinstance(exc, Refused),
                        bad_field=exc.field,
                    )
        except (OperationalError, OSError, ConnectionError, Unavailable) as exc:
            log.error(event, name=name, outcome="unavailable", error=type(exc).__name__)
            emergency = services.settings.support.emergency
            return Reply.of(UNAVAILABLE.format(emergency=emergency))
        except DBAPIError as exc:
            if is_connection_error(exc):  # e.g. PostgreSQL starting up or shutting down
                log.error(event, name=name, outcome="unavailable", error=type(exc).__name__)
                emergency = services.settings.support.emergency
                return Reply.of(UNAVAILABLE.format(emergency=emergency))
            log.exception(event, name=name, outcome="error", error=type(exc).__name__)
            return Reply.of(SORRY)
        except Exception as exc:
            log.exception(event, name=name, outcome="error", error=type(exc).__name__)
            return Reply.of(SORRY)
        log.info(event, name=name, outcome="ok", member_id=member.id, platform=actor.platform)
        self._on_commit()
        return reply


def check_form(form: Form, values: dict[str, str]) -> dict[str, str]:
    """The submitted values for `form`'s fields, checked against its own rules.

    Missing fields count as empty; unknown ones are ignored; a required field left empty or a
    value over its field's limit raises a UserError naming the field (and carrying its name).
    """
    checked: dict[str, str] = {}
    for f in form.fields:
        value = (values.get(f.name) or "").strip()
        if f.required and not value:
            raise UserError(f"{f.label} is needed — please fill it in.", field=f.name)
        if len(value) > f.max_length:
            raise UserError(
                f"{f.label} is too long ({len(value):,} characters; the most is "
                f"{f.max_length:,}). Nothing was saved — could you shorten it?",
                field=f.name,
            )
        checked[f.name] = value
    return checked


def _explain(exc: UserError) -> str:
    if isinstance(exc, UsageError):
        return f"That didn't quite work: {exc.message}.\nUsage: `{exc.usage}`"
    return exc.message


__all__ = ["REST", "Actor", "Arg", "Context", "Core", "Registry", "Role", "Services"]
