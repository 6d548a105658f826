"""Key rotation: every encrypted field re-encrypted under the newest key, a batch at a time."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlmodel import SQLModel, col, select

from bot.core import Actor
from storage.checkin import CheckinWeek
from storage.crypto import Cipher
from storage.db import Database
from storage.members import member_for
from storage.models import OutboxMessage
from storage.rotation import ENCRYPTED_FIELDS, RotationError, rotate_keys
from storage.support import CaseMessage, CaseStatus, SupportCase

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
OLD, NEW = Cipher.generate_key(), Cipher.generate_key()


@pytest.fixture
async def database(db):
    database = Database(db.url, schema=db.schema)
    await database.upgrade()
    yield database
    await database.close()


async def seed(database: Database, cipher: Cipher, notes: int = 3) -> None:
    """A member with `notes` noted weeks, a case with words and a kept message, and one waiting
    and one sent outbox row — every encrypted field, under `cipher`'s first key."""
    async with database.session() as session:
        member = await member_for(session, Actor("slack", "U1", "Ann"), NOW)
        case = SupportCase(
            member_id=member.id,
            status=CaseStatus.ACTIVE,
            words=cipher.encrypt("words"),
            created_at=NOW,
        )
        session.add(case)
        await session.flush()
        session.add_all(
            [
                *(
                    CheckinWeek(
                        member_id=member.id,
                        opens_at=NOW.replace(day=5 + i),
                        note=cipher.encrypt(f"note {i}"),
                    )
                    for i in range(notes)
                ),
                CaseMessage(case_id=case.id, at=NOW, sender="member", text=cipher.encrypt("t")),
                *(
                    OutboxMessage(
                        created_at=NOW,
                        platform="slack",
                        kind="dm",
                        recipient="U1",
                        payload=payload,
                        next_attempt_at=NOW,
                    )
                    for payload in (cipher.encrypt('{"text": "hi"}'), "")
                ),
            ]
        )
        await session.commit()


async def stored_tokens(database: Database) -> list[str]:
    """Every non-empty value of every encrypted column."""
    tokens: list[str] = []
    async with database.session() as session:
        for table, column, _ in ENCRYPTED_FIELDS:
            values = await session.exec(select(col(getattr(table, column))))
            tokens += [v for v in values if v]
    return tokens


def readable_by(key: str, token: str) -> bool:
    try:
        Fernet(key.encode()).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def test_every_encrypted_column_is_listed():
    """Each place the code encrypts a value stores it in a column rotation visits: a new
    encrypted field that rotation would miss fails here."""
    assignment = re.compile(r"(\w+)(?:, \w+\.\w+)?\s*=\s*[\w.]*cipher\.encrypt\(")
    written: set[str] = set()
    root = Path(__file__).resolve().parents[2]
    for path in [*(root / "commands").glob("*.py"), *(root / "bot").rglob("*.py")]:
        for line in path.read_text().splitlines():
            if "cipher.encrypt(" not in line:
                continue
            found = assignment.search(line)
            # bot/delivery.py seals the outbox payload in a helper that returns the token.
            written.add(found.group(1) if found else "payload")
    listed = {column for _, column, _ in ENCRYPTED_FIELDS}
    assert written and written <= listed
    for table, column, _ in ENCRYPTED_FIELDS:
        assert column in SQLModel.metadata.tables[table.__tablename__].columns


async def test_rotation_moves_every_value_to_the_new_key(database: Database):
    """Afterwards the new key alone reads every value, and the old key none."""
    await seed(database, Cipher([OLD]))
    counts = await rotate_keys(database, f"{NEW},{OLD}")
    assert [(c.label, c.rotated) for c in counts] == [
        ("check-in notes", 3),
        ("support requests", 1),
        ("kept support messages", 1),
        ("messages waiting to be sent", 1),
    ]
    tokens = await stored_tokens(database)
    assert len(tokens) == 6
    assert all(readable_by(NEW, t) and not readable_by(OLD, t) for t in tokens)


async def test_rotation_keeps_the_text(database: Database):
    """A rotated note decrypts to the same words under the new key."""
    await seed(database, Cipher([OLD]), notes=1)
    await rotate_keys(database, f"{NEW},{OLD}")
    async with database.session() as session:
        note = (await session.exec(select(CheckinWeek.note))).one()
    assert note is not None and Cipher([NEW]).decrypt(note) == "note 0"


async def test_rotation_resumes_after_a_crash(database: Database):
    """A run stopped after its first batch has committed that batch; the next run finishes the
    rest and counts what was already done as current."""
    await seed(database, Cipher([OLD]))

    def crash(_count) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await rotate_keys(database, f"{NEW},{OLD}", batch=2, after_batch=crash)
    assert sum(readable_by(NEW, t) for t in await stored_tokens(database)) == 2
    counts = await rotate_keys(database, f"{NEW},{OLD}", batch=2)
    assert (counts[0].rotated, counts[0].current) == (1, 2)
    assert all(readable_by(NEW, t) for t in await stored_tokens(database))


async def test_rotation_twice_changes_nothing_the_second_time(database: Database):
    """A second run finds every value already under the new key."""
    await seed(database, Cipher([OLD]))
    await rotate_keys(database, f"{NEW},{OLD}")
    before = await stored_tokens(database)
    counts = await rotate_keys(database, f"{NEW},{OLD}")
    assert sum(c.rotated for c in counts) == 0 and sum(c.current for c in counts) == 6
    assert await stored_tokens(database) == before


async def test_rotation_refuses_a_single_key(database: Database):
    """With only one key configured there is nothing to rotate to: a clear refusal."""
    with pytest.raises(RotationError, match="holds one key"):
        await rotate_keys(database, NEW)


async def test_rotation_refuses_an_invalid_key(database: Database):
    """A key that isn't a Fernet key is named as the problem."""
    with pytest.raises(RotationError, match=r"storage\.encryption_key"):
        await rotate_keys(database, f"not-a-key,{OLD}")


async def test_value_under_a_missing_key_stops_with_a_clear_message(database: Database):
    """A value no configured key can read stops rotation, naming the table, column and row."""
    await seed(database, Cipher([Cipher.generate_key()]), notes=1)
    with pytest.raises(RotationError, match=r"checkin_week\.note row \d+ cannot be decrypted"):
        await rotate_keys(database, f"{NEW},{OLD}")
