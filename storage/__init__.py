"""Storage: SQLModel tables, the async engine and sessions, migrations and field encryption.

The database is the source of truth: every deadline is a timestamp in a row, so a restart loses
nothing.
"""
