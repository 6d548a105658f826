"""The `headsup` command line: in-process with typer's CliRunner, and as a real process."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from bot.cli import app

SLACK_TOKEN = "xoxb-1111-2222-very-secret-token"
APP_TOKEN = "xapp-1-A111-very-secret-app-token"
UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/test"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No HEADSUP_* variable leaks in, and every command runs in an empty directory."""
    for name in list(os.environ):
        if name.upper().startswith("HEADSUP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def clean_env(**extra: str) -> dict[str, str]:
    """The process environment without any HEADSUP_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("HEADSUP_")}
    env.update(extra)
    return env


def headsup(
    *args: str, cwd: Path, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m bot.cli ARGS` as a real process in `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=env or clean_env(),
        timeout=120,
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def one_line(text: str) -> str:
    """The single non-empty line of `text` (fails if there are more or none)."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


runner = CliRunner()


# --- keygen -----------------------------------------------------------------------------------


def test_keygen_prints_a_fernet_key():
    """`headsup keygen` prints one valid Fernet key."""
    result = runner.invoke(app, ["keygen"])
    assert result.exit_code == 0
    key = result.stdout.strip()
    assert Fernet(key.encode()).decrypt(Fernet(key.encode()).encrypt(b"x")) == b"x"


def test_keygen_prints_a_new_key_each_time():
    """Two runs of keygen print different keys."""
    first = runner.invoke(app, ["keygen"]).stdout
    assert first != runner.invoke(app, ["keygen"]).stdout


# --- check-config -----------------------------------------------------------------------------


def test_check_config_without_file_would_start_console():
    """With no config file, check-config says the console would start and prints JSON."""
    result = runner.invoke(app, ["check-config"])
    assert result.exit_code == 0
    first, _, rest = result.stdout.partition("\n")
    assert first == "config is valid; would start: console"
    settings = json.loads(rest)
    assert settings["storage"]["url"] == "sqlite:///headsup.db"
    assert settings["network"]["timezone"] == "Europe/London"


def test_check_config_reads_config_toml_in_working_directory(tmp_path):
    """Without -c, ./config.toml is read when it exists."""
    write(tmp_path / "config.toml", '[network]\nname = "Heads Together"\n')
    result = runner.invoke(app, ["check-config"])
    assert json.loads(result.stdout.partition("\n")[2])["network"]["name"] == "Heads Together"


def test_check_config_redacts_slack_tokens_and_key(tmp_path):
    """Slack tokens and the encryption key never appear; Slack would start."""
    key = Fernet.generate_key().decode()
    config = write(
        tmp_path / "slack.toml",
        f'[storage]\nencryption_key = "{key}"\n'
        f'[slack]\nbot_token = "{SLACK_TOKEN}"\napp_token = "{APP_TOKEN}"\n',
    )
    result = runner.invoke(app, ["check-config", "-c", str(config)])
    assert result.exit_code == 0
    assert "would start: slack" in result.stdout
    assert "console" not in result.stdout.splitlines()[0]
    for secret in (SLACK_TOKEN, APP_TOKEN, key, "very-secret"):
        assert secret not in result.output
    settings = json.loads(result.stdout.partition("\n")[2])
    assert settings["slack"]["bot_token"] == "********"
    assert settings["storage"]["encryption_key"] == "********"


def test_check_config_redacts_database_password(tmp_path):
    """A password in storage.url is hidden."""
    config = write(
        tmp_path / "pg.toml", '[storage]\nurl = "postgresql+asyncpg://bot:hunter2@db/headsup"\n'
    )
    result = runner.invoke(app, ["check-config", "-c", str(config)])
    assert result.exit_code == 0
    assert "hunter2" not in result.output


def test_check_config_invalid_file_names_the_key(tmp_path):
    """An invalid value exits 1 with one line on stderr naming checkin.day."""
    config = write(tmp_path / "bad.toml", '[checkin]\nday = "funday"\n')
    result = runner.invoke(app, ["check-config", "-c", str(config)])
    assert result.exit_code == 1
    line = one_line(result.stderr)
    assert "checkin.day" in line and "Traceback" not in result.output
    assert result.stdout == ""


def test_check_config_missing_file(tmp_path):
    """A -c file that doesn't exist exits 1 with one line naming it."""
    result = runner.invoke(app, ["check-config", "-c", str(tmp_path / "nope.toml")])
    assert result.exit_code == 1
    assert "nope.toml" in one_line(result.stderr)


def test_check_config_invalid_file_as_a_process(tmp_path):
    """As a real process, an invalid config gives one stderr line and no traceback."""
    write(tmp_path / "bad.toml", '[checkin]\nday = "funday"\n')
    result = headsup("check-config", "-c", "bad.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert "checkin.day" in one_line(result.stderr)
    assert "Traceback" not in result.stderr + result.stdout


def test_check_config_missing_file_as_a_process(tmp_path):
    """As a real process, a missing -c file gives one stderr line and exit 1."""
    result = headsup("check-config", "-c", "missing.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert "missing.toml" in one_line(result.stderr)
    assert "Traceback" not in result.stderr


# --- db upgrade ---------------------------------------------------------------------------------


def test_db_upgrade_creates_tables_in_fresh_sqlite(tmp_path):
    """`db upgrade` on a fresh SQLite file creates the tables."""
    db_file = tmp_path / "fresh.db"
    config = write(tmp_path / "c.toml", f'[storage]\nurl = "sqlite:///{db_file}"\n')
    result = runner.invoke(app, ["db", "upgrade", "-c", str(config)])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db_file) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"member", "identity", "outbox", "alembic_version"} <= tables


def test_db_upgrade_twice_is_harmless(tmp_path):
    """Running `db upgrade` on an up-to-date database succeeds again."""
    config = write(tmp_path / "c.toml", f'[storage]\nurl = "sqlite:///{tmp_path / "a.db"}"\n')
    assert runner.invoke(app, ["db", "upgrade", "-c", str(config)]).exit_code == 0
    result = runner.invoke(app, ["db", "upgrade", "-c", str(config)])
    assert result.exit_code == 0 and "up to date" in result.stdout


def test_db_upgrade_unreachable_postgresql(tmp_path):
    """`db upgrade` against a closed port exits 1 with one clear line, no traceback."""
    result = headsup(
        "db", "upgrade", cwd=tmp_path, env=clean_env(HEADSUP_STORAGE__URL=UNREACHABLE_PG)
    )
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert "cannot reach the database" in line
    assert "Traceback" not in result.stderr + result.stdout


# --- run ----------------------------------------------------------------------------------------


def test_run_help_script_in_empty_directory(tmp_path):
    """`/headsup help` piped into `headsup run` exits 0 and prints only the chat."""
    result = headsup("run", cwd=tmp_path, stdin="/headsup help\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[ephemeral you]\n")
    for name in ("/checkin", "/support", "/coach", "/event", "/events", "/headsup"):
        assert name in result.stdout
    headers = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert headers == ["[ephemeral you]"]
    for noise in ("app.started", "[info", "[warning", "alembic", "Running upgrade"):
        assert noise not in result.stdout
    assert (tmp_path / "headsup.db").is_file() and (tmp_path / "headsup.db.key").is_file()


def test_run_echo_script_output_is_exactly_the_chat(tmp_path):
    """A script of markers prints exactly those markers, nothing else, and exits 0."""
    result = headsup("run", cwd=tmp_path, stdin=":echo one\n:echo two\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "one\ntwo\n"


def test_run_with_empty_input_exits_zero(tmp_path):
    """End of input at once ends the run with status 0 and prints nothing."""
    result = headsup("run", cwd=tmp_path, stdin="")
    assert (result.returncode, result.stdout) == (0, "")


def test_run_slack_without_encryption_key(tmp_path):
    """A Slack-configured run without a key exits 1 with a line naming storage.encryption_key."""
    write(
        tmp_path / "config.toml",
        f'[slack]\nbot_token = "{SLACK_TOKEN}"\napp_token = "{APP_TOKEN}"\n',
    )
    result = headsup("run", cwd=tmp_path)
    assert result.returncode == 1
    assert "storage.encryption_key" in one_line(result.stderr)
    assert SLACK_TOKEN not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_run_database_folder_missing(tmp_path):
    """A SQLite file in a folder that doesn't exist ends with one line, not a traceback."""
    write(tmp_path / "config.toml", '[storage]\nurl = "sqlite:///nowhere/here/bot.db"\n')
    result = headsup("run", cwd=tmp_path)
    assert result.returncode == 1
    assert "nowhere" in one_line(result.stderr)
    assert "Traceback" not in result.stderr


def test_run_unreachable_postgresql(tmp_path):
    """`run` against a closed PostgreSQL port exits 1 with one clear line."""
    result = headsup("run", cwd=tmp_path, env=clean_env(HEADSUP_STORAGE__URL=UNREACHABLE_PG))
    assert result.returncode == 1
    assert "cannot reach the database" in one_line(result.stderr)
    assert "Traceback" not in result.stderr


def test_headsup_script_is_installed(tmp_path):
    """The `headsup` console script next to this Python runs (keygen)."""
    script = Path(sys.executable).parent / "headsup"
    if not script.exists():
        pytest.skip("no headsup script next to this interpreter")
    result = subprocess.run(
        [str(script), "keygen"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True
    )
    assert result.returncode == 0
    Fernet(result.stdout.strip().encode())


# --- rotate-key -------------------------------------------------------------------------------


def test_rotate_key_with_one_key_refuses_in_one_line(tmp_path):
    """With a single key, `rotate-key` explains what to do in one line, exits 1, and leaves the
    database alone."""
    key = Fernet.generate_key().decode()
    config = write(tmp_path / "c.toml", f'[storage]\nurl = "sqlite:///{tmp_path / "a.db"}"\n')
    result = headsup(
        "rotate-key", "-c", str(config), cwd=tmp_path,
        env=clean_env(HEADSUP_STORAGE__ENCRYPTION_KEY=key),
    )  # fmt: skip
    assert result.returncode == 1
    assert "holds one key" in one_line(result.stderr)
    assert "Traceback" not in result.stderr and key not in result.stderr
    assert not (tmp_path / "a.db").exists()  # refused before touching the database


def test_rotate_key_reencrypts_stored_notes_and_prints_counts(tmp_path):
    """A note stored under the old key is readable by the new key alone afterwards; the counts
    for each kind of private text are printed."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    db_file = tmp_path / "a.db"
    config = write(tmp_path / "c.toml", f'[storage]\nurl = "sqlite:///{db_file}"\n')
    assert runner.invoke(app, ["db", "upgrade", "-c", str(config)]).exit_code == 0
    token = Fernet(old.encode()).encrypt(b"a private note").decode()
    with sqlite3.connect(db_file) as conn:
        conn.execute(
            "INSERT INTO member (id, name, roles, created_at, last_seen_at) "
            "VALUES (1, 'Ann', '', '2026-01-05 09:00:00', '2026-01-05 09:00:00')"
        )
        conn.execute(
            "INSERT INTO checkin_week (member_id, opens_at, skipped, note) "
            "VALUES (1, '2026-01-12 08:00:00', 0, ?)",
            (token,),
        )
    result = runner.invoke(
        app,
        ["rotate-key", "-c", str(config)],
        env={"HEADSUP_STORAGE__ENCRYPTION_KEY": f"{new},{old}"},
    )
    assert result.exit_code == 0, result.output
    assert "check-in notes: 1 re-encrypted, 0 already on the new key" in result.stdout
    assert "You can now remove the other key(s)" in result.stdout
    with sqlite3.connect(db_file) as conn:
        [(stored,)] = conn.execute("SELECT note FROM checkin_week").fetchall()
    assert Fernet(new.encode()).decrypt(stored.encode()) == b"a private note"


# --- slack-manifest ---------------------------------------------------------------------------


def manifest_of(*args: str) -> dict:
    import yaml

    result = runner.invoke(app, ["slack-manifest", *args])
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.stdout)


def test_slack_manifest_lists_every_command_group():
    """The manifest has one slash command per command group, with a description each."""
    from bot.app import default_registry

    data = manifest_of()
    commands = {c["command"]: c for c in data["features"]["slash_commands"]}
    assert set(commands) == {f"/{g}" for g in default_registry().groups()}
    assert {"/checkin", "/support", "/coach", "/event", "/events", "/headsup"} <= set(commands)
    assert all(c["description"] and c["should_escape"] is False for c in commands.values())
    assert "settings" in commands["/checkin"]["usage_hint"]


def test_slack_manifest_has_the_scopes_events_and_socket_mode():
    """Bot scopes, the message.im and app_home_opened events, interactivity and Socket Mode."""
    data = manifest_of()
    assert {"commands", "chat:write", "im:write", "im:history", "users:read", "files:write"} <= set(
        data["oauth_config"]["scopes"]["bot"]
    )
    settings = data["settings"]
    assert set(settings["event_subscriptions"]["bot_events"]) == {"message.im", "app_home_opened"}
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is True
    assert data["features"]["app_home"]["home_tab_enabled"] is True


def test_slack_manifest_for_http_mode_sends_everything_to_the_url():
    """With --request-url, Socket Mode is off and commands, events and buttons go to the URL."""
    url = "https://bot.example.org/slack/events"
    data = manifest_of("--request-url", url)
    assert data["settings"]["socket_mode_enabled"] is False
    assert data["settings"]["event_subscriptions"]["request_url"] == url
    assert data["settings"]["interactivity"]["request_url"] == url
    assert {c["url"] for c in data["features"]["slash_commands"]} == {url}


def test_slack_manifest_uses_the_network_name(tmp_path):
    """The app's name comes from network.name in the config."""
    config = write(tmp_path / "c.toml", '[network]\nname = "Heads Together"\n')
    data = manifest_of("-c", str(config))
    assert data["display_information"]["name"] == "Heads Together"
    assert data["features"]["bot_user"]["display_name"] == "Heads Together"


def test_slack_manifest_refuses_a_request_url_that_is_not_a_url():
    """A --request-url that isn't http(s) is refused in one line, exit 1."""
    result = runner.invoke(app, ["slack-manifest", "--request-url", "bot.example.org"])
    assert result.exit_code == 1
    assert "--request-url must be" in one_line(result.stderr)
