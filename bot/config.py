"""The bot's configuration: ``config.toml`` (SPEC §2) validated by pydantic-settings.

Every key can be overridden by an environment variable ``HEADSUP_<SECTION>__<KEY>``; the
environment wins over the file, key by key. ``load_settings`` turns every problem into a
``ConfigError`` whose message is one line naming the offending keys.
"""

import datetime as dt
import json
import os
import re
import tomllib
import zoneinfo
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.durations import parse_duration
from storage.crypto import Cipher, CipherError

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_HELPLINES",
    "DEFAULT_URGENT_WORDS",
    "ENV_PREFIX",
    "CheckinConfig",
    "ConfigError",
    "ConsoleConfig",
    "DiscordConfig",
    "EventsConfig",
    "Helpline",
    "HttpConfig",
    "NetworkConfig",
    "PrivacyConfig",
    "Settings",
    "SlackConfig",
    "StorageConfig",
    "SupportConfig",
    "load_settings",
    "redact_url",
    "redacted",
]

DEFAULT_CONFIG_PATH = Path("config.toml")
ENV_PREFIX = "HEADSUP_"
SECRET_MASK = "********"

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_EVENT_REMINDER = dt.timedelta(days=30)

DEFAULT_URGENT_WORDS: tuple[str, ...] = (
    "kill myself",
    "end my life",
    "suicide",
    "suicidal",
    "take my own life",
    "self-harm",
    "self harm",
    "hurt myself",
    "can't go on",
    "cant go on",
    "no reason to live",
    "better off dead",
    "want to die",
)


class ConfigError(Exception):
    """A configuration problem, told in one line fit to show a person."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


# --- reusable field types -----------------------------------------------------------------


def _split_list(value: Any) -> Any:
    """Let an environment variable give a list as JSON (``["a","b"]``) or as ``a,b``."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise ValueError('not a valid JSON list (write ["a", "b"] or a,b)') from None
    return [part.strip() for part in text.split(",") if part.strip()]


def _number_to_str(value: Any) -> Any:
    """Accept a TOML number where text is expected (Discord snowflakes, "60" minutes)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return value


def _check_optional_http_url(value: str) -> str:
    return value and _check_http_url(value)


def _check_gateway_url(value: str) -> str:
    if not value:
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("ws", "wss", "http", "https") or not parts.netloc:
        raise ValueError("must be empty or a ws://, wss://, http:// or https:// URL")
    return value


def _check_secret(value: SecretStr) -> SecretStr:
    """Trim stray whitespace (a common copy-paste slip) and reject inner spaces."""
    secret = value.get_secret_value().strip()
    if any(char.isspace() for char in secret):
        raise ValueError("must not contain spaces")
    return SecretStr(secret)


def _check_reminder(value: str) -> str:
    offset = parse_duration(value)
    if offset > MAX_EVENT_REMINDER:
        raise ValueError(f"{value!r} is more than 30 days before the event")
    return value


_NonEmptyStr = Annotated[str, Field(min_length=1)]
_StrList = Annotated[list[str], NoDecode, BeforeValidator(_split_list)]
_IdStr = Annotated[str, BeforeValidator(_number_to_str)]
_UrgentWord = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1)]
_IdList = Annotated[list[_IdStr], NoDecode, BeforeValidator(_split_list)]
_Secret = Annotated[SecretStr, Field(default=SecretStr(""))]
_ReminderStr = Annotated[str, BeforeValidator(_number_to_str), AfterValidator(_check_reminder)]


class _Section(BaseModel):
    """Base of every config section: unknown keys are errors, strings are trimmed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# --- sections ----------------------------------------------------------------------------


class NetworkConfig(_Section):
    """``[network]``: the community's name and default timezone."""

    name: _NonEmptyStr = "HeadsUp"
    timezone: str = "Europe/London"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r} (use an IANA name such as 'Europe/London')"
            ) from None
        return value

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        """The network's default timezone."""
        return zoneinfo.ZoneInfo(self.timezone)


class StorageConfig(_Section):
    """``[storage]``: the database and the key that encrypts private text."""

    url: str = "sqlite:///headsup.db"
    encryption_key: _Secret

    @field_validator("url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        # Never echo the URL: it may carry a password.
        try:
            backend = make_url(value).get_backend_name()
        except (ArgumentError, ValueError):
            raise ValueError(
                "not a database URL (use e.g. sqlite:///headsup.db or "
                "postgresql+asyncpg://user@host/db)"
            ) from None
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(
                f"unsupported database {backend!r} (use sqlite:///… or postgresql+asyncpg://…)"
            )
        return value

    @field_validator("encryption_key")
    @classmethod
    def _fernet_key(cls, value: SecretStr) -> SecretStr:
        value = _check_secret(value)
        key = value.get_secret_value()
        if key:
            # Several keys, comma-separated and newest first, are how a key is rotated: each
            # must be a key on its own (the whole string never is).
            try:
                Cipher.from_setting(key)
            except CipherError:
                raise ValueError(
                    "not a valid Fernet key, or comma-separated list of keys "
                    "(make one with `headsup keygen`)"
                ) from None
        return value

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return make_url(self.url).get_backend_name()


class Helpline(_Section):
    """One ``[[support.helplines]]`` entry, shown whenever someone asks for help."""

    name: _NonEmptyStr
    contact: _NonEmptyStr


DEFAULT_HELPLINES: tuple[Helpline, ...] = (
    Helpline(name="Education Support (school staff, 24/7)", contact="08000 562 561"),
    Helpline(name="Samaritans (24/7)", contact="116 123"),
    Helpline(name="Shout (text, 24/7)", contact="Text SHOUT to 85258"),
    Helpline(name="NHS mental health crisis", contact="111, option 2"),
)


class CheckinConfig(_Section):
    """``[checkin]``: when the weekly check-in goes out and what counts as a low score."""

    day: str = "monday"
    time: dt.time = dt.time(8, 0)
    reminder_after_hours: int = Field(default=24, ge=1, le=167)
    low_score: int = Field(default=2, ge=1, le=5)
    skip_holidays: Literal["", "england-and-wales", "scotland", "northern-ireland"] = ""

    @field_validator("day", mode="before")
    @classmethod
    def _weekday(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        day = value.strip().lower()
        if day not in WEEKDAYS:
            raise ValueError(f"unknown weekday {value!r} (use monday … sunday)")
        return day

    @field_validator("time", mode="before")
    @classmethod
    def _clock_time(cls, value: Any) -> Any:
        if isinstance(value, dt.time):
            return value
        if not isinstance(value, str):
            raise ValueError('must be a time written as "HH:MM", e.g. "08:00"')
        match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", value)
        if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
            raise ValueError(f'{value!r} is not a 24-hour time HH:MM (e.g. "08:00")')
        return dt.time(int(match.group(1)), int(match.group(2)))

    @field_validator("skip_holidays", mode="before")
    @classmethod
    def _lower_region(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_serializer("time", when_used="json")
    def _time_as_text(self, value: dt.time) -> str:
        return value.strftime("%H:%M")

    @property
    def weekday(self) -> int:
        """The check-in day as ``datetime.weekday()`` numbers it (Monday is 0)."""
        return WEEKDAYS.index(self.day)


class SupportConfig(_Section):
    """``[support]``: routing a request for help to a coach, and what is shown at once."""

    ack_minutes: int = Field(default=10, ge=1, le=1440)
    followup_days: int = Field(default=7, ge=1, le=365)
    keep_transcripts: bool = False
    emergency: _NonEmptyStr = "If you or anyone else is in immediate danger, call 999."
    helplines: list[Helpline] = Field(default_factory=lambda: list(DEFAULT_HELPLINES))
    # Matched case-insensitively; a blank entry would match every message, so it is an error.
    urgent_words: Annotated[list[_UrgentWord], NoDecode, BeforeValidator(_split_list)] = Field(
        default_factory=lambda: list(DEFAULT_URGENT_WORDS)
    )


class EventsConfig(_Section):
    """``[events]``: reminders before each event, as durations like "24h" or "15m"."""

    reminders: Annotated[list[_ReminderStr], NoDecode, BeforeValidator(_split_list)] = Field(
        default_factory=lambda: ["24h", "15m"]
    )

    @property
    def reminder_offsets(self) -> list[dt.timedelta]:
        """How long before an event each reminder goes out, in the order configured."""
        return [parse_duration(text) for text in self.reminders]


class PrivacyConfig(_Section):
    """``[privacy]``: how long private text is kept."""

    note_retention_days: int = Field(default=365, ge=1)
    case_text_retention_days: int = Field(default=90, ge=1)


class HttpConfig(_Section):
    """``[http]``: the health/metrics endpoint and the dead-man's-switch ping."""

    port: int = Field(default=0, ge=0, le=65535)
    heartbeat_url: str = ""

    _heartbeat = field_validator("heartbeat_url")(_check_optional_http_url)


class ConsoleConfig(_Section):
    """``[console]``: who is who on the built-in console platform."""

    user: _NonEmptyStr = "you"
    coaches: _StrList = Field(default_factory=lambda: ["coach"])
    coordinators: _StrList = Field(default_factory=lambda: ["coordinator"])


class SlackConfig(_Section):
    """``[slack]``: Slack starts when ``bot_token`` is set.

    ``mode`` is declared before the tokens so their checks can see it.
    """

    bot_token: _Secret
    mode: Literal["socket", "http"] = "socket"
    app_token: _Secret = Field(validate_default=True)
    signing_secret: _Secret = Field(validate_default=True)
    http_port: int = Field(default=3000, ge=1, le=65535)
    api_base_url: str = "https://slack.com/api/"
    announce_channel: _IdStr = ""
    coordinator_channel: _IdStr = ""
    coaches: _IdList = Field(default_factory=list)
    coordinators: _IdList = Field(default_factory=list)

    _secrets = field_validator("bot_token", "app_token", "signing_secret")(_check_secret)
    _api_url = field_validator("api_base_url")(_check_http_url)

    @field_validator("mode", mode="before")
    @classmethod
    def _lower_mode(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("app_token")
    @classmethod
    def _app_token_for_socket_mode(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        needed = _is_set(info.data.get("bot_token")) and info.data.get("mode") == "socket"
        if needed and not value.get_secret_value():
            raise ValueError("required when slack.mode is 'socket' (an xapp- token)")
        return value

    @field_validator("signing_secret")
    @classmethod
    def _signing_secret_for_http_mode(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        needed = _is_set(info.data.get("bot_token")) and info.data.get("mode") == "http"
        if needed and not value.get_secret_value():
            raise ValueError("required when slack.mode is 'http' (the app's signing secret)")
        return value

    @property
    def enabled(self) -> bool:
        """True when a bot token is set, i.e. Slack should start."""
        return _is_set(self.bot_token)


class DiscordConfig(_Section):
    """``[discord]``: Discord starts when ``token`` is set."""

    token: _Secret
    application_id: _IdStr = Field(default="", validate_default=True)
    guild_id: _IdStr = Field(default="", validate_default=True)
    api_base_url: str = "https://discord.com/api/v10"
    gateway_url: str = ""
    announce_channel_id: _IdStr = ""
    coordinator_channel_id: _IdStr = ""
    coach_role_id: _IdStr = ""
    coordinator_role_id: _IdStr = ""

    _secrets = field_validator("token")(_check_secret)
    _api_url = field_validator("api_base_url")(_check_http_url)
    _gateway = field_validator("gateway_url")(_check_gateway_url)

    @field_validator("application_id", "guild_id")
    @classmethod
    def _required_with_token(cls, value: str, info: ValidationInfo) -> str:
        if _is_set(info.data.get("token")) and not value:
            what = "the application id" if info.field_name == "application_id" else "the server id"
            raise ValueError(f"required when discord.token is set ({what})")
        return value

    @property
    def enabled(self) -> bool:
        """True when a token is set, i.e. Discord should start."""
        return _is_set(self.token)


def _is_set(secret: SecretStr | None) -> bool:
    return secret is not None and bool(secret.get_secret_value())


# --- the whole file ----------------------------------------------------------------------

# The parsed TOML of the file being loaded; a source below feeds it to Settings under the env.
_file_data: ContextVar[dict[str, Any] | None] = ContextVar("headsup_config_file", default=None)


class Settings(BaseSettings):
    """Everything in config.toml; ``HEADSUP_<SECTION>__<KEY>`` environment variables win."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid"
    )

    network: NetworkConfig = Field(default_factory=NetworkConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    checkin: CheckinConfig = Field(default_factory=CheckinConfig)
    support: SupportConfig = Field(default_factory=SupportConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    slack: SlackConfig = Field(default_factory=SlackConfig)
    discord: DiscordConfig = Field(default_factory=DiscordConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Highest first: explicit arguments, then the environment, then the TOML file.

        pydantic-settings deep-merges the sources, so one env variable replaces one key only.
        """
        file_settings = InitSettingsSource(settings_cls, init_kwargs=_file_data.get() or {})
        return (init_settings, env_settings, file_settings)

    @property
    def slack_enabled(self) -> bool:
        """Slack has a bot token, so it starts."""
        return self.slack.enabled

    @property
    def discord_enabled(self) -> bool:
        """Discord has a token, so it starts."""
        return self.discord.enabled

    @property
    def console_enabled(self) -> bool:
        """No chat platform is configured, so the console platform starts."""
        return not (self.slack_enabled or self.discord_enabled)


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read and validate the config file (default ``./config.toml`` if present) plus the env.

    Raises ConfigError, with one line naming every bad key, on any problem.
    """
    if path is None:
        file = DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None
    else:
        file = Path(path)
        if not file.exists():
            raise ConfigError(f"config file not found: {file}")
    data = _read_toml(file) if file is not None else {}
    where = str(file) if file is not None else "built-in defaults and environment"

    token = _file_data.set(data)
    try:
        return Settings()
    except ValidationError as exc:
        # "from None": the chained error would print raw input values, secrets included.
        raise ConfigError(f"invalid config ({where}): {_describe(exc)}") from None
    except SettingsError as exc:
        raise ConfigError(f"invalid config ({where}): {_describe_env_error(exc)}") from None
    finally:
        _file_data.reset(token)


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML in {file}: {_toml_problem(exc)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"invalid TOML in {file}: the file is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror or exc}") from None


def _toml_problem(exc: tomllib.TOMLDecodeError) -> str:
    """'Invalid value (at line 3, column 7)' -> 'line 3, column 7: invalid value'."""
    message = str(exc)
    match = re.fullmatch(r"(?s)(.*?)\s*\(at (line \d+, column \d+|end of document)\)", message)
    if match is None:
        return message
    reason = match.group(1)
    return f"{match.group(2)}: {reason[:1].lower()}{reason[1:]}"


# --- error messages ----------------------------------------------------------------------

# Friendlier words for pydantic's commonest complaints, by error type.
_PLAIN_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required",
    "string_type": "must be text (in quotes)",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
}


def _describe(exc: ValidationError) -> str:
    """Every error as ``dotted.key: message``, joined by "; "."""
    env_names = {name.upper() for name in os.environ if name.upper().startswith(ENV_PREFIX)}
    problems = []
    for error in exc.errors(include_url=False):
        key = _dotted(error["loc"])
        problems.append(f"{key}: {_message(error)}{_env_hint(error['loc'], env_names)}")
    return "; ".join(problems)


def _dotted(loc: tuple[int | str, ...]) -> str:
    """("support", "helplines", 0, "name") -> "support.helplines[0].name"."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def _message(error: Any) -> str:
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind in _PLAIN_MESSAGES:
        message = _PLAIN_MESSAGES[kind]
    elif kind == "string_too_short" and context.get("min_length") == 1:
        message = "must not be empty"
    elif kind == "greater_than_equal":
        message = f"must be at least {context.get('ge')}"
    elif kind == "less_than_equal":
        message = f"must be at most {context.get('le')}"
    else:
        message = re.sub(r"^(Value error|Assertion failed), ", "", error["msg"])
        message = re.sub(r"^Input should be", "must be", message)
    # Numbers are never secret, so showing them helps; text might be a token, so it is not shown.
    value = error.get("input")
    if kind in ("greater_than_equal", "less_than_equal") and _is_number(value):
        message += f" (got {value})"
    return message


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _env_hint(loc: tuple[int | str, ...], env_names: set[str]) -> str:
    """Say which environment variable set the bad value, when one did."""
    names = [part for part in loc if isinstance(part, str)]
    for depth in range(len(names), 0, -1):
        candidate = ENV_PREFIX + "__".join(names[:depth]).upper()
        if candidate in env_names:
            return f" (from {candidate})"
    return ""


def _describe_env_error(exc: SettingsError) -> str:
    """pydantic-settings could not decode an env value as JSON; name the variable if we can."""
    match = re.search(r'field "([^"]+)"', str(exc))
    prefix = ENV_PREFIX + (match.group(1).upper() if match else "")
    for name, value in sorted(os.environ.items()):
        name = name.upper()
        meant_as_json = name == prefix or value.strip()[:1] in ("[", "{")
        if name.startswith(prefix) and meant_as_json and not _is_json(value):
            return f"{name}: not valid JSON"
    return f"{prefix}…: a value is not valid JSON"


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


# --- showing the settings ----------------------------------------------------------------


def redact_url(url: str) -> str:
    """The database URL with any password replaced by "***"."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # Not a URL SQLAlchemy reads; still hide anything shaped like "user:password@".
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)
    if parsed.password is None:
        return url
    return parsed.render_as_string(hide_password=True)


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings as a JSON-able dict, secrets masked: "********" when set, "" when empty."""
    plain = _plain(settings)
    plain["storage"]["url"] = redact_url(settings.storage.url)
    return plain


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return SECRET_MASK if value.get_secret_value() else ""
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    return value
