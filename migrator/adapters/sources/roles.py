"""Folder roles from IMAP SPECIAL-USE attributes or from well-known names (English, Spanish).

Names are matched case-insensitively on the folder's last name, for top-level folders and for
folders directly under INBOX (Courier-style ``INBOX.Sent``). Several folders may get the same role
(e.g. "Sent" and "Elementos enviados"); the target decides how to map them.
"""

from __future__ import annotations

from collections.abc import Iterable

from migrator.model.mail import FolderRole

_SPECIAL_USE: dict[str, FolderRole] = {
    "\\sent": FolderRole.SENT,
    "\\drafts": FolderRole.DRAFTS,
    "\\trash": FolderRole.TRASH,
    "\\junk": FolderRole.JUNK,
    "\\archive": FolderRole.ARCHIVE,
}

_NAMES: dict[FolderRole, tuple[str, ...]] = {
    FolderRole.SENT: (
        "sent",
        "sent messages",
        "sent items",
        "sent mail",
        "sent-mail",
        "outbox sent",
        "enviados",
        "elementos enviados",
        "mensajes enviados",
        "correo enviado",
        "enviado",
    ),
    FolderRole.DRAFTS: (
        "drafts",
        "draft",
        "postponed-msgs",
        "postponed",
        "borradores",
        "borrador",
    ),
    FolderRole.TRASH: (
        "trash",
        "deleted messages",
        "deleted items",
        "deleted",
        "bin",
        "papelera",
        "elementos eliminados",
        "eliminados",
        "mensajes eliminados",
    ),
    FolderRole.JUNK: (
        "junk",
        "spam",
        "junk e-mail",
        "junk email",
        "junk mail",
        "bulk mail",
        "correo no deseado",
        "no deseado",
        "correo basura",
    ),
    FolderRole.ARCHIVE: (
        "archive",
        "archives",
        "archivo",
        "archivos",
        "archivados",
        "archivado",
    ),
}

_BY_NAME: dict[str, FolderRole] = {n: role for role, names in _NAMES.items() for n in names}


def role_from_special_use(attributes: Iterable[str | bytes]) -> FolderRole | None:
    """The role an IMAP LIST attribute set declares (\\Sent, \\Drafts ...), or None."""
    for attr in attributes:
        text = attr.decode("ascii", "replace") if isinstance(attr, bytes) else attr
        role = _SPECIAL_USE.get(text.lower())
        if role is not None:
            return role
    return None


def role_from_name(path: tuple[str, ...]) -> FolderRole:
    """The role suggested by a folder's decoded display path."""
    if not path:
        return FolderRole.NONE
    if len(path) == 1 and path[0].upper() == "INBOX":
        return FolderRole.INBOX
    if len(path) == 1 or (len(path) == 2 and path[0].upper() == "INBOX"):
        return _BY_NAME.get(" ".join(path[-1].split()).casefold(), FolderRole.NONE)
    return FolderRole.NONE


def folder_role(path: tuple[str, ...], special_use: Iterable[str | bytes] = ()) -> FolderRole:
    """SPECIAL-USE wins when offered; otherwise the name decides."""
    if len(path) == 1 and path[0].upper() == "INBOX":
        return FolderRole.INBOX
    declared = role_from_special_use(special_use)
    return declared if declared is not None else role_from_name(path)
