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
    logs.configure("WARNING" if settings.console_enabled else None)
    try:
        bot = App(settings)
        asyncio.run(bot.run())
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
