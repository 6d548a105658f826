"""Key rotation: re-encrypt every encrypted field under the newest key.

``storage.encryption_key`` may hold several keys, newest first; the newest encrypts and every key
decrypts. To rotate: put a new key first, run ``headsup rotate-key``, then remove the old key.
Rows are re-encrypted a batch per transaction, each with compare-and-swap on the old value (so a
change made meanwhile by the running bot is never overwritten). A value the newest key already
reads is left alone, so running it again after a crash picks up where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import update
from sqlmodel import SQLModel, col, select

from storage.checkin import CheckinWeek
from storage.crypto import Cipher, CipherError
from storage.db import Database
from storage.models import OutboxMessage
from storage.support import CaseMessage, SupportCase

BATCH = 200

# Every encrypted column: (table, column, what it holds, for the operator). The outbox payload is
# a message waiting to be delivered (emptied once it is sent).
ENCRYPTED_FIELDS: list[tuple[type[SQLModel], str, str]] = [
    (CheckinWeek, "note", "check-in notes"),
    (SupportCase, "words", "support requests"),
    (CaseMessage, "text", "kept support messages"),
    (OutboxMessage, "payload", "messages waiting to be sent"),
]


class RotationError(Exception):
    """Rotation cannot start or go on; the message is one line for the operator."""


@dataclass
class FieldCount:
    label: str
    rotated: int = 0
    current: int = 0  # already under the newest key


def keys_of(setting: str) -> list[str]:
    """The keys in `storage.encryption_key`, newest first."""
    return [k.strip() for k in setting.split(",") if k.strip()]


def ciphers_for(setting: str) -> tuple[Cipher, Fernet]:
    """The cipher for every key in `setting`, and the newest key alone; a RotationError when
    there is nothing to rotate to or a key is not a key."""
    keys = keys_of(setting)
    if not keys:
        raise RotationError(
            "storage.encryption_key is not set: set it to a new key (`headsup keygen`), a "
            "comma, then the key in use (the console keeps its own in a .key file next to the "
            "database)"
        )
    if len(keys) < 2:
        raise RotationError(
            "storage.encryption_key holds one key, so there is nothing to rotate to: put a new "
            "key (`headsup keygen`) first, then a comma, then the current one"
        )
    try:
        return Cipher(keys), Fernet(keys[0].encode())
    except (CipherError, ValueError) as exc:
        raise RotationError(f"storage.encryption_key: {exc}") from None


async def rotate_keys(
    database: Database,
    setting: str,
    *,
    batch: int = BATCH,
    after_batch: Callable[[FieldCount], None] | None = None,
) -> list[FieldCount]:
    """Re-encrypt every encrypted value under the newest key in `setting`; return counts."""
    cipher, newest = ciphers_for(setting)
    counts = []
    for table, column, label in ENCRYPTED_FIELDS:
        count = FieldCount(label)
        counts.append(count)
        await _rotate_field(database, cipher, newest, table, column, count, batch, after_batch)
    return counts


async def _rotate_field(
    database: Database,
    cipher: Cipher,
    newest: Fernet,
    table: type[SQLModel],
    column: str,
    count: FieldCount,
    batch: int,
    after_batch: Callable[[FieldCount], None] | None,
) -> None:
    ident = col(table.id)  # type: ignore[attr-defined]
    field = col(getattr(table, column))
    last_id = 0
    while True:
        async with database.session() as session:
            rows = (
                await session.exec(
                    select(ident, field)
                    .where(ident > last_id, field.is_not(None), field != "")
                    .order_by(ident)
                    .limit(batch)
                )
            ).all()
            if not rows:
                return
            for row_id, token in rows:
                last_id = row_id
                if _reads(newest, token):
                    count.current += 1
                    continue
                try:
                    fresh = cipher.rotate(token)
                except CipherError:
                    raise RotationError(
                        f"{table.__tablename__}.{column} row {row_id} cannot be decrypted with "
                        "any configured key — is a key missing from storage.encryption_key? "
                        "Rows before it have been re-encrypted; run again once it is fixed"
                    ) from None
                changed = await session.exec(
                    update(table).where(ident == row_id, field == token).values({column: fresh})
                )
                # 0 rows: the bot changed or emptied it meanwhile, under the newest key already.
                count.rotated += changed.rowcount or 0
            await session.commit()
        if after_batch is not None:
            after_batch(count)


def _reads(fernet: Fernet, token: str) -> bool:
    try:
        fernet.decrypt(token.encode())
    except InvalidToken:
        return False
    return True
