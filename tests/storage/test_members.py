"""Members and their platform identities: found, or created on first contact, and kept current."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import func, select

import storage.members
from bot.core import Actor, Role
from storage.db import Database
from storage.members import identity_of, member_for, members_with_role
from storage.models import Identity, Member

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=3)

ALICE = Actor("slack", "U123", "Alice Head")


@pytest.fixture
async def database(db):
    database = Database(db.url, schema=db.schema)
    await database.upgrade()
    yield database
    await database.close()


async def contact(database: Database, actor: Actor, now: datetime = NOW) -> Member:
    """One unit of work: resolve the member, commit."""
    async with database.session() as session:
        member = await member_for(session, actor, now)
        await session.commit()
        return member


async def counts(database: Database) -> tuple[int, int]:
    async with database.session() as session:
        members = (await session.exec(select(func.count()).select_from(Member))).one()
        identities = (await session.exec(select(func.count()).select_from(Identity))).one()
        return members, identities


async def stored(database: Database, member_id: int) -> tuple[Member, list[Identity]]:
    async with database.session() as session:
        member = (await session.exec(select(Member).where(Member.id == member_id))).one()
        identities = (
            await session.exec(select(Identity).where(Identity.member_id == member_id))
        ).all()
        return member, list(identities)


async def test_first_contact_creates_a_member_and_identity(database):
    """A new actor becomes a member with one identity on their platform."""
    member = await contact(database, ALICE)
    assert member.id is not None
    assert await counts(database) == (1, 1)
    row, identities = await stored(database, member.id)
    assert (row.name, row.created_at, row.last_seen_at) == ("Alice Head", NOW, NOW)
    assert [(i.platform, i.user_id, i.display_name) for i in identities] == [
        ("slack", "U123", "Alice Head")
    ]


async def test_first_contact_records_roles_sorted(database):
    """Roles are stored as a sorted comma list, so the stored text is stable."""
    # Listed out of order, as a platform might report them (a frozenset's order is arbitrary).
    actor = Actor("slack", "U1", "Cora", (Role.COORDINATOR, Role.COACH))  # type: ignore[arg-type]
    member = await contact(database, actor)
    row, _ = await stored(database, member.id)
    assert row.roles == "coach,coordinator"
    assert row.role_names() == {"coach", "coordinator"}


async def test_next_contact_returns_the_same_member(database):
    """The same platform user is the same member next time; nothing new is created."""
    first = await contact(database, ALICE)
    second = await contact(database, ALICE, LATER)
    assert second.id == first.id
    assert await counts(database) == (1, 1)


async def test_next_contact_updates_last_seen_but_not_created(database):
    """A later contact moves last_seen_at and leaves created_at alone."""
    first = await contact(database, ALICE)
    await contact(database, ALICE, LATER)
    row, _ = await stored(database, first.id)
    assert (row.created_at, row.last_seen_at) == (NOW, LATER)


async def test_a_new_display_name_is_kept(database):
    """When the platform reports a new name, both the member and the identity take it."""
    first = await contact(database, ALICE)
    await contact(database, Actor("slack", "U123", "Alice Smith"), LATER)
    row, identities = await stored(database, first.id)
    assert row.name == "Alice Smith"
    assert identities[0].display_name == "Alice Smith"


async def test_an_empty_display_name_does_not_erase_the_known_one(database):
    """A platform that sends no name leaves the stored name as it was."""
    first = await contact(database, ALICE)
    await contact(database, Actor("slack", "U123", ""), LATER)
    row, identities = await stored(database, first.id)
    assert row.name == "Alice Head"
    assert identities[0].display_name == "Alice Head"


async def test_a_very_long_display_name_is_cut_to_fit(database):
    """Names longer than the column are cut to 200 characters rather than failing."""
    member = await contact(database, Actor("discord", "42", "x" * 500))
    row, identities = await stored(database, member.id)
    assert row.name == "x" * 200
    assert identities[0].display_name == "x" * 200
    await contact(database, Actor("discord", "42", "x" * 500), LATER)  # no spurious rename
    assert (await stored(database, member.id))[0].name == "x" * 200


async def test_roles_follow_the_platform(database):
    """Roles are replaced by what the platform reports now, including losing them all."""
    coach = Actor("slack", "U123", "Alice Head", frozenset({Role.COACH}))
    member = await contact(database, coach)
    await contact(database, Actor("slack", "U123", "Alice Head", frozenset({Role.COORDINATOR})))
    assert (await stored(database, member.id))[0].roles == "coordinator"
    await contact(database, ALICE, LATER)
    assert (await stored(database, member.id))[0].roles == ""


async def test_same_user_id_on_two_platforms_is_two_members(database):
    """Slack's U123 and Discord's U123 are different people."""
    on_slack = await contact(database, Actor("slack", "U123", "Alice"))
    on_discord = await contact(database, Actor("discord", "U123", "Bob"))
    assert on_slack.id != on_discord.id
    assert await counts(database) == (2, 2)
    assert (await stored(database, on_slack.id))[0].name == "Alice"
    assert (await stored(database, on_discord.id))[0].name == "Bob"


async def test_a_raced_first_contact_finds_the_member_the_other_request_made(database, monkeypatch):
    """If another request created the member between our lookup and insert, we use theirs."""
    existing = await contact(database, ALICE)
    real_lookup = storage.members._lookup
    calls = 0

    async def lookup_that_misses_once(session, platform, user_id):
        nonlocal calls
        calls += 1
        if calls == 1:
            return None  # as if the other request had not committed yet
        return await real_lookup(session, platform, user_id)

    monkeypatch.setattr(storage.members, "_lookup", lookup_that_misses_once)
    async with database.session() as session:
        member = await member_for(session, ALICE, LATER)
        await session.commit()
    assert calls == 2
    assert member.id == existing.id
    assert await counts(database) == (1, 1)
    assert (await stored(database, existing.id))[0].last_seen_at == LATER


async def test_identity_of_gives_the_members_identity(database):
    """identity_of finds the platform account a member is reached on."""
    member = await contact(database, ALICE)
    await contact(database, Actor("discord", "999", "Someone else"))
    async with database.session() as session:
        identity = await identity_of(session, member.id)
    assert identity is not None
    assert (identity.platform, identity.user_id, identity.member_id) == ("slack", "U123", member.id)


async def test_identity_of_an_unknown_member_is_none(database):
    """identity_of answers None for a member id nobody has."""
    await contact(database, ALICE)
    async with database.session() as session:
        assert await identity_of(session, 12345) is None


async def test_identity_of_prefers_the_first_identity(database):
    """With two identities, the first one made is where the member is reached."""
    member = await contact(database, ALICE)
    async with database.session() as session:
        session.add(Identity(member_id=member.id, platform="discord", user_id="77"))
        await session.commit()
    async with database.session() as session:
        identity = await identity_of(session, member.id)
    assert (identity.platform, identity.user_id) == ("slack", "U123")


async def test_members_with_role_finds_exactly_those_members(database):
    """members_with_role lists the members whose roles include it, and nobody else."""
    coach = await contact(database, Actor("slack", "C1", "Coach", frozenset({Role.COACH})))
    both = await contact(
        database, Actor("slack", "B1", "Both", frozenset({Role.COACH, Role.COORDINATOR}))
    )
    lead = await contact(database, Actor("slack", "L1", "Lead", frozenset({Role.COORDINATOR})))
    await contact(database, Actor("slack", "M1", "Member"))
    async with database.session() as session:
        coaches = {m.id for m in await members_with_role(session, "coach")}
        coordinators = {m.id for m in await members_with_role(session, "coordinator")}
    assert coaches == {coach.id, both.id}
    assert coordinators == {both.id, lead.id}


async def test_members_with_role_needs_the_whole_role_name(database):
    """A role name that is only part of another (e.g. "coach" in "coaches") does not match."""
    async with database.session() as session:
        session.add(
            Member(name="odd", roles="coaches,coordinator", created_at=NOW, last_seen_at=NOW)
        )
        await session.commit()
    async with database.session() as session:
        assert await members_with_role(session, "coach") == []
        assert [m.name for m in await members_with_role(session, "coordinator")] == ["odd"]


async def test_members_with_role_follows_a_lost_role(database):
    """A member the platform no longer reports as coach drops out of the list."""
    await contact(database, Actor("slack", "C1", "Coach", frozenset({Role.COACH})))
    await contact(database, Actor("slack", "C1", "Coach"), LATER)
    async with database.session() as session:
        assert await members_with_role(session, "coach") == []
