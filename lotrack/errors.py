"""One small hierarchy of domain errors; only cli/main.py turns them into output."""


class LotrackError(Exception):
    """Base of every error a user can cause; its message is shown as `Error: ...`."""

    exit_code = 1


class NotFound(LotrackError):
    """A named record does not exist."""


class InvalidInput(LotrackError):
    """Input that cannot be parsed or fails validation."""

    exit_code = 2


class RuleViolation(LotrackError):
    """Valid input that a rule of the domain refuses (release, expiry, windows, ...)."""


class PermissionDenied(LotrackError):
    """The acting user lacks the role, or failed authentication."""

    exit_code = 3


class IntegrityFailure(LotrackError):
    """The audit trail or the database no longer matches what was recorded."""

    exit_code = 4


class DatabaseError(LotrackError):
    """The database cannot be opened, is not migrated, or is newer than this code."""

    exit_code = 5


class DatabaseBusy(DatabaseError):
    """A transaction lost a race it could win on a second try: a serialization failure or a
    deadlock (PostgreSQL), a locked database file (SQLite). `db.retrying` runs it again."""
