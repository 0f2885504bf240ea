"""Folder lookup and creation in one Exchange mailbox, with a cache of what was seen."""

from __future__ import annotations

import copy
import threading
from typing import cast

from exchangelib import Account, Folder
from exchangelib.errors import (
    ErrorFolderExists,
    ErrorFolderNotFound,
    ErrorInvalidRequest,
    ErrorSchemaValidation,
)
from exchangelib.fields import FieldPath
from exchangelib.folders import (
    DeletedItems,
    Drafts,
    FolderCollection,
    Inbox,
    JunkEmail,
    MsgFolderRoot,
    Root,
    SentItems,
)
from exchangelib.folders.base import BaseFolder
from exchangelib.folders.collections import ID_ONLY
from exchangelib.properties import DistinguishedFolderId, Mailbox
from exchangelib.services import CreateFolder, GetFolder, MoveFolder, UpdateFolder
from exchangelib.util import TNS, safe_xml_value
from lxml import etree

from migrator.model.errors import PermanentError
from migrator.model.mail import FolderRole
from migrator.model.reasons import Reason

WELL_KNOWN_CLASSES: dict[FolderRole, type[BaseFolder]] = {
    FolderRole.INBOX: Inbox,
    FolderRole.SENT: SentItems,
    FolderRole.DRAFTS: Drafts,
    FolderRole.TRASH: DeletedItems,
    FolderRole.JUNK: JunkEmail,
}
MAIL_FOLDER_CLASS = "IPF.Note"
# A source folder whose name is taken, at that level of the target, by a folder that is not a
# place for migrated mail gets this suffix (then " (migrated 2)", ...); docs/targets.md.
CLASH_SUFFIX = " (migrated{})"
MAX_CLASHES = 20
# Folders of Exchange's own that hold mail but are no place to leave it: what lands in the
# Outbox may be sent, Sync Issues and Conversation History belong to Outlook and Skype.
SPECIAL_MAIL_FOLDERS = ("outbox", "syncissues", "conversationhistory")


def is_mail_class(folder_class: str | None) -> bool:
    """Whether a folder of this class takes mail (a generic folder, without class, does)."""
    return (
        not folder_class
        or folder_class == MAIL_FOLDER_CLASS
        or folder_class.startswith(MAIL_FOLDER_CLASS + ".")
    )


class _WellKnownGetFolder(GetFolder):  # type: ignore[misc]
    """GetFolder of distinguished folders of one mailbox, its request copied from the one
    exchangelib built for the first mailbox with only the e-mail address changed.

    exchangelib writes the FolderShape and each DistinguishedFolderId through its generic
    field walk: for a three-folder lookup about 0.7 ms of client CPU, per mailbox, for the
    same XML every time but the address (tests/test_target_ews_overhead.py checks the copy is
    byte-identical to what exchangelib writes)."""

    _templates: dict[tuple[object, ...], etree._Element] = {}
    _templates_lock = threading.Lock()

    def get_payload(
        self, folders: list[BaseFolder], additional_fields: set[FieldPath], shape: str
    ) -> etree._Element:
        key = (
            tuple(type(f) for f in folders),
            shape,
            frozenset(additional_fields),
            self.account.version.api_version,
        )
        with self._templates_lock:
            template = self._templates.get(key)
        if template is None:
            payload = super().get_payload(
                folders=folders, additional_fields=additional_fields, shape=shape
            )
            with self._templates_lock:
                self._templates[key] = copy.deepcopy(payload)
            return payload
        payload = copy.deepcopy(template)
        address = safe_xml_value(self.account.primary_smtp_address)
        for element in payload.iter(f"{{{TNS}}}EmailAddress"):
            element.text = address
        return payload


class MailboxFolders:
    """The folders of one mailbox this process has looked at. Thread-safe.

    Children of a folder are listed once (one shallow FindFolder) and then kept; folders created
    by us are added. A folder created meanwhile by someone else is found again when CreateFolder
    answers ErrorFolderExists.

    Well-known folders are found by DistinguishedFolderId only: their names depend on the
    mailbox's language ("Bandeja de entrada", "Calendario"). A source folder is never placed in
    a folder that does not take mail (a calendar, contacts, tasks, notes, journal: any class but
    IPF.Note) nor in the Outbox, Sync Issues or Conversation History, whatever its name: where
    such a folder holds the name, the source folder gets CLASH_SUFFIX.
    """

    def __init__(self, account: Account) -> None:
        self.account = account
        self._lock = threading.RLock()
        self._anchors: dict[FolderRole | None, BaseFolder] = {}
        self._children: dict[
            str, dict[str, BaseFolder]
        ] = {}  # parent id -> casefolded name -> folder
        self._empty: set[FolderRole | None] = (
            set()
        )  # well-known folders that held no item when looked up
        self._special: set[str] | None = None  # ids of SPECIAL_MAIL_FOLDERS, once asked
        self._listed_empty: set[str] = (
            set()
        )  # existing folders listed with no item, not yet handed out
        # source paths placed on a well-known folder: their subfolders follow them
        self.role_paths: dict[tuple[str, ...], FolderRole] = {}

    def prefetch(self) -> None:
        """Look up the folders nearly every mailbox writes into (the top of the mailbox, the
        Inbox and Sent Items) in one GetFolder; the other role folders when first needed.

        A new mailbox otherwise costs one request per folder; across thousands of accounts
        that is most of the requests of a small mailbox. Only the fields migrator uses are
        asked for: exchangelib's default asks for every folder field, and building and
        parsing those cost more client CPU than the rest of a small mailbox.
        """
        with self._lock:
            if self._anchors:
                return
            self._lookup([None, FolderRole.INBOX, FolderRole.SENT])

    def _lookup(self, roles: list[FolderRole | None]) -> None:
        """GetFolder of these distinguished folders (None: the top of the mailbox), names only."""
        root = self._root()
        wanted = []
        for role in roles:
            cls = WELL_KNOWN_CLASSES[role] if role is not None else MsgFolderRoot
            wanted.append(
                cls(
                    _distinguished_id=DistinguishedFolderId(
                        id=cls.DISTINGUISHED_FOLDER_ID,
                        mailbox=Mailbox(email_address=self.account.primary_smtp_address),
                    ),
                    root=root,
                )
            )
        # the name and folder class (what FolderCollection.get_folders adds); the item count
        # comes with the same answer and spares a first pass the lookup of what an empty
        # folder holds
        fields = {FieldPath(field=Folder.get_field_by_fieldname("total_count"))}
        fields.update(
            FieldPath(field=BaseFolder.get_field_by_fieldname(f))
            for f in FolderCollection.REQUIRED_FOLDER_FIELDS
        )
        answers = list(
            _WellKnownGetFolder(account=self.account).call(
                folders=wanted, additional_fields=fields, shape=ID_ONLY
            )
        )
        if len(answers) != len(roles):
            raise ValueError(f"GetFolder answered {len(answers)} folders for {len(roles)}")
        for role, answer in zip(roles, answers, strict=True):
            if isinstance(answer, Exception):
                raise answer
            self._anchors[role] = answer
            if answer.total_count == 0:
                self._empty.add(role)

    def _root(self) -> BaseFolder:
        """The root of the mailbox's folder tree, without asking the server.

        `Account.root` costs a GetFolder of the root with all its fields for every mailbox;
        migrator never reads the root itself, only uses it to tie folder objects to the
        account, so a local object naming the distinguished root folder does.
        """
        cached = self.account.__dict__.get("root")
        if cached is not None:
            return cast(BaseFolder, cached)
        root = Root(
            account=self.account,
            _distinguished_id=DistinguishedFolderId(
                id=Root.DISTINGUISHED_FOLDER_ID,
                mailbox=Mailbox(email_address=self.account.primary_smtp_address),
            ),
        )
        # Account.root is a cached property: seed its cache so exchangelib uses this object
        self.account.__dict__["root"] = root
        return root

    def anchor(self, role: FolderRole | None) -> BaseFolder:
        """The well-known folder for `role`, or the top of the mailbox for None (GetFolder once)."""
        with self._lock:
            if role not in self._anchors:
                self._lookup([role])
            return self._anchors[role]

    def take_empty(self, role: FolderRole | None) -> bool:
        """Whether the well-known folder held no item when it was looked up; said once only,
        since it holds what is sent there afterwards."""
        with self._lock:
            if role in self._empty:
                self._empty.discard(role)
                return True
            return False

    def ensure_path(
        self, anchor: BaseFolder, names: tuple[str, ...]
    ) -> tuple[BaseFolder, bool, tuple[str, ...]]:
        """The folder `names` below `anchor`, creating missing levels as mail folders; whether
        it holds nothing (this call created it, or it was listed empty: said once, as it holds
        what is sent there afterwards); and the names it has in the target (a level whose name
        a non-mail folder holds gets CLASH_SUFFIX)."""
        folder = anchor
        empty = False
        placed: list[str] = []
        with self._lock:
            for name in names:
                found, name = self._mail_child(folder, name)
                if found is None:
                    folder, empty = self._create(folder, name)  # or found made meanwhile
                else:
                    folder, empty = found, False
                placed.append(folder.name or name)
            if not empty and folder.id in self._listed_empty:
                # a folder every mailbox has (Archive) and nothing was put in yet
                self._listed_empty.discard(folder.id)
                empty = True
        return folder, empty, tuple(placed)

    def _mail_child(self, parent: BaseFolder, name: str) -> tuple[BaseFolder | None, str]:
        """The child of `parent` migrated mail named `name` goes to (None: to be created), and
        its name: `name`, or `name` with CLASH_SUFFIX when a folder that takes no mail has it."""
        for attempt in range(1, MAX_CLASHES + 1):
            wanted = (
                name
                if attempt == 1
                else name + CLASH_SUFFIX.format("" if attempt == 2 else f" {attempt - 1}")
            )
            found = self._child(parent, wanted)
            if found is None:
                return None, wanted
            if self._takes_mail(found, parent):
                return found, found.name or wanted  # as the target spells it
        raise PermanentError(
            f"folder {name!r}: {MAX_CLASHES} names with {CLASH_SUFFIX.format('')!r} "
            "are taken by folders that hold no mail",
            reason=Reason.REJECTED,
            hint="map the folder elsewhere with [target] folder_map",
        )

    def _takes_mail(self, folder: BaseFolder, parent: BaseFolder) -> bool:
        if not is_mail_class(getattr(folder, "folder_class", None)):
            return False
        top = self._anchors.get(None)
        # Exchange's special mail folders sit at the top of the mailbox
        return top is None or parent.id != top.id or folder.id not in self._special_ids()

    def _special_ids(self) -> set[str]:
        """Ids of the Outbox, Sync Issues and Conversation History (one GetFolder, the first
        time a source folder's name meets an existing folder)."""
        if self._special is None:
            root = self._root()
            wanted = [
                Folder(
                    _distinguished_id=DistinguishedFolderId(
                        id=name, mailbox=Mailbox(email_address=self.account.primary_smtp_address)
                    ),
                    root=root,
                )
                for name in SPECIAL_MAIL_FOLDERS
            ]
            found: set[str] = set()
            fields = {FieldPath(field=Folder.get_field_by_fieldname("name"))}
            try:
                for answer in FolderCollection(account=self.account, folders=wanted).get_folders(
                    additional_fields=fields
                ):
                    if isinstance(answer, ErrorFolderNotFound):
                        continue  # a server without that folder
                    if isinstance(answer, Exception):
                        raise answer
                    found.add(answer.id)
            except (ErrorSchemaValidation, ErrorInvalidRequest):
                # a server whose schema lacks one of these names: it has none of them to avoid
                found = set()
            self._special = found
        return self._special

    def relocate(
        self, folder_id: str, anchor: BaseFolder, names: tuple[str, ...]
    ) -> BaseFolder | None:
        """Give the folder `folder_id` the place `names` below `anchor` (missing parents are
        created): MoveFolder to the new parent, UpdateFolder of its name; its id stays. None
        when another folder already has that place."""
        with self._lock:
            parent, _empty, _names = self.ensure_path(anchor, names[:-1])
            there = self._child(parent, names[-1])
            if there is not None:
                return there if there.id == folder_id else None
            fields = {
                FieldPath(field=Folder.get_field_by_fieldname(n))
                for n in ("name", "parent_folder_id")
            }
            [current] = list(
                FolderCollection(account=self.account, folders=[self.by_id(folder_id)]).get_folders(
                    additional_fields=fields
                )
            )
            if isinstance(current, Exception):
                raise current
            old_parent = (
                current.parent_folder_id.id if current.parent_folder_id is not None else None
            )
            try:
                if old_parent != parent.id:
                    for answer in MoveFolder(account=self.account).call(
                        folders=[current], to_folder=parent
                    ):
                        if isinstance(answer, Exception):
                            raise answer
                    current = next(
                        iter(
                            FolderCollection(
                                account=self.account, folders=[self.by_id(folder_id)]
                            ).get_folders(additional_fields=fields)
                        )
                    )
                if current.name != names[-1]:
                    current.name = names[-1]
                    for answer in UpdateFolder(account=self.account).call(
                        folders=[(current, ["name"])]
                    ):
                        if isinstance(answer, Exception):
                            raise answer
            except ErrorFolderExists:
                return None
            finally:
                # listed again when next needed
                self._children.pop(parent.id, None)
                if old_parent is not None:
                    self._children.pop(old_parent, None)
            return current

    def by_id(self, folder_id: str) -> Folder:
        """A folder object for an id from an earlier ensure (no request)."""
        return Folder(root=self._root(), id=folder_id)

    def total_count(self, folder_id: str) -> int:
        """Items in the folder now (one GetFolder asking for TotalCount only)."""
        fields = {FieldPath(field=Folder.get_field_by_fieldname("total_count"))}
        answers = FolderCollection(account=self.account, folders=[self.by_id(folder_id)])
        for answer in answers.get_folders(additional_fields=fields):
            if isinstance(answer, Exception):
                raise answer
            return int(answer.total_count or 0)
        raise ValueError(f"GetFolder returned nothing for folder {folder_id}")

    def _child(self, parent: BaseFolder, name: str) -> BaseFolder | None:
        children = self._children.get(parent.id)
        if children is None:
            children = self._list_children(parent)
        return children.get(name.casefold())

    def _list_children(self, parent: BaseFolder) -> dict[str, BaseFolder]:
        # the class tells a mail folder from a calendar or contacts folder of the same name; the
        # count spares a first pass the lookup of a folder that holds nothing (an Archive folder
        # every mailbox has)
        fields = {
            FieldPath(field=Folder.get_field_by_fieldname(n))
            for n in ("name", "folder_class", "total_count")
        }
        found = FolderCollection(account=self.account, folders=[parent]).find_folders(
            depth="Shallow", additional_fields=fields
        )
        children: dict[str, BaseFolder] = {}
        for child in found:
            if isinstance(child, Exception):
                raise child
            if child.name is not None:
                # Exchange compares folder names case-insensitively; the first one wins.
                children.setdefault(child.name.casefold(), child)
                if child.total_count == 0:
                    self._listed_empty.add(child.id)
                else:
                    self._listed_empty.discard(child.id)
        self._children[parent.id] = children
        return children

    def _create(self, parent: BaseFolder, name: str) -> tuple[BaseFolder, bool]:
        """The new folder, and False when it existed after all (someone else made it)."""
        folder = Folder(parent=parent, name=name, folder_class=MAIL_FOLDER_CLASS)
        try:
            # CreateFolder directly: Folder.save() looks the parent up in exchangelib's map of
            # the whole mailbox, which walks the entire folder tree the first time (a deep
            # FindFolder plus a GetFolder of every folder) for every new mailbox.
            created = CreateFolder(account=self.account).get(parent_folder=parent, folders=[folder])
            folder._id = folder.ID_ELEMENT_CLS(created.id, created.changekey)
        except ErrorFolderExists:
            existing = self._list_children(parent).get(name.casefold())
            if existing is None:
                raise
            return existing, False
        self._children.setdefault(parent.id, {})[name.casefold()] = folder
        return folder, True
