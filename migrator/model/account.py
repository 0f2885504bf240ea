"""Accounts as discovery sees them and as the state store keeps them."""

from __future__ import annotations

from dataclasses import dataclass, field

from migrator.model.scope import Scope

__all__ = ["DirectoryEntry", "DiscoveredAccount", "Scope"]


@dataclass(frozen=True)
class DirectoryEntry:
    """One entry as the directory returned it: its DN and every requested attribute's values."""

    dn: str
    attributes: dict[str, list[str]]

    def first(self, name: str) -> str | None:
        values = self.attributes.get(name) or self.attributes.get(name.lower()) or []
        for value in values:
            if value is not None and str(value).strip() != "":
                return str(value)
        return None

    def values(self, name: str) -> list[str]:
        return [
            str(v) for v in (self.attributes.get(name) or self.attributes.get(name.lower()) or [])
        ]


@dataclass
class DiscoveredAccount:
    """The outcome of classifying one directory entry.

    `key` identifies the entry across discoveries: the address when there is one, else the DN.
    """

    key: str
    dn: str
    scope: Scope
    reason: str | None = None  # why excluded/invalid; a short stable code
    detail: str | None = None  # human wording of the reason
    address: str | None = None  # source address, lower-cased
    target_address: str | None = None
    uid: str | None = None
    name: str | None = None
    batch: str | None = None
    aliases: list[str] = field(default_factory=list)
    source_path: str | None = None  # resolved mailbox location for file sources
    attributes: dict[str, str] = field(default_factory=dict)  # mapped attributes kept for reports
