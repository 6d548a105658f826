"""The composition root: which platform serves each channel, the field cipher, and restarts."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlmodel import func, select

from bot.app import channel_platforms, make_cipher
from bot.config import ConfigError, Settings
from bot.ui import Channel, Message, ToMember
from storage.models import Identity, Member, OutboxMessage, OutboxStatus
from tests.harness import ConsoleBot

SLACK = {"bot_token": "xoxb-test", "app_token": "xapp-test"}
DISCORD = {"token": "discord-test", "application_id": "1", "guild_id": "2"}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No HEADSUP_* variable leaks in, and files land in an empty directory."""
    for name in list(os.environ):
        if name.upper().startswith("HEADSUP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


# --- channel_platforms ----------------------------------------------------------------------


def test_console_only_serves_both_channels():
    """With no chat platform, the console has both shared channels."""
    assert channel_platforms(Settings()) == {
        Channel.ANNOUNCEMENTS: ["console"],
        Channel.COORDINATORS: ["console"],
    }


def test_slack_with_channels_serves_both():
    """Slack with both channel ids has both channels, and the console none (it doesn't start)."""
    settings = Settings(
        slack={**SLACK, "announce_channel": "C1", "coordinator_channel": "C2"},
    )
    assert channel_platforms(settings) == {
        Channel.ANNOUNCEMENTS: ["slack"],
        Channel.COORDINATORS: ["slack"],
    }


def test_slack_without_channels_serves_neither():
    """Slack with no channel ids configured serves no shared channel."""
    assert channel_platforms(Settings(slack=SLACK)) == {
        Channel.ANNOUNCEMENTS: [],
        Channel.COORDINATORS: [],
    }


def test_slack_with_only_announcements():
    """Each channel is served only where it is configured."""
    settings = Settings(slack={**SLACK, "announce_channel": "C1"})
    assert channel_platforms(settings) == {
        Channel.ANNOUNCEMENTS: ["slack"],
        Channel.COORDINATORS: [],
    }


def test_discord_with_channels_serves_both():
    """Discord with both channel ids has both channels."""
    settings = Settings(
        discord={**DISCORD, "announce_channel_id": "10", "coordinator_channel_id": "11"},
    )
    assert channel_platforms(settings) == {
        Channel.ANNOUNCEMENTS: ["discord"],
        Channel.COORDINATORS: ["discord"],
    }


def test_slack_and_discord_together():
    """With both platforms, a channel is posted on every platform that has it."""
    settings = Settings(
        slack={**SLACK, "announce_channel": "C1", "coordinator_channel": "C2"},
        discord={**DISCORD, "announce_channel_id": "10"},
    )
    assert channel_platforms(settings) == {
        Channel.ANNOUNCEMENTS: ["slack", "discord"],
        Channel.COORDINATORS: ["slack"],
    }


# --- make_cipher ----------------------------------------------------------------------------


def test_make_cipher_uses_the_configured_key():
    """The configured key is the one that encrypts."""
    key = Fernet.generate_key().decode()
    cipher = make_cipher(Settings(storage={"encryption_key": key}))
    assert Fernet(key.encode()).decrypt(cipher.encrypt("note").encode()) == b"note"


def test_make_cipher_with_several_keys_encrypts_with_the_first():
    """With comma-separated keys, the first encrypts and the others still decrypt."""
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    cipher = make_cipher(Settings(storage={"encryption_key": f"{new},{old}"}))
    assert Fernet(new.encode()).decrypt(cipher.encrypt("x").encode()) == b"x"
    assert cipher.decrypt(Fernet(old.encode()).encrypt(b"y").decode()) == "y"


def test_make_cipher_makes_a_local_key_next_to_the_sqlite_file(tmp_path):
    """The console with no key keeps one, owner-only, next to its SQLite file."""
    url = f"sqlite:///{tmp_path / 'data' / 'bot.db'}"
    (tmp_path / "data").mkdir()
    cipher = make_cipher(Settings(storage={"url": url}))
    key_file = tmp_path / "data" / "bot.db.key"
    key = key_file.read_text().strip()
    assert Fernet(key.encode()).decrypt(cipher.encrypt("note").encode()) == b"note"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_make_cipher_reuses_the_local_key(tmp_path):
    """A second start reads the same local key, so earlier text still decrypts."""
    settings = Settings(storage={"url": f"sqlite:///{tmp_path / 'bot.db'}"})
    token = make_cipher(settings).encrypt("kept")
    assert make_cipher(settings).decrypt(token) == "kept"


def test_make_cipher_local_key_for_postgresql_is_in_the_working_directory(tmp_path):
    """With PostgreSQL and no key, the console keeps headsup.key in the working directory."""
    make_cipher(Settings(storage={"url": "postgresql+asyncpg://u@localhost/db"}))
    assert (tmp_path / "headsup.key").is_file()


def test_make_cipher_refuses_slack_without_a_key(tmp_path):
    """Slack without storage.encryption_key is a ConfigError naming the key; no key file."""
    with pytest.raises(ConfigError, match=r"storage\.encryption_key"):
        make_cipher(Settings(slack=SLACK, storage={"url": f"sqlite:///{tmp_path / 'b.db'}"}))
    assert not (tmp_path / "b.db.key").exists()


def test_make_cipher_refuses_discord_without_a_key():
    """Discord without storage.encryption_key is a ConfigError naming the key."""
    with pytest.raises(ConfigError, match=r"storage\.encryption_key"):
        make_cipher(Settings(discord=DISCORD))


def test_make_cipher_local_key_in_a_missing_folder_is_a_config_error(tmp_path):
    """A SQLite file in a folder that doesn't exist is one clear ConfigError, not an OSError."""
    url = f"sqlite:///{tmp_path / 'missing' / 'bot.db'}"
    with pytest.raises(ConfigError, match="missing"):
        make_cipher(Settings(storage={"url": url}))


def test_make_cipher_unusable_local_key_is_a_config_error(tmp_path):
    """A damaged local key file is a ConfigError naming storage.encryption_key."""
    (tmp_path / "bot.db.key").write_text("not a key\n")
    with pytest.raises(ConfigError, match=r"storage\.encryption_key"):
        make_cipher(Settings(storage={"url": f"sqlite:///{tmp_path / 'bot.db'}"}))


# --- restart ---------------------------------------------------------------------------------


async def member_ids(bot: ConsoleBot) -> dict[str, int]:
    async with bot.app.database.session() as session:
        rows = await session.exec(select(Identity.user_id, Identity.member_id))
        return dict(rows.all())


async def test_restart_keeps_members(bot: ConsoleBot):
    """Members made before a restart are the same members after it."""
    await bot.say("hello", as_="alice")
    await bot.say("hello", as_="bob")
    before = await member_ids(bot)
    await bot.restart()
    await bot.say("hello again", as_="alice")
    assert await member_ids(bot) == before
    async with bot.app.database.session() as session:
        assert (await session.exec(select(func.count()).select_from(Member))).one() == 2


async def test_restart_delivers_pending_outbox_rows(bot: ConsoleBot):
    """A message queued but not yet sent before a restart is delivered after it."""
    await bot.say("hello", as_="alice")
    alice = (await member_ids(bot))["alice"]
    async with bot.app.database.session() as session:
        await bot.app.outbox.send(
            session, bot.clock.now(), ToMember(alice), Message("queued before the restart")
        )
        await session.commit()
    assert "queued before the restart" not in bot.transcript
    await bot.restart()
    await bot.app.settle()
    assert "[DM alice]\nqueued before the restart\n" in bot.transcript
    async with bot.app.database.session() as session:
        statuses = (await session.exec(select(OutboxMessage.status))).all()
    assert statuses == [OutboxStatus.SENT]


async def test_restart_sends_nothing_twice(bot: ConsoleBot):
    """A message already sent before a restart is not sent again after it."""
    await bot.say("hello", as_="alice")
    alice = (await member_ids(bot))["alice"]
    async with bot.app.database.session() as session:
        await bot.app.outbox.send(session, bot.clock.now(), ToMember(alice), Message("only once"))
        await session.commit()
    await bot.app.settle()
    await bot.restart()
    await bot.app.settle()
    await bot.advance("1h")
    assert bot.transcript.count("only once") == 1
