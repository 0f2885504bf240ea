"""The project's exception family.

Adapters translate library exceptions into these; the engine and the CLI only ever look at
these types. Every error carries the exit code the CLI should end with when it is fatal.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PARTIAL = 1  # finished, but some accounts failed or were skipped
EXIT_FATAL = 2  # usage, config, plan, directory or database problem
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class MigratorError(Exception):
    """Base of every error migrator raises on purpose. `hint` says what to do next."""

    exit_code = EXIT_FATAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class PlanError(MigratorError):
    """The plan file is unreadable or invalid. Names the file, the key and what to write instead."""

    def __init__(self, file: str, key: str | None, message: str, *, hint: str | None = None) -> None:
        where = f"{file}: [{key}]" if key else file
        super().__init__(f"{where}: {message}", hint=hint)
        self.file = file
        self.key = key
        self.problem = message


class SecretError(MigratorError):
    """A secret could not be read from the environment variable or file the plan names."""


class DirectoryError(MigratorError):
    """The directory (LDAP server or LDIF file) cannot be reached, bound or searched."""


class StateError(MigratorError):
    """The state database cannot be opened, migrated or written."""


class UsageError(MigratorError):
    """The command line asks for something that cannot be done (unknown account, bad option)."""


class TransientError(MigratorError):
    """Worth retrying: timeouts, resets, throttling. `retry_after` is the server's hint in seconds.

    `throttled`: the server said it gets too much from us (a hint implies it; Exchange's
    ErrorExceededConnectionCount and its HTTP-200 ErrorServerBusy come without one), so the
    caller sends less at a time as well as waiting."""

    exit_code = EXIT_PARTIAL

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        hint: str | None = None,
        throttled: bool = False,
    ) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after
        self.throttled = throttled or retry_after is not None


class PermanentError(MigratorError):
    """Not worth retrying: bad credentials, no such mailbox, message too large, corrupt data.

    `reason` is a short stable code (e.g. "too-large", "no-mailbox", "auth") used in reports.
    """

    exit_code = EXIT_PARTIAL

    def __init__(self, message: str, *, reason: str = "error", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


class SourceError(PermanentError):
    """A mailbox, folder or message in the source cannot be read."""


class TargetError(PermanentError):
    """The target refused something for good."""


class Interrupted(MigratorError):
    """The run was stopped by a signal after leaving the state consistent."""

    def __init__(self, signal_name: str, exit_code: int) -> None:
        super().__init__(f"interrupted by {signal_name}; state is consistent, run again to resume")
        self.exit_code = exit_code
