"""Imports every table module so the metadata is complete (for Alembic and the tests)."""

from storage.checkin import CheckinSubscription, CheckinWeek
from storage.models import Identity, Member, OutboxMessage

__all__ = ["CheckinSubscription", "CheckinWeek", "Identity", "Member", "OutboxMessage"]
