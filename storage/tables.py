"""Imports every table module so the metadata is complete (for Alembic and the tests)."""

from storage.models import Identity, Member, OutboxMessage

__all__ = ["Identity", "Member", "OutboxMessage"]
