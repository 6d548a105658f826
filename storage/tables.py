"""Imports every table module so the metadata is complete (for Alembic and the tests).

Each feature's tables live in their own module under ``storage/``; add new modules here.
"""

from storage import checkin, events, models, platform_events, support  # noqa: F401
