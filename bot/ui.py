"""Neutral UI types: what the core says, before any platform renders it.

A ``Message`` is text with optional buttons and an attached file. A ``Form`` is a short list of
text fields. Commands answer the person who asked with a ``Reply``; messages for anyone else go
through the outbox to a ``Destination``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any

# Platform limits the core keeps within, so every adapter can render what it is given.
MAX_TEXT = 1900  # Discord allows 2000 characters; leave room for a header.
MAX_BUTTONS = 25
MAX_ACTION_ID = 100


class Style(StrEnum):
    DEFAULT = "default"
    PRIMARY = "primary"
    DANGER = "danger"


@dataclass(frozen=True)
class Button:
    """A button; pressing it runs the action named by ``action`` ("feature.verb:arg:arg")."""

    label: str
    action: str
    style: Style = Style.DEFAULT

    def __post_init__(self) -> None:
        if len(self.action) > MAX_ACTION_ID:
            raise ValueError(f"action id longer than {MAX_ACTION_ID} characters: {self.action!r}")


@dataclass(frozen=True)
class Attachment:
    """A file sent with a message (an .ics calendar, a data export)."""

    filename: str
    content: bytes
    content_type: str = "text/plain"

    @property
    def is_text(self) -> bool:
        return self.content_type.startswith("text/") or self.content_type in ("application/json",)


@dataclass(frozen=True)
class Message:
    """Text with optional buttons and one attached file."""

    text: str
    buttons: tuple[Button, ...] = ()
    attachment: Attachment | None = None

    def __post_init__(self) -> None:
        if len(self.buttons) > MAX_BUTTONS:
            raise ValueError(f"more than {MAX_BUTTONS} buttons on one message")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"text": self.text}
        if self.buttons:
            data["buttons"] = [[b.label, b.action, b.style.value] for b in self.buttons]
        if self.attachment is not None:
            a = self.attachment
            data["attachment"] = {
                "filename": a.filename,
                "content_type": a.content_type,
                "content": base64.b64encode(a.content).decode(),
            }
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        attachment = None
        if "attachment" in data:
            a = data["attachment"]
            attachment = Attachment(
                a["filename"], base64.b64decode(a["content"]), a["content_type"]
            )
        return cls(
            text=data["text"],
            buttons=tuple(
                Button(label, action, Style(style))
                for label, action, style in data.get("buttons", [])
            ),
            attachment=attachment,
        )


@dataclass(frozen=True)
class FormField:
    """One text field of a form.

    ``max_length`` is shown to the platform as a limit, but never trusted: the handler checks it
    again (``bot.core.check_form``), since a forged submission can carry anything.
    """

    name: str
    label: str
    required: bool = False
    max_length: int = 200
    multiline: bool = False
    value: str = ""  # prefilled
    placeholder: str = ""


@dataclass(frozen=True)
class Form:
    """A form: submitting it runs ``action`` with the field values."""

    action: str
    title: str
    fields: tuple[FormField, ...]
    submit_label: str = "Submit"


@dataclass(frozen=True)
class CalendarEntry:
    """An event as a platform's own calendar shows it (Discord's scheduled events).

    ``link`` is None while the video link is only for those who replied: a native event is seen
    by everyone in the server, so it then carries ``place`` instead.
    """

    title: str
    starts_at: datetime
    ends_at: datetime
    description: str = ""
    link: str | None = None
    place: str = "Video call"
    cancelled: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat(),
            "description": self.description,
            "link": self.link,
            "place": self.place,
            "cancelled": self.cancelled,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CalendarEntry:
        return cls(
            title=data["title"],
            starts_at=datetime.fromisoformat(data["starts_at"]),
            ends_at=datetime.fromisoformat(data["ends_at"]),
            description=data.get("description", ""),
            link=data.get("link"),
            place=data.get("place", "Video call"),
            cancelled=bool(data.get("cancelled", False)),
        )


class Channel(StrEnum):
    """The shared channels each platform maps to its own configured channel."""

    ANNOUNCEMENTS = "announcements"
    COORDINATORS = "coordinators"


@dataclass(frozen=True)
class ToMember:
    """A direct message to a member (on the platform they use)."""

    member_id: int


@dataclass(frozen=True)
class ToChannel:
    """A post in a shared channel, on every platform that has it configured."""

    channel: Channel


Destination = ToMember | ToChannel


class Priority(IntEnum):
    """Outbox order: lower goes first."""

    URGENT = 0  # crisis offers, escalations
    NORMAL = 5  # relays, confirmations to others, announcements
    BULK = 9  # weekly prompts, reminders


@dataclass
class Reply:
    """The answer to the person who asked, sent straight back through their platform.

    ``messages`` are private to them (ephemeral, or in their DM when they wrote in a DM);
    ``form`` opens a form; ``update`` replaces the message whose button they pressed.
    ``bad_input`` says the core turned down what they gave (nothing was changed, ``messages``
    say why), and ``bad_field`` names the form field it is about when known: a platform that
    can keep the form open shows the message there instead.
    """

    messages: list[Message] = field(default_factory=list)
    form: Form | None = None
    update: Message | None = None
    bad_input: bool = False
    bad_field: str | None = None
    # A platform delivered this request twice and it was already handled (here or by another
    # instance): the adapter answers nothing.
    repeat: bool = False

    @classmethod
    def of(cls, value: Reply | Message | Form | str | None) -> Reply:
        """Normalise whatever a handler returned."""
        if value is None:
            return cls()
        if isinstance(value, Reply):
            return value
        if isinstance(value, Message):
            return cls(messages=[value])
        if isinstance(value, Form):
            return cls(form=value)
        if isinstance(value, str):
            return cls(messages=[Message(value)])
        raise TypeError(f"a handler returned {type(value).__name__}, not a reply")
