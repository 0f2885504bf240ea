"""Plain results the store hands to the layers above (no SQLAlchemy objects leak out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from migrator.model.scope import Scope
from migrator.model.status import Status

# What `state` may be: a progress status for accounts in scope, else the discovery scope.
# (plain strings: the CLI offers them as choices)
STATUS_STATES = tuple(s.value for s in Status)
SCOPE_STATES = tuple(s.value for s in Scope if s is not Scope.IN_SCOPE)
ALL_STATES = STATUS_STATES + SCOPE_STATES


@dataclass(slots=True)
class AccountRow:
    """One account of a plan as stored: discovery fields, progress, lease, and `state`.

    A snapshot: changing it changes nothing in the database. (Not frozen, and slotted,
    because listing 100,000 of them is a common report and frozen init is slow.)"""

    id: int
    plan_id: int
    key: str
    dn: str
    address: str | None
    target_address: str | None
    uid: str | None
    name: str | None
    batch: str | None
    aliases: list[str]
    source_path: str | None
    attributes: dict[str, Any]
    scope: str  # in_scope | excluded | invalid | vanished
    reason: str | None
    detail: str | None
    status: str  # pending | running | synced | failed | verified (progress, kept across scopes)
    state: str  # status when in scope, else scope
    passes: int
    attempts: int
    last_error: str | None
    last_error_reason: str | None
    first_pass_at: datetime | None
    last_pass_at: datetime | None
    messages_done: int
    messages_skipped: int
    messages_failed: int
    bytes_done: int
    discovered_at: datetime
    last_seen_at: datetime
    vanished_at: datetime | None
    lease_owner: str | None
    lease_epoch: int
    lease_expires_at: datetime | None
    heartbeat_at: datetime | None


@dataclass
class DiscoverySummary:
    """What one record_discovery call changed.

    new/updated/unchanged partition the entries seen (after dropping duplicate keys);
    vanished counts stored entries absent this time; reappeared and scope_changed are subsets
    of updated.
    """

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    vanished: int = 0
    reappeared: int = 0
    scope_changed: int = 0
    duplicates: int = 0
    duplicate_keys: list[str] = field(default_factory=list)  # the first few, for the message
    total_in_scope: int = 0
    total_excluded: int = 0
    total_invalid: int = 0

    @property
    def seen(self) -> int:
        return self.new + self.updated + self.unchanged

    def as_dict(self) -> dict[str, Any]:
        return {
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "vanished": self.vanished,
            "reappeared": self.reappeared,
            "scope_changed": self.scope_changed,
            "duplicates": self.duplicates,
            "total_in_scope": self.total_in_scope,
            "total_excluded": self.total_excluded,
            "total_invalid": self.total_invalid,
        }
