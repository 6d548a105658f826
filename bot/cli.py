"""The `headsup` command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from bot.config import ConfigError, Settings, load_settings, redacted
from storage.crypto import Cipher
from storage.db import DatabaseUnavailable

app = typer.Typer(
    help="HeadsUp bot: weekly check-ins, crisis support and events for a network of headteachers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")

ConfigOption = Annotated[
    Path | None,
    typer.Option("-c", "--config", help="Config file (default: ./config.toml if it exists)."),
]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"headsup: {message}", err=True)
    return typer.Exit(code=1)


def _settings(path: Path | None) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


@app.command()
def run(config: ConfigOption = None) -> None:
    """Start every configured platform (the console when none is)."""
    from bot import logs
    from bot.app import App

    settings = _settings(config)
    # The console keeps stderr readable for a person; a server writes one JSON object a line.
    console = settings.console_enabled
    logs.configure("WARNING" if console else None, json=not console)
    try:
        bot = App(settings)
        asyncio.run(bot.serve())
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    except DatabaseUnavailable as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        pass


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply every database migration."""
    from storage.db import Database

    settings = _settings(config)

    async def upgrade() -> None:
        database = Database(settings.storage.url)
        try:
            await database.upgrade()
        finally:
            await database.close()

    try:
        asyncio.run(upgrade())
    except DatabaseUnavailable as exc:
        raise _fail(str(exc)) from None
    typer.echo("database is up to date")


@app.command("check-config")
def check_config(config: ConfigOption = None) -> None:
    """Validate the config and print what would start (secrets redacted)."""
    settings = _settings(config)
    platforms = [
        name
        for name, on in (
            ("slack", settings.slack_enabled),
            ("discord", settings.discord_enabled),
            ("console", settings.console_enabled),
        )
        if on
    ]
    typer.echo(f"config is valid; would start: {', '.join(platforms)}")
    typer.echo(json.dumps(redacted(settings), indent=2, default=str))


@app.command()
def keygen() -> None:
    """Print a new encryption key for storage.encryption_key."""
    typer.echo(Cipher.generate_key())


@app.command("rotate-key")
def rotate_key(config: ConfigOption = None) -> None:
    """Re-encrypt all stored private text under the newest of storage.encryption_key's keys."""
    from storage.db import Database
    from storage.rotation import RotationError, ciphers_for, rotate_keys

    settings = _settings(config)
    setting = settings.storage.encryption_key.get_secret_value()
    try:
        ciphers_for(setting)  # refuse before touching the database
    except RotationError as exc:
        raise _fail(str(exc)) from None

    async def rotate():
        database = Database(settings.storage.url)
        try:
            await database.upgrade()
            return await rotate_keys(database, setting)
        finally:
            await database.close()

    try:
        counts = asyncio.run(rotate())
    except (RotationError, DatabaseUnavailable) as exc:
        raise _fail(str(exc)) from None
    for count in counts:
        typer.echo(
            f"{count.label}: {count.rotated} re-encrypted, {count.current} already on the new key"
        )
    typer.echo(
        "Done: everything is encrypted under the first key. You can now remove the other "
        "key(s) from storage.encryption_key."
    )


@app.command("slack-manifest")
def slack_manifest(
    config: ConfigOption = None,
    request_url: Annotated[
        str | None,
        typer.Option(
            "--request-url",
            help="For HTTP mode: the public https URL of /slack/events (default: Socket Mode).",
        ),
    ] = None,
) -> None:
    """Print the Slack app manifest (YAML): every slash command, scope and event."""
    from bot.app import default_registry
    from bot.platforms.slack import manifest

    settings = _settings(config)
    if request_url is not None and not request_url.startswith(("https://", "http://")):
        raise _fail("--request-url must be an https:// URL ending in /slack/events")
    typer.echo(
        manifest(default_registry(), name=settings.network.name, request_url=request_url),
        nl=False,
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
