"""Finding (or first creating) the member behind a platform identity."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Identity, Member

if TYPE_CHECKING:
    from bot.core import Actor


async def member_for(session: AsyncSession, actor: Actor, now: datetime) -> Member:
    """The member for this actor, created on first contact; name and roles kept current."""
    roles = ",".join(sorted(r.value for r in actor.roles))
    found = await _lookup(session, actor.platform, actor.user_id)
    if found is None:
        try:
            async with session.begin_nested():
                member = Member(
                    name=actor.display_name[:200],
                    roles=roles,
                    timezone=None,
                    created_at=now,
                    last_seen_at=now,
                )
                session.add(member)
                await session.flush()
                session.add(
                    Identity(
                        member_id=member.id,
                        platform=actor.platform,
                        user_id=actor.user_id,
                        display_name=actor.display_name[:200],
                    )
                )
                await session.flush()
            return member
        except IntegrityError:
            # The same person's first two requests raced; the other one created them.
            found = await _lookup(session, actor.platform, actor.user_id)
            if found is None:
                raise
    member, identity = found
    # Written on every request, and first: on SQLite this takes the one writer's lock at the
    # start of the unit of work, so the reads that follow cannot go stale before its writes
    # (the features rely on that; PostgreSQL has row locks instead).
    member.last_seen_at = now
    member.roles = roles
    if actor.display_name and identity.display_name != actor.display_name[:200]:
        identity.display_name = actor.display_name[:200]
        member.name = actor.display_name[:200]
    return member


async def _lookup(
    session: AsyncSession, platform: str, user_id: str
) -> tuple[Member, Identity] | None:
    row = (
        await session.exec(
            select(Member, Identity)
            .join(Identity, Identity.member_id == Member.id)
            .where(Identity.platform == platform, Identity.user_id == user_id)
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def identity_of(session: AsyncSession, member_id: int) -> Identity | None:
    """The identity a member is reached on (their first, in practice their only one)."""
    return (
        await session.exec(
            select(Identity).where(Identity.member_id == member_id).order_by(Identity.id)
        )
    ).first()


async def members_with_role(session: AsyncSession, role: str) -> list[Member]:
    """Members whose platform last reported `role`."""
    rows = await session.exec(select(Member).where(Member.roles.contains(role)))
    return [m for m in rows if role in m.role_names()]
