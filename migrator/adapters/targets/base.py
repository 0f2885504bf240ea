"""The contract every mail target (Exchange over EWS, IMAP, ...) fulfils.

One Target object serves many mailboxes at once from several threads: the mailbox is a parameter
of every call rather than state of the object, so a single service account, connection pool and
set of caches is shared by all workers.

Every method translates its library's exceptions into migrator.model.errors types at its
boundary: callers only ever see TransientError (retry later, maybe with a server hint) or
PermanentError (with a stable `reason` code).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from migrator.model.errors import PermanentError
from migrator.model.mail import Flags, FolderRole, UploadItem, UploadResult


@dataclass(frozen=True)
class TargetFolder:
    """A folder in the target mailbox, as returned by ensure_folder().

    `id` is the target's own identifier (opaque to callers, stable for the folder's life);
    `path` is the folder's path in the target after naming rules and the plan's folder_map.
    """

    id: str
    path: tuple[str, ...]
    # ensure_folder() knows the folder holds nothing: it created it just now, or (a well-known
    # folder) it was empty when first looked at. Nothing in it needs looking up.
    empty: bool = field(default=False, compare=False)

    @property
    def display(self) -> str:
        return "/".join(self.path)


def is_well_known(folder: TargetFolder) -> bool:
    """A well-known folder itself (Inbox, Sent Items, ...): its path is its role alone."""
    return len(folder.path) == 1 and folder.path[0] in {"inbox", "sent", "drafts", "trash", "junk"}


def _same(key: str) -> str:
    return key


@dataclass
class KeyedItems:
    """The items of one target folder that carry a source-key tag, from one listing:
    `ids(key)` gives the target ids of every item tagged with that key, oldest first.

    `tag_of` turns a source key into the tag as the target stores it (EWS writes "?" for
    characters XML cannot carry, the IMAP header %-escapes); `by_tag` maps stored tags to ids.
    `total` counts every item of the folder, tagged or not."""

    by_tag: dict[str, list[str]]
    total: int
    tag_of: Callable[[str], str] = _same

    def ids(self, key: str) -> list[str]:
        return self.by_tag.get(self.tag_of(key), [])


class ExcludedFolderError(PermanentError):
    """ensure_folder() was asked for a folder the plan's `exclude_folders` leaves out.

    Callers should ask `is_excluded()` first; this error marks a caller bug, not bad data.
    """

    def __init__(self, path: tuple[str, ...]) -> None:
        super().__init__(
            f"folder {'/'.join(path)!r} is excluded by the plan's exclude_folders",
            reason="excluded",
            hint="check Target.is_excluded(path) before ensure_folder()",
        )
        self.path = path


@runtime_checkable
class Target(Protocol):
    """A mail store we write into. All methods are safe to call from several threads."""

    # bytes of raw RFC 822 data: the limit this target declares (may come down once connected,
    # IMAP's APPENDLIMIT); the engine sends nothing larger (engine/mailbox.py too_large)
    max_message_size: int

    def preflight(self, mailbox: str) -> None:
        """Check that `mailbox` exists and that we may write into it.

        Raises PermanentError with reason "no-mailbox", "no-permission" or "auth", or
        TransientError when the server cannot be reached; each with its own clear message.
        """
        ...

    def is_excluded(self, path: tuple[str, ...]) -> bool:
        """True when the plan's exclude_folders leaves the source folder `path` out."""
        ...

    def ensure_folder(self, mailbox: str, path: tuple[str, ...], role: FolderRole) -> TargetFolder:
        """Return the target folder for the source folder `path` (display names), creating it
        and its parents when missing. Idempotent. Raises ExcludedFolderError for excluded paths."""
        ...

    def upload(
        self, mailbox: str, folder: TargetFolder, items: Sequence[UploadItem]
    ) -> list[UploadResult]:
        """Store the items in `folder`; one result per item, in order.

        Does not raise for data or server problems: a failure of a whole request is reported on
        every item it affected. A TransientError result means the item is not in the target as
        far as the adapter could check; callers still confirm with find() before resending."""
        ...

    def find(
        self,
        mailbox: str,
        folder: TargetFolder,
        keys: Sequence[str],
        exclude_ids: Collection[str] = (),
    ) -> dict[str, str]:
        """Source key -> target id, for those of `keys` already stored in `folder`; an item
        whose id is in `exclude_ids` (it stands for another source message) is never the
        answer, even when it carries the same key."""
        ...

    def count(self, mailbox: str, folder: TargetFolder) -> int:
        """Number of items in `folder` now."""
        ...

    def close(self) -> None:
        """Release connections. The object is unusable afterwards."""
        ...


# --- optional capabilities ----------------------------------------------------------------------
# What a target can do besides the contract above. Each is a runtime-checkable Protocol: callers
# ask `isinstance(target, Withdraws)` and so on, never getattr, so a reader of the engine sees
# every way a crashed chunk is recovered. Which target declares which is listed in
# docs/architecture.md ("Adapter capabilities") and checked by tests/test_capabilities.py.


@runtime_checkable
class Probes(Protocol):
    """A target that can tell a server that is down from one slow request (engine/breaker.py)."""

    def probe(self) -> None:
        """Return when the server answers a bare request; raise TransientError (with an outage
        attached when it is down) when it does not."""
        ...


@runtime_checkable
class ListsByKey(Protocol):
    """A target that lists one folder's tagged items in one request: what a first pass adopts
    instead of sending again, and where `dedupe` finds copies."""

    def items_by_key(self, mailbox: str, folder: TargetFolder) -> KeyedItems | None:
        """The items of `folder` that carry a source-key tag; None when this target keeps no tag
        (an IMAP target without tag_header): then ask FindsByContent or GroupsIdentical."""
        ...


@runtime_checkable
class FindsByContent(Protocol):
    """A target that may keep no source key on what it stores (IMAP): earlier uploads are
    recognised by their content, for crash recovery and adoption."""

    def find_uploads(
        self,
        mailbox: str,
        folder: TargetFolder,
        items: Sequence[UploadItem],
        known_ids: Collection[str] = (),
    ) -> dict[str, str]:
        """Key -> target id for those of `items` already stored in `folder`; an id in
        `known_ids` stands for another source message and is never the answer."""
        ...


@runtime_checkable
class GroupsIdentical(Protocol):
    """A target that can group the items of a folder that are the same message, for `dedupe`
    where no tag tells copies apart."""

    def identical_items(self, mailbox: str, folder: TargetFolder) -> list[list[str]]:
        """Groups of target ids of `folder` that hold the same message (groups of one left out)."""
        ...


@runtime_checkable
class Withdraws(Protocol):
    """A target that can take back exactly the items this process stored but may not keep (a
    worker that lost its lease mid-upload; copies `dedupe` removes)."""

    def withdraw(self, mailbox: str, folder: TargetFolder, target_ids: Collection[str]) -> None:
        """Delete these items for good; an item already gone is fine."""
        ...


@runtime_checkable
class Inventories(Protocol):
    """A target that counts the tagged items of many folders in one paged listing, for
    `verify` (duplicates included)."""

    def inventory(
        self, mailbox: str, folders: Mapping[str, Sequence[str]]
    ) -> Mapping[str, tuple[Mapping[str, int], int]]:
        """Target folder id (-> source keys wanted there) -> (each wanted key -> items carrying
        it, items in the folder)."""
        ...


@runtime_checkable
class ChecksPresence(Protocol):
    """A target that keeps no key but whose ids name items for good (IMAP UIDVALIDITY:UID):
    `verify` asks which of the ledger's ids are still there."""

    def present(
        self, mailbox: str, folder: TargetFolder, target_ids: Collection[str]
    ) -> tuple[set[str], int]:
        """(those of `target_ids` the folder still holds, items in the folder)."""
        ...


@runtime_checkable
class HoldsMailboxes(Protocol):
    """A target that keeps something per mailbox it was asked about (a session, a map of its
    folders) for as long as the account is being migrated."""

    def forget_mailbox(self, mailbox: str) -> None:
        """No account in progress writes into `mailbox` any longer: drop what is kept for it.
        A later call about the mailbox looks everything up again."""
        ...


# what a delta pass carries besides new mail


@dataclass(frozen=True)
class FlagChange:
    """A migrated message whose flags changed in the source: `before` is what the target was
    last given, `after` what the source holds now. Only the difference is carried; what the
    user changed in the target meanwhile stays."""

    target_id: str
    before: Flags
    after: Flags


@runtime_checkable
class CarriesChanges(Protocol):
    """A target that carries what users change in the source between passes: flags, moves
    between folders and deletions (docs/engine.md, "Delta passes")."""

    def update_flags(
        self, mailbox: str, folder: TargetFolder, changes: Sequence[FlagChange]
    ) -> list[Exception | None]:
        """Apply each change's difference to its item in `folder`; one result per change, in
        order: None when done, PermanentError(reason="not-found") when the item is no longer
        there (a user moved or deleted it in the target), another error when it could not be
        done. Raises TransientError when the request as a whole failed."""
        ...

    def prepare_move(
        self, mailbox: str, source: TargetFolder, dest: TargetFolder, target_ids: Sequence[str]
    ) -> dict[str, Any]:
        """What must be known to find these items in `dest` if the answer to their move is
        lost (the caller records it with the move's announcement, before moving)."""
        ...

    def move(
        self, mailbox: str, source: TargetFolder, dest: TargetFolder, target_ids: Sequence[str]
    ) -> dict[str, str | Exception | None]:
        """Move items from `source` to `dest`: old id -> new id; None when `source` holds no
        such item (a user moved or deleted it in the target); an error when that item was not
        moved. Raises when the outcome of the request is unknown: then ask `locate_moved`,
        never move again blindly."""
        ...

    def locate_moved(
        self,
        mailbox: str,
        source: TargetFolder,
        dest: TargetFolder,
        moved: Mapping[str, str],
        facts: Mapping[str, Any],
        taken: Collection[str],
    ) -> dict[str, str | None]:
        """After a move whose outcome is unknown (`moved`: old id -> the key its item is tagged
        with; `facts` from prepare_move): old id -> its id in `dest` when it got there (a move
        by copy and delete is completed), None when it did not. Ids in `taken` stand for other
        messages and are never the answer."""
        ...

    def rename_folder(
        self, mailbox: str, folder: TargetFolder, path: tuple[str, ...], role: FolderRole
    ) -> tuple[TargetFolder, dict[str, str]] | None:
        """Give the target folder of a renamed source folder the place its new source path
        `path` leads to, with its items (nothing is moved one by one): the folder as it is now,
        and the new ids of folders whose id changed with it (itself and its subfolders, on
        targets whose folder ids are names). None when it cannot be done (a well-known folder,
        a name already taken): the caller then moves the messages."""
        ...

    def delete(self, mailbox: str, folder: TargetFolder, target_ids: Sequence[str]) -> None:
        """Remove exactly these items (EWS: SoftDelete into Recoverable Items; IMAP: \\Deleted
        and UID EXPUNGE of these UIDs). An item already gone is fine."""
        ...


@runtime_checkable
class ShowsFlags(Protocol):
    """A target whose items' flags can be read back, for `verify`."""

    def shown(self, flags: Flags) -> tuple[object, ...]:
        """What the target shows of a source message's flags: the part it carries (EWS: read,
        flagged, replied or forwarded, categories; IMAP: the flags but \\Deleted)."""
        ...

    def flags_of(
        self, mailbox: str, folder: TargetFolder, target_ids: Sequence[str]
    ) -> dict[str, tuple[object, ...]]:
        """Target id -> what the item shows now (as `shown` gives it), for those still there."""
        ...
