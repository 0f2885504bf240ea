"""The project's exception family.

Adapters translate library exceptions into these; the engine and the CLI only ever look at
these types. Every error carries the exit code the CLI should end with when it is fatal.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_PARTIAL = 1  # finished, but some accounts failed or were skipped
EXIT_FATAL = 2  # usage, config, plan, directory or database problem
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
EXIT_SIGPIPE = 141  # the reader of our output went away (`| head`): as a shell shows SIGPIPE


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

    def __init__(
        self, file: str, key: str | None, message: str, *, hint: str | None = None
    ) -> None:
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


class PostfixError(MigratorError):
    """A Postfix command failed or Postfix routes mail otherwise than migrator wrote: names the
    command, the instance and what Postfix said."""


class UsageError(MigratorError):
    """The command line asks for something that cannot be done (unknown account, bad option)."""


# the services a run depends on, as an operator names them
SERVICES = {
    "target": "the target server",
    "source": "the source server",
    "directory": "the directory",
}


@dataclass(frozen=True)
class Outage:
    """Why a failure is the service's and not one account's: the target, the source server or
    the directory cannot be reached, does not answer, fails TLS, or refuses the service
    account's credentials. The engine stops the whole run on these (docs/engine.md, "When a
    server is down") instead of charging every account an attempt.

    `cause` is the innermost error in words ("connection refused by mail.example.org:443"),
    not the wrapper a library put around it. `confirmed` is False for a failure that may be
    one request's own (a read timeout, a reset in the middle of a big upload): the engine then
    asks the server whether it answers at all before counting it.
    """

    service: str  # "target" | "source" | "directory"
    kind: str  # "unreachable" | "timeout" | "tls" | "auth" | "broken" | "unavailable"
    cause: str
    confirmed: bool = True
    # what the operator should do, when the adapter knows better than the kind's general advice
    # (a client secret that expired, an account locked out)
    hint: str | None = None

    @property
    def what(self) -> str:
        return SERVICES.get(self.service, self.service)


class TransientError(MigratorError):
    """Worth retrying: timeouts, resets, throttling. `retry_after` is the server's hint in seconds.

    `outage` is set when the failure is the whole service's (see Outage). `throttled`: the
    server said it gets too much from us (a hint implies it; Exchange's
    ErrorExceededConnectionCount and its HTTP-200 ErrorServerBusy come without one), so the
    caller sends less at a time as well as waiting."""

    exit_code = EXIT_PARTIAL

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        hint: str | None = None,
        outage: Outage | None = None,
        throttled: bool = False,
    ) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after
        self.outage = outage
        self.throttled = throttled or retry_after is not None


class PermanentError(MigratorError):
    """Not worth retrying: bad credentials, no such mailbox, message too large, corrupt data.

    `reason` is a short stable code (e.g. "too-large", "no-mailbox", "auth") used in reports.
    """

    exit_code = EXIT_PARTIAL

    def __init__(
        self,
        message: str,
        *,
        reason: str = "error",
        hint: str | None = None,
        outage: Outage | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason
        self.outage = outage  # set when the refusal is the service's: TLS, the service account


class SourceError(PermanentError):
    """A mailbox, folder or message in the source cannot be read."""


class ServiceUnavailable(MigratorError):
    """A service the run needs is down or refuses us (see Outage): the run stopped at once,
    charging no account an attempt. Fatal: exit 2."""

    def __init__(self, outage: Outage, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.outage = outage


class Interrupted(MigratorError):
    """The run was stopped by a signal after leaving the state consistent."""

    def __init__(self, signal_name: str, exit_code: int) -> None:
        super().__init__(f"interrupted by {signal_name}; state is consistent, run again to resume")
        self.exit_code = exit_code
