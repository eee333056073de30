"""Domain exceptions raised by services and mapped to pages in desk.web.errors."""


class DeskError(Exception):
    """Base of every domain error; ``str(err)`` is a message for the user."""

    status = 400


class InvalidInput(DeskError):
    """The input breaks a rule; the message says which."""

    status = 400


class PermissionDenied(DeskError):
    """The acting user may not do this."""

    status = 403


class NotFound(DeskError):
    """No such record, or one the acting user must not know exists."""

    status = 404


class Conflict(DeskError):
    """The record changed or already exists."""

    status = 409


class Gone(DeskError):
    """The record existed but is no longer available (an expired download)."""

    status = 410


class TooManyAttempts(DeskError):
    """Too many failed attempts in a short time; ``retry_after`` in seconds."""

    status = 429

    def __init__(self, message="", retry_after: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class UnauditedWrite(RuntimeError):
    """A model write that did not go through desk.audit (a programming error)."""
