"""Where a source folder lands in the target: the rules every target shares.

A source folder is known by its display path, e.g. ("INBOX", "Projects") or ("Archiv", "2019").
FolderNaming turns it into a TargetPath: an anchor (a well-known folder such as the inbox, or
the top of the mailbox) plus the names of the folders to find or create below it.

Order of the rules (documented in docs/targets.md):
1. exclude_folders: a folder whose display path, or an ancestor's, matches a pattern is left out.
2. folder_map: the longest mapped prefix of the display path is replaced by its target path.
3. roles: inbox/sent/drafts/trash/junk go to the well-known folder; archive to `archive_folder`.
4. a path that begins with "INBOX" (any case) lives below the well-known inbox, and a path below a
   folder already placed on a well-known folder (see `role_paths`) lives below that folder.
5. every created name is cleaned by clean_name().
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from migrator.model.errors import PlanError
from migrator.model.mail import FolderRole

MAX_NAME_LENGTH = 255  # Exchange and ActiveSync take display names of 1..256 characters
# Control characters cannot be typed into any client and some servers refuse them outright.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Names made only of dots mean "this folder" / "parent" to file-based tools and IMAP gateways.
_DOTS_ONLY = re.compile(r"^\.+$")
PLACEHOLDER = "_"

WELL_KNOWN_ROLES = (
    FolderRole.INBOX,
    FolderRole.SENT,
    FolderRole.DRAFTS,
    FolderRole.TRASH,
    FolderRole.JUNK,
)


@dataclass(frozen=True)
class TargetPath:
    """`names` below `anchor` (a well-known folder role, or None for the top of the mailbox)."""

    anchor: FolderRole | None
    names: tuple[str, ...]

    def display(self) -> tuple[str, ...]:
        """The path as a user sees it, the anchor shown by its role name (e.g. inbox/Projects)."""
        head = (self.anchor.value,) if self.anchor else ()
        return head + self.names


def clean_name(name: str) -> str:
    """A folder name the target accepts, as close to `name` as possible.

    Control characters become "_", surrounding white space is dropped, a name that is empty or
    only dots becomes "_" followed by it, and names are cut to 255 characters.
    """
    cleaned = _CONTROL.sub(PLACEHOLDER, name).strip()
    if not cleaned:
        return PLACEHOLDER
    if _DOTS_ONLY.match(cleaned):
        cleaned = PLACEHOLDER + cleaned
    return cleaned[:MAX_NAME_LENGTH]


def split_display(path: str) -> tuple[str, ...]:
    """A plan's "A/B" path as a tuple, ignoring empty parts from doubled or edge slashes."""
    return tuple(part for part in path.split("/") if part.strip())


class FolderNaming:
    """The folder rules of one target, built from the plan's [target] section."""

    def __init__(
        self,
        *,
        archive_folder: str = "Archive",
        folder_map: Mapping[str, str] | None = None,
        exclude_folders: Sequence[str] = (),
        plan_file: str = "plan",
    ) -> None:
        self._archive = split_display(archive_folder)
        if not self._archive:
            raise PlanError(
                plan_file,
                "target",
                "archive_folder must name a folder",
                hint='e.g. archive_folder = "Archive"',
            )
        self._map: dict[tuple[str, ...], tuple[str, ...]] = {}
        for source, target in (folder_map or {}).items():
            source_path, target_path = split_display(source), split_display(target)
            if not source_path or not target_path:
                raise PlanError(
                    plan_file,
                    "target.folder_map",
                    f"{source!r} = {target!r}: both sides must name a folder",
                    hint='e.g. "Sent Messages" = "Old/Sent"',
                )
            self._map[source_path] = target_path
        # Patterns compare case-insensitively: Exchange folder names are case-insensitive.
        self._exclude = tuple(p.strip("/").casefold() for p in exclude_folders if p.strip("/"))

    def is_excluded(self, path: tuple[str, ...]) -> bool:
        """True when the display path or one of its ancestors matches an exclude pattern.

        Patterns are shell-style ("Trash", "Archive/19*", "*/Spam") matched against the whole
        "A/B" display path, case-insensitively; excluding a folder excludes its subfolders.
        """
        for depth in range(1, len(path) + 1):
            display = "/".join(path[:depth]).casefold()
            if any(fnmatch.fnmatchcase(display, pattern) for pattern in self._exclude):
                return True
        return False

    def target_path(
        self,
        path: tuple[str, ...],
        role: FolderRole,
        role_paths: Mapping[tuple[str, ...], FolderRole] | None = None,
    ) -> TargetPath:
        """Where the source folder `path` with `role` goes.

        `role_paths` holds source paths already placed on a well-known folder in this mailbox,
        so their subfolders follow them (e.g. ("Sent",) -> sent makes ("Sent", "2019") a
        subfolder of the well-known sent folder).
        """
        mapped = self._mapped(path)
        if mapped is not None:
            return self._anchored(mapped, {})
        if role in WELL_KNOWN_ROLES:
            return TargetPath(role, ())
        if role is FolderRole.ARCHIVE:
            return self._anchored(self._archive, {})
        return self._anchored(path, role_paths or {})

    def _mapped(self, path: tuple[str, ...]) -> tuple[str, ...] | None:
        for depth in range(len(path), 0, -1):
            target = self._map.get(path[:depth])
            if target is not None:
                return target + path[depth:]
        return None

    @staticmethod
    def _anchored(
        path: tuple[str, ...], role_paths: Mapping[tuple[str, ...], FolderRole]
    ) -> TargetPath:
        for depth in range(len(path), 0, -1):
            anchor = role_paths.get(path[:depth])
            if anchor is not None:
                return TargetPath(anchor, tuple(clean_name(n) for n in path[depth:]))
        if path and path[0].casefold() == "inbox":
            return TargetPath(FolderRole.INBOX, tuple(clean_name(n) for n in path[1:]))
        return TargetPath(None, tuple(clean_name(n) for n in path))
