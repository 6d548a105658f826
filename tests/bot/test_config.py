"""Tests for bot.config: the TOML file, environment overrides, validation and redaction."""

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bot.config import (
    DEFAULT_URGENT_WORDS,
    ConfigError,
    Settings,
    load_settings,
    redact_url,
    redacted,
)

EXAMPLE_FILE = Path(__file__).resolve().parents[2] / "config.example.toml"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run each test in an empty directory with no HEADSUP_* variables set."""
    for name in list(os.environ):
        if name.upper().startswith("HEADSUP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write_config(tmp_path: Path, text: str, name: str = "custom.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(tmp_path: Path, text: str) -> str:
    """The message of the ConfigError that loading this TOML raises."""
    with pytest.raises(ConfigError) as caught:
        load_settings(write_config(tmp_path, text))
    return str(caught.value)


# --- defaults and the example file ---------------------------------------------------------


def test_defaults_without_a_file() -> None:
    """With no config.toml and no path, the built-in defaults of SPEC §2 apply."""
    settings = load_settings()
    assert (settings.network.timezone, settings.checkin.day, settings.checkin.time) == (
        "Europe/London",
        "monday",
        dt.time(8, 0),
    )


def test_default_helplines_are_the_four_of_the_spec() -> None:
    """The four UK helplines are there when the file lists none."""
    names = [helpline.name for helpline in load_settings().support.helplines]
    assert names == [
        "Education Support (school staff, 24/7)",
        "Samaritans (24/7)",
        "Shout (text, 24/7)",
        "NHS mental health crisis",
    ]


def test_default_urgent_words() -> None:
    """support.urgent_words defaults to the built-in list of phrases of immediate risk."""
    assert load_settings().support.urgent_words == list(DEFAULT_URGENT_WORDS)


def test_defaults_start_the_console_only() -> None:
    """With no tokens neither Slack nor Discord is enabled, so the console is."""
    settings = load_settings()
    assert (settings.slack_enabled, settings.discord_enabled, settings.console_enabled) == (
        False,
        False,
        True,
    )


def test_config_toml_in_working_directory_is_used_by_default(tmp_path: Path) -> None:
    """load_settings() with no path reads ./config.toml when it exists."""
    write_config(tmp_path, '[network]\nname = "Heads North"\n', name="config.toml")
    assert load_settings().network.name == "Heads North"


def test_example_file_equals_defaults() -> None:
    """config.example.toml loads and says exactly what the defaults say."""
    assert load_settings(EXAMPLE_FILE) == Settings()


# --- environment overrides -----------------------------------------------------------------


def test_env_overrides_file_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HEADSUP_<SECTION>__<KEY> wins over the same key in the file."""
    path = write_config(tmp_path, "[checkin]\nlow_score = 4\n")
    monkeypatch.setenv("HEADSUP_CHECKIN__LOW_SCORE", "3")
    assert load_settings(path).checkin.low_score == 3


def test_env_override_keeps_other_keys_of_the_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overriding one key from the env keeps the file's other keys in that section."""
    path = write_config(
        tmp_path,
        '[slack]\nbot_token = "xoxb-file"\napp_token = "xapp-file"\ncoaches = ["U1"]\n',
    )
    monkeypatch.setenv("HEADSUP_SLACK__BOT_TOKEN", "xoxb-env")
    slack = load_settings(path).slack
    assert (slack.bot_token.get_secret_value(), slack.app_token.get_secret_value()) == (
        "xoxb-env",
        "xapp-file",
    )


def test_env_override_keeps_file_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deep merge: the file's list in the same section survives an env override."""
    path = write_config(tmp_path, '[slack]\ncoaches = ["U1"]\n')
    monkeypatch.setenv("HEADSUP_SLACK__ANNOUNCE_CHANNEL", "C42")
    assert load_settings(path).slack.coaches == ["U1"]


def test_env_applies_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Env overrides apply on top of the built-in defaults too."""
    monkeypatch.setenv("HEADSUP_NETWORK__TIMEZONE", "Europe/Dublin")
    assert load_settings().network.timezone == "Europe/Dublin"


def test_env_list_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """A list can be given in the env as JSON."""
    monkeypatch.setenv("HEADSUP_CONSOLE__COACHES", '["a","b"]')
    assert load_settings().console.coaches == ["a", "b"]


def test_env_list_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    """A list can be given in the env as comma-separated words."""
    monkeypatch.setenv("HEADSUP_EVENTS__REMINDERS", "1h, 10m")
    assert load_settings().events.reminders == ["1h", "10m"]


def test_env_error_names_key_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad env value is reported under its config key, naming the variable."""
    monkeypatch.setenv("HEADSUP_CHECKIN__DAY", "funday")
    with pytest.raises(ConfigError, match=r"checkin\.day: .*\(from HEADSUP_CHECKIN__DAY\)"):
        load_settings()


def test_env_bad_json_names_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unreadable JSON for a list of tables names the variable, in one line."""
    monkeypatch.setenv("HEADSUP_SUPPORT__HELPLINES", '[{"name": ')
    with pytest.raises(ConfigError, match="HEADSUP_SUPPORT__HELPLINES: not valid JSON"):
        load_settings()


def test_unrelated_headsup_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Variables like HEADSUP_TEST_DATABASE_URL are not config keys and do no harm."""
    monkeypatch.setenv("HEADSUP_TEST_DATABASE_URL", "postgresql://localhost/test")
    assert load_settings() == Settings()


# --- values ------------------------------------------------------------------------------


def test_weekday_is_case_insensitive_and_stored_lower_case(tmp_path: Path) -> None:
    """checkin.day "Friday" is accepted and kept as "friday"."""
    settings = load_settings(write_config(tmp_path, '[checkin]\nday = "Friday"\n'))
    assert (settings.checkin.day, settings.checkin.weekday) == ("friday", 4)


def test_checkin_time_becomes_a_time(tmp_path: Path) -> None:
    """checkin.time "17:45" is stored as datetime.time(17, 45)."""
    settings = load_settings(write_config(tmp_path, '[checkin]\ntime = "17:45"\n'))
    assert settings.checkin.time == dt.time(17, 45)


def test_reminder_offsets(tmp_path: Path) -> None:
    """events.reminders keeps the text and exposes the offsets as timedeltas."""
    path = write_config(tmp_path, '[events]\nreminders = ["2d", "1h30m"]\n')
    events = load_settings(path).events
    assert (events.reminders, events.reminder_offsets) == (
        ["2d", "1h30m"],
        [dt.timedelta(days=2), dt.timedelta(minutes=90)],
    )


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///x.db",
        "sqlite+aiosqlite:///x.db",
        "postgresql://user:pw@db/headsup",
        "postgresql+asyncpg://user@db/headsup",
    ],
)
def test_supported_database_urls(tmp_path: Path, url: str) -> None:
    """SQLite and PostgreSQL URLs, with or without a driver, are accepted."""
    settings = load_settings(write_config(tmp_path, f'[storage]\nurl = "{url}"\n'))
    assert settings.storage.url == url


def test_discord_ids_written_as_numbers_become_strings(tmp_path: Path) -> None:
    """A Discord snowflake written as a TOML number is kept as a string."""
    path = write_config(tmp_path, "[discord]\nguild_id = 123456789012345678\n")
    assert load_settings(path).discord.guild_id == "123456789012345678"


# --- invalid values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[network]\ntimezone = "Mars/Olympus"', "network.timezone"),
        ('[network]\nname = ""', "network.name"),
        ('[storage]\nurl = "mysql://x"', "storage.url"),
        ('[storage]\nurl = "not a url"', "storage.url"),
        ('[checkin]\nday = "funday"', "checkin.day"),
        ('[checkin]\ntime = "25:00"', "checkin.time"),
        ('[checkin]\ntime = "8am"', "checkin.time"),
        ("[checkin]\nreminder_after_hours = 0", "checkin.reminder_after_hours"),
        ("[checkin]\nreminder_after_hours = 168", "checkin.reminder_after_hours"),
        ("[checkin]\nlow_score = 0", "checkin.low_score"),
        ("[checkin]\nlow_score = 6", "checkin.low_score"),
        ('[checkin]\nlow_score = "two"', "checkin.low_score"),
        ('[checkin]\nskip_holidays = "wales"', "checkin.skip_holidays"),
        ("[support]\nack_minutes = 0", "support.ack_minutes"),
        ("[support]\nack_minutes = 1441", "support.ack_minutes"),
        ("[support]\nfollowup_days = 0", "support.followup_days"),
        ("[support]\nfollowup_days = 366", "support.followup_days"),
        ('[support]\nurgent_words = ["suicide", " "]', "support.urgent_words[1]"),
        ('[[support.helplines]]\nname = "Line"', "support.helplines[0].contact"),
        ('[events]\nreminders = ["24h", "0m"]', "events.reminders[1]"),
        ('[events]\nreminders = ["31d"]', "events.reminders[0]"),
        ('[events]\nreminders = ["soon"]', "events.reminders[0]"),
        ("[privacy]\nnote_retention_days = 0", "privacy.note_retention_days"),
        ("[privacy]\ncase_text_retention_days = 0", "privacy.case_text_retention_days"),
        ("[http]\nport = -1", "http.port"),
        ("[http]\nport = 65536", "http.port"),
        ('[http]\nheartbeat_url = "ftp://example.org"', "http.heartbeat_url"),
        ('[slack]\nmode = "websocket"', "slack.mode"),
        ("[slack]\nhttp_port = 0", "slack.http_port"),
        ('[slack]\napi_base_url = "slack.com/api"', "slack.api_base_url"),
        ('[discord]\napi_base_url = "nope"', "discord.api_base_url"),
        ('[discord]\ngateway_url = "ftp://gateway"', "discord.gateway_url"),
        ('[console]\nuser = ""', "console.user"),
    ],
)
def test_invalid_value_names_its_key(tmp_path: Path, toml: str, key: str) -> None:
    """Each invalid value gives a one-line ConfigError naming the dotted key."""
    message = config_error(tmp_path, toml + "\n")
    assert f": {key}: " in message
    assert "\n" not in message


def test_error_message_format(tmp_path: Path) -> None:
    """The message reads 'invalid config (PATH): key: message' without pydantic's noise."""
    path = write_config(tmp_path, '[checkin]\nday = "funday"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value) == (
        f"invalid config ({path}): checkin.day: unknown weekday 'funday' (use monday … sunday)"
    )


def test_all_errors_are_listed_in_one_line(tmp_path: Path) -> None:
    """Several problems are joined by "; " on one line, none with 'Value error' or doc URLs."""
    message = config_error(tmp_path, '[checkin]\nday = "funday"\ntime = "9"\nlow_score = 7\n')
    problems = message.split(": ", 1)[1].split("; ")
    assert [problem.split(":")[0] for problem in problems] == [
        "checkin.day",
        "checkin.time",
        "checkin.low_score",
    ]
    assert "Value error" not in message and "pydantic.dev" not in message


def test_out_of_range_number_shows_the_value(tmp_path: Path) -> None:
    """A number out of range says the limit and what was given."""
    message = config_error(tmp_path, "[checkin]\nlow_score = 7\n")
    assert message.endswith("checkin.low_score: must be at most 5 (got 7)")


def test_unknown_key(tmp_path: Path) -> None:
    """A typo'd key is reported as an unknown key."""
    message = config_error(tmp_path, '[slack]\nbot_tokn = "x"\n')
    assert message.endswith("slack.bot_tokn: unknown key")


def test_unknown_section(tmp_path: Path) -> None:
    """A typo'd section is reported as an unknown key too."""
    assert config_error(tmp_path, "[slak]\nmode = 1\n").endswith("slak: unknown key")


def test_bad_toml_reports_file_line_and_column(tmp_path: Path) -> None:
    """Unparseable TOML names the file, the line and the column."""
    path = write_config(tmp_path, '[network]\nname = "HeadsUp"\ntimezone = \n')
    with pytest.raises(ConfigError, match=r"custom\.toml: line 3, column 12: invalid value"):
        load_settings(path)


def test_missing_file(tmp_path: Path) -> None:
    """A path that does not exist is a ConfigError naming it."""
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value) == f"config file not found: {path}"


def test_config_error_is_one_line() -> None:
    """ConfigError folds any line breaks into a single line."""
    assert str(ConfigError("first\nsecond")) == "first second"


# --- Slack and Discord cross-field checks --------------------------------------------------


def test_slack_socket_mode_needs_app_token(tmp_path: Path) -> None:
    """A bot token in socket mode without an app token names slack.app_token."""
    message = config_error(tmp_path, '[slack]\nbot_token = "xoxb-1"\n')
    assert message.endswith(
        "slack.app_token: required when slack.mode is 'socket' (an xapp- token)"
    )


def test_slack_http_mode_needs_signing_secret(tmp_path: Path) -> None:
    """A bot token in http mode without a signing secret names slack.signing_secret."""
    message = config_error(tmp_path, '[slack]\nbot_token = "xoxb-1"\nmode = "http"\n')
    assert "slack.signing_secret: required when slack.mode is 'http'" in message


def test_slack_http_mode_does_not_need_app_token(tmp_path: Path) -> None:
    """In http mode a signing secret is enough, and Slack is enabled."""
    path = write_config(
        tmp_path, '[slack]\nbot_token = "xoxb-1"\nmode = "http"\nsigning_secret = "s"\n'
    )
    settings = load_settings(path)
    assert (settings.slack_enabled, settings.console_enabled) == (True, False)


def test_slack_without_bot_token_needs_nothing_else(tmp_path: Path) -> None:
    """Without a bot token Slack is off, whatever mode says."""
    settings = load_settings(write_config(tmp_path, '[slack]\nmode = "http"\n'))
    assert settings.slack_enabled is False


def test_slack_socket_mode_with_both_tokens_is_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokens from the environment alone turn Slack on."""
    monkeypatch.setenv("HEADSUP_SLACK__BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("HEADSUP_SLACK__APP_TOKEN", "xapp-1")
    assert load_settings().slack_enabled is True


def test_discord_token_needs_application_and_guild(tmp_path: Path) -> None:
    """A Discord token without application_id and guild_id names both keys."""
    message = config_error(tmp_path, '[discord]\ntoken = "t"\n')
    assert "discord.application_id: required when discord.token is set" in message
    assert "discord.guild_id: required when discord.token is set" in message


def test_discord_fully_configured_is_enabled(tmp_path: Path) -> None:
    """Token, application id and guild id turn Discord on and the console off."""
    path = write_config(tmp_path, '[discord]\ntoken = "t"\napplication_id = "1"\nguild_id = "2"\n')
    settings = load_settings(path)
    assert (settings.discord_enabled, settings.console_enabled) == (True, False)


# --- secrets -----------------------------------------------------------------------------

SECRET_VALUES = {
    "HEADSUP_STORAGE__ENCRYPTION_KEY": Fernet.generate_key().decode(),
    "HEADSUP_SLACK__BOT_TOKEN": "xoxb-very-secret-bot",
    "HEADSUP_SLACK__APP_TOKEN": "xapp-very-secret-app",
    "HEADSUP_SLACK__SIGNING_SECRET": "very-secret-signing",
    "HEADSUP_DISCORD__TOKEN": "very-secret-discord",
    "HEADSUP_DISCORD__APPLICATION_ID": "1",
    "HEADSUP_DISCORD__GUILD_ID": "2",
}


@pytest.fixture
def all_secrets_set(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with every secret set from the environment."""
    for name, value in SECRET_VALUES.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_secret_values_never_appear_in_redacted(all_secrets_set: Settings) -> None:
    """redacted() output contains none of the secret values."""
    dumped = json.dumps(redacted(all_secrets_set))
    secrets = [value for name, value in SECRET_VALUES.items() if not name.endswith("_ID")]
    assert [secret for secret in secrets if secret in dumped] == []


def test_set_secrets_are_shown_as_stars(all_secrets_set: Settings) -> None:
    """A secret that is set is shown as "********"."""
    shown = redacted(all_secrets_set)
    assert [
        shown["storage"]["encryption_key"],
        shown["slack"]["bot_token"],
        shown["slack"]["app_token"],
        shown["slack"]["signing_secret"],
        shown["discord"]["token"],
    ] == ["********"] * 5


def test_empty_secrets_are_shown_empty() -> None:
    """A secret that is not set is shown as ""."""
    shown = redacted(load_settings())
    assert (shown["slack"]["bot_token"], shown["storage"]["encryption_key"]) == ("", "")


def test_redacted_is_plain_json(tmp_path: Path) -> None:
    """redacted() round-trips through JSON unchanged, time written as HH:MM."""
    shown = redacted(load_settings(EXAMPLE_FILE))
    assert (json.loads(json.dumps(shown)), shown["checkin"]["time"]) == (shown, "08:00")


def test_secrets_hidden_in_repr(all_secrets_set: Settings) -> None:
    """Printing the settings object does not show any secret."""
    assert "very-secret" not in repr(all_secrets_set)


def test_storage_url_password_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A password inside storage.url is shown as "***"."""
    monkeypatch.setenv("HEADSUP_STORAGE__URL", "postgresql+asyncpg://bot:hunter2@db:5432/headsup")
    shown = redacted(load_settings())
    assert shown["storage"]["url"] == "postgresql+asyncpg://bot:***@db:5432/headsup"


def test_url_without_password_is_unchanged() -> None:
    """redact_url leaves a URL without a password exactly as written."""
    assert redact_url("sqlite+aiosqlite:///:memory:") == "sqlite+aiosqlite:///:memory:"


def test_invalid_encryption_key_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad Fernet key is reported by key name, never by value."""
    monkeypatch.setenv("HEADSUP_STORAGE__ENCRYPTION_KEY", "not-a-key-but-secret-9f8e7d")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "storage.encryption_key: not a valid Fernet key" in message
    assert "secret-9f8e7d" not in message


def test_several_encryption_keys_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Comma-separated keys (newest first, for rotation) are each checked and accepted."""
    # Keys with "-" and "_" once made the joined string fail as one key, at random.
    keys = [
        "gXB-dWNTOsAhWG04VOd2um8RGPmY8pXmkl9RfCE0C6A=",
        "rHQ0j9beCFOLpXZhHg4Ve2pl9-4Ole15D_4-fCNHYYc=",
    ]
    monkeypatch.setenv("HEADSUP_STORAGE__ENCRYPTION_KEY", ",".join(keys))
    assert load_settings().storage.encryption_key.get_secret_value() == ",".join(keys)


def test_one_bad_key_among_several_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A list of keys with one that is not a key is refused, naming the setting only."""
    good = "gXB-dWNTOsAhWG04VOd2um8RGPmY8pXmkl9RfCE0C6A="
    monkeypatch.setenv("HEADSUP_STORAGE__ENCRYPTION_KEY", f"{good},not-a-key-9f8e7d")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "storage.encryption_key: not a valid Fernet key" in str(caught.value)
    assert "9f8e7d" not in str(caught.value)


def test_invalid_token_is_not_echoed(tmp_path: Path) -> None:
    """A token with a space in it is reported by key name, never by value."""
    message = config_error(tmp_path, '[slack]\nbot_token = "xoxb-abc zzsecretzz"\n')
    assert "slack.bot_token: must not contain spaces" in message
    assert "zzsecretzz" not in message


def test_bad_database_url_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rejected storage.url (which may hold a password) is not repeated in the error."""
    monkeypatch.setenv("HEADSUP_STORAGE__URL", "mysql://bot:hunter2@db/headsup")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "storage.url: unsupported database 'mysql'" in str(caught.value)
    assert "hunter2" not in str(caught.value)
