"""What the engine tells whoever watches it (the live view, logs, tests)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from migrator.model.status import PassOutcome


@dataclass(frozen=True)
class SkippedInfo:
    folder: str
    key: str
    reason: str
    detail: str


@dataclass
class AccountOutcome:
    address: str
    status: PassOutcome
    messages_done: int = 0  # sent, or adopted (already in the target, see messages_adopted)
    bytes_done: int = 0
    messages_adopted: int = 0  # found in the target and recorded, not sent again
    messages_seen: int = 0  # listed in the source this pass
    messages_new: int = 0  # not yet in the ledger
    skipped: list[SkippedInfo] = field(default_factory=list)
    # what the pass carried of users' changes in the source: "read", "flagged", "moved",
    # "deleted" ... -> messages (see engine/delta.py)
    changes: Counter[str] = field(default_factory=Counter)
    error: str | None = None
    reason: str | None = None
    hint: str | None = None
    seconds: float = 0.0
    folders: int = 0
    # the account had no completed pass before this one: SYNCED now means newly migrated
    # (a delta pass of an account already migrated must not count twice in "N of M")
    first_pass: bool = False
    # this worker took the account over from one whose lease had expired
    took_over: bool = False


class Progress(Protocol):
    def run_started(self, total_accounts: int, migrated_before: int) -> None: ...

    def account_started(self, address: str) -> None: ...

    def messages_done(self, address: str, count: int, nbytes: int) -> None: ...

    def account_finished(self, outcome: AccountOutcome) -> None: ...

    def note(self, message: str) -> None: ...

    def waiting(self, message: str) -> None:
        """What the run waits for and until when (a throttled or unreachable server): shown
        even when notes are not (--quiet). The engine rate-limits these."""
        ...


class NullProgress:
    def run_started(self, total_accounts: int, migrated_before: int) -> None:
        pass

    def account_started(self, address: str) -> None:
        pass

    def messages_done(self, address: str, count: int, nbytes: int) -> None:
        pass

    def account_finished(self, outcome: AccountOutcome) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def waiting(self, message: str) -> None:
        pass
