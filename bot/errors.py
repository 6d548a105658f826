"""Errors a person can cause. Each carries one kind, clear line that is safe to show them."""


class UserError(Exception):
    """Bad input: the message says what to do instead. Nothing was changed.

    ``field`` names the form field the problem is in, when it is one field's, so a platform
    that can keep a form open shows the message under that field.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class UsageError(UserError):
    """Wrong arguments for a command; the usage line shows the right form."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


class Refused(UserError):
    """The person may not do this. The message says why and reveals nothing else."""


class Unavailable(Exception):
    """A dependency (the database) is down for now; the person should try again shortly."""
