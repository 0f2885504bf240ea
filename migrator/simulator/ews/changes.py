"""UpdateItem, MoveItem and DeleteItem: changes to items that exist, as Exchange documents them.

- UpdateItem (MS-OXWSCORE 3.1.4.9, "UpdateItem operation"): `ConflictResolution` is required.
  An ItemId's ChangeKey names the version of the item the client saw. Without one, AutoResolve
  is refused with ErrorChangeKeyRequired (the ItemId element reference: "The UpdateItem element
  requires a ChangeKey if the ConflictResolution attribute is set to AutoResolve"); the other
  two modes apply the change. With a ChangeKey that is no longer current (the item changed
  since), NeverOverwrite fails with ErrorIrresolvableConflict, AutoResolve and AlwaysOverwrite
  apply the change (ConflictResolutionType: "AutoResolve ... will in most cases overwrite the
  existing value"). Each SetItemField sets exactly one property (else
  ErrorIncorrectUpdatePropertyCount). Updating a message needs a MessageDisposition
  (ErrorMessageDispositionRequired); the simulator only saves (SaveOnly). Every change gives
  the item a new ChangeKey. Properties: message:IsRead (kept in step with PR_MESSAGE_FLAGS'
  read bit), item:Categories, any extended property; PR_MESSAGE_FLAGS itself changes only the
  read bit (MSGFLAG_UNSENT is fixed at creation, as Exchange has it).
- MoveItem: the item goes to ToFolderId with a new id (Exchange's ids change with the folder),
  which the answer carries; the old id is ErrorItemNotFound from then on.
- DeleteItem: HardDelete removes the item; SoftDelete moves it to Recoverable Items\\Deletions
  (the dumpster an administrator restores from; created when first needed), MoveToDeletedItems
  to Deleted Items; both under a new id.
- UpdateFolder (folder:DisplayName) renames a folder, MoveFolder puts it below another; a
  folder keeps its id, and a sibling of the same name (ignoring case) is ErrorFolderExists.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from lxml import etree

from . import ids, soap
from .props import MSGFLAG_READ, PR_MESSAGE_FLAGS, find_uri, parse_ref, parse_value
from .shapes import folder_element, folder_id_xml
from .soap import T_NS, EwsError
from .store import (
    FolderExistsError,
    FolderRow,
    ItemRow,
    PropValue,
    Store,
    change_folder,
    ensure_distinguished,
    relocate_items,
    update_item,
)

if TYPE_CHECKING:
    from .operations import Operations, RequestContext

_T = f"{{{T_NS}}}"
CONFLICT_MODES = ("NeverOverwrite", "AutoResolve", "AlwaysOverwrite")
DELETE_TYPES = ("HardDelete", "SoftDelete", "MoveToDeletedItems")
RECOVERABLE_ROOT = "recoverableitemsroot"
RECOVERABLE_DELETIONS = "recoverableitemsdeletions"

# Exchange's wording for the codes below (the errors reference of EWS).
TEXTS = {
    "ErrorIrresolvableConflict": (
        "The send or update operation could not be performed because the change key passed in the "
        "request does not match the current change key for the item."
    ),
    "ErrorChangeKeyRequired": (
        "When making a request that requires a change key, the change key must be provided."
    ),
    "ErrorInvalidChangeKey": "The change key is invalid.",
    "ErrorIncorrectUpdatePropertyCount": (
        "An object within a change description must contain one and only one property to modify."
    ),
    "ErrorInvalidPropertySet": "Set action is invalid for property.",
    "ErrorInvalidPropertyDelete": "Delete action is invalid for property.",
    "ErrorMessageDispositionRequired": "MessageDisposition attribute is required.",
}

Handler = Callable[[etree._Element, "RequestContext"], str]


def _local(elem: etree._Element) -> str:
    return etree.QName(elem).localname


def _children(elem: etree._Element | None) -> list[etree._Element]:
    return [] if elem is None else [c for c in elem if isinstance(c.tag, str)]


def _child(elem: etree._Element, local: str) -> etree._Element | None:
    return next((c for c in _children(elem) if _local(c) == local), None)


def _error(code: str) -> EwsError:
    return EwsError(code, TEXTS.get(code))


def change_key_version(text: str) -> int:
    """The item version a ChangeKey we issued names (ids.change_key), or -1."""
    try:
        raw = base64.b64decode(text, validate=True)
        return (
            int(struct.unpack(">I", raw[-4:])[0])
            if raw.startswith(b"CQAAABYAAAA") and len(raw) == 15
            else -1
        )
    except (binascii.Error, ValueError, struct.error):
        return -1


class ItemChanges:
    """The three operations, on the simulator's store; `ops` gives routing and access checks."""

    def __init__(self, ops: Operations) -> None:
        self._ops = ops
        self._store = ops._store

    def handlers(self) -> dict[str, Handler]:
        return {
            "UpdateItem": self.update_item,
            "MoveItem": self.move_item,
            "DeleteItem": self.delete_item,
            "UpdateFolder": self.update_folder,
            "MoveFolder": self.move_folder,
        }

    # --- helpers -----------------------------------------------------------------------------
    def _item(self, elem: etree._Element, ctx: RequestContext) -> ItemRow:
        row_id = self._ops._item_ref(elem, ctx)
        found = self._store.items_by_id([row_id], with_mime=False).get(row_id)
        if found is None:
            raise EwsError("ErrorItemNotFound")
        return found

    def _refs(
        self, container: etree._Element | None, ctx: RequestContext
    ) -> list[ItemRow | EwsError]:
        out: list[ItemRow | EwsError] = []
        for elem in self._ops._folder_ids(container):
            try:
                out.append(self._item(elem, ctx))
            except EwsError as e:
                if e.fault:
                    raise
                out.append(e)
        return out

    def _id_answer(self, mailbox_id: int, item_id: int, version: int) -> str:
        return (
            f'<m:Items><t:Message><t:ItemId Id="{ids.encode(ids.ITEM, mailbox_id, item_id)}" '
            f'ChangeKey="{ids.change_key(version)}"/></t:Message></m:Items>'
        )

    # --- UpdateItem --------------------------------------------------------------------------
    def update_item(self, request: etree._Element, ctx: RequestContext) -> str:
        mode = request.get("ConflictResolution")
        if mode not in CONFLICT_MODES:
            raise EwsError("ErrorInvalidRequest", "ConflictResolution is required.", fault=True)
        disposition = request.get("MessageDisposition")
        messages = []
        for change in _children(_child(request, "ItemChanges")):
            try:
                messages.append(self._one_update(change, mode, disposition, ctx))
            except EwsError as e:
                if e.fault:
                    raise
                messages.append(soap.error("UpdateItem", e, "<m:Items/>"))
        return soap.response("UpdateItem", messages)

    def _one_update(
        self, change: etree._Element, mode: str, disposition: str | None, ctx: RequestContext
    ) -> str:
        id_elem = _child(change, "ItemId")
        if id_elem is None:
            raise EwsError("ErrorInvalidRequest", "The simulator updates items by ItemId only.")
        item = self._item(id_elem, ctx)
        if item.item_class.startswith("IPM.Note"):
            if disposition is None:
                raise _error("ErrorMessageDispositionRequired")
            if disposition != "SaveOnly":
                raise EwsError(
                    "ErrorInvalidOperation",
                    "The simulator only saves items (MessageDisposition=SaveOnly).",
                )
        key = id_elem.get("ChangeKey")
        if key is None:
            if mode == "AutoResolve":
                raise _error("ErrorChangeKeyRequired")
        else:
            version = change_key_version(key)
            if version < 0:
                raise _error("ErrorInvalidChangeKey")
            if version != item.version and mode == "NeverOverwrite":
                raise _error("ErrorIrresolvableConflict")
        is_read: bool | None = None
        categories: list[str] | None = None
        set_props: list[PropValue] = []
        delete_props: list[str] = []
        for update in _children(_child(change, "Updates")):
            kind = _local(update)
            path = _children(update)[0] if _children(update) else None
            if path is None:
                raise EwsError("ErrorSchemaValidation", f"{kind} names no property", fault=True)
            field = path.get("FieldURI") if _local(path) == "FieldURI" else None
            if kind == "SetItemField":
                holder = _children(update)[1] if len(_children(update)) > 1 else None
                values = _children(holder)
                if len(values) != 1:
                    raise _error("ErrorIncorrectUpdatePropertyCount")
                value = values[0]
                if field == "message:IsRead":
                    is_read = (value.text or "").strip().lower() in ("true", "1")
                elif field == "item:Categories":
                    categories = [s.text or "" for s in _children(value)]
                elif _local(path) == "ExtendedFieldURI":
                    ref = parse_ref(path)
                    uri = find_uri(value)
                    if uri is None or parse_ref(uri).key != ref.key:
                        raise _error("ErrorIncorrectUpdatePropertyCount")
                    text = parse_value(ref, value)
                    if ref.tag == PR_MESSAGE_FLAGS:
                        is_read = bool(int(text) & MSGFLAG_READ)
                    else:
                        set_props.append(PropValue(ref.key, ref.type, text))
                else:
                    raise _error("ErrorInvalidPropertySet")
            elif kind == "DeleteItemField":
                if field == "item:Categories":
                    categories = []
                elif _local(path) == "ExtendedFieldURI" and parse_ref(path).tag != PR_MESSAGE_FLAGS:
                    delete_props.append(parse_ref(path).key)
                else:
                    raise _error("ErrorInvalidPropertyDelete")
            else:  # AppendToItemField: for bodies and recipient lists, none of which we keep
                raise _error("ErrorInvalidPropertySet")
        version = update_item(
            self._store,
            item.id,
            is_read=is_read,
            categories=categories,
            set_props=set_props,
            delete_props=delete_props,
        )
        return soap.success(
            "UpdateItem",
            self._id_answer(item.mailbox_id, item.id, version)
            + "<m:ConflictResults><t:Count>0</t:Count></m:ConflictResults>",
        )

    # --- MoveItem ----------------------------------------------------------------------------
    def move_item(self, request: etree._Element, ctx: RequestContext) -> str:
        folders = self._ops._folder_ids(_child(request, "ToFolderId"))
        try:
            to_folder: FolderRow | None = self._ops._folder(folders[0], ctx)
            failure: EwsError | None = None
        except EwsError as e:
            if e.fault:
                raise
            to_folder, failure = None, e
        refs = self._refs(_child(request, "ItemIds"), ctx)
        messages = []
        movable = [
            r
            for r in refs
            if isinstance(r, ItemRow)
            and to_folder is not None
            and r.mailbox_id == to_folder.mailbox_id
        ]
        moved = (
            relocate_items(self._store, [r.id for r in movable], to_folder.id)
            if to_folder is not None
            else {}
        )
        for ref in refs:
            if isinstance(ref, EwsError):
                messages.append(soap.error("MoveItem", ref, "<m:Items/>"))
            elif failure is not None:
                messages.append(soap.error("MoveItem", failure, "<m:Items/>"))
            elif ref.id not in moved:
                messages.append(
                    soap.error(
                        "MoveItem",
                        EwsError("ErrorMoveCopyFailed", "Cannot move an item to another mailbox."),
                        "<m:Items/>",
                    )
                )
            else:
                messages.append(
                    soap.success(
                        "MoveItem", self._id_answer(ref.mailbox_id, moved[ref.id], ref.version + 1)
                    )
                )
        return soap.response("MoveItem", messages)

    # --- DeleteItem --------------------------------------------------------------------------
    def _dumpster(self, mailbox_id: int) -> FolderRow:
        root = self._store.distinguished_folder(mailbox_id, "root")
        assert root is not None
        recoverable = ensure_distinguished(
            self._store, mailbox_id, RECOVERABLE_ROOT, "Recoverable Items", root.id, None
        )
        return ensure_distinguished(
            self._store, mailbox_id, RECOVERABLE_DELETIONS, "Deletions", recoverable.id, None
        )

    def update_folder(self, request: etree._Element, ctx: RequestContext) -> str:
        messages = []
        for change in _children(_child(request, "FolderChanges")):
            try:
                ref = _children(change)[0]
                folder = self._ops._folder(ref, ctx)
                if folder.distinguished:
                    raise EwsError(
                        "ErrorMoveDistinguishedFolder", "Distinguished folders cannot be moved."
                    )
                name: str | None = None
                for update in _children(_child(change, "Updates")):
                    path = _children(update)[0]
                    values = _children(_children(update)[1]) if len(_children(update)) > 1 else []
                    if (
                        _local(update) != "SetFolderField"
                        or path.get("FieldURI") != "folder:DisplayName"
                    ):
                        raise _error("ErrorInvalidPropertySet")
                    if len(values) != 1:
                        raise _error("ErrorIncorrectUpdatePropertyCount")
                    name = (values[0].text or "").strip()
                changed = change_folder(self._store, folder.id, name=name) if name else folder
                messages.append(_folder_answer("UpdateFolder", changed))
            except FolderExistsError:
                messages.append(soap.error("UpdateFolder", EwsError("ErrorFolderExists")))
            except EwsError as e:
                if e.fault:
                    raise
                messages.append(soap.error("UpdateFolder", e))
        return soap.response("UpdateFolder", messages)

    def move_folder(self, request: etree._Element, ctx: RequestContext) -> str:
        to_folder = self._ops._folder(self._ops._folder_ids(_child(request, "ToFolderId"))[0], ctx)
        messages = []
        for ref in self._ops._folder_ids(_child(request, "FolderIds")):
            try:
                folder = self._ops._folder(ref, ctx)
                if folder.distinguished:
                    raise EwsError(
                        "ErrorMoveDistinguishedFolder", "Distinguished folders cannot be moved."
                    )
                if folder.mailbox_id != to_folder.mailbox_id or folder.id == to_folder.id:
                    raise EwsError("ErrorMoveCopyFailed", "Cannot move the folder there.")
                messages.append(
                    _folder_answer(
                        "MoveFolder", change_folder(self._store, folder.id, parent_id=to_folder.id)
                    )
                )
            except FolderExistsError:
                messages.append(soap.error("MoveFolder", EwsError("ErrorFolderExists")))
            except EwsError as e:
                if e.fault:
                    raise
                messages.append(soap.error("MoveFolder", e))
        return soap.response("MoveFolder", messages)

    def delete_item(self, request: etree._Element, ctx: RequestContext) -> str:
        delete_type = request.get("DeleteType")
        if delete_type not in DELETE_TYPES:
            raise EwsError("ErrorInvalidRequest", "DeleteType is required.", fault=True)
        refs = self._refs(_child(request, "ItemIds"), ctx)
        existing = [r for r in refs if isinstance(r, ItemRow)]
        if delete_type == "HardDelete":
            self._store.delete_items([r.id for r in existing])
        else:
            by_mailbox: dict[int, list[int]] = {}
            for row in existing:
                by_mailbox.setdefault(row.mailbox_id, []).append(row.id)
            for mailbox_id, item_ids in by_mailbox.items():
                if delete_type == "SoftDelete":
                    into = self._dumpster(mailbox_id)
                else:
                    trash = self._store.distinguished_folder(mailbox_id, "deleteditems")
                    assert trash is not None
                    into = trash
                relocate_items(self._store, item_ids, into.id)
        messages = [
            soap.error("DeleteItem", ref)
            if isinstance(ref, EwsError)
            else soap.success("DeleteItem")
            for ref in refs
        ]
        return soap.response("DeleteItem", messages)


def _folder_answer(operation: str, folder: FolderRow) -> str:
    tag = folder_element(folder)
    return soap.success(
        operation, f"<m:Folders><t:{tag}>{folder_id_xml(folder)}</t:{tag}></m:Folders>"
    )


def visible_items(store: Store, mailbox_id: int, item_ids: list[int]) -> list[int]:
    """Those of `item_ids` a user sees: not in the Recoverable Items dumpster."""
    dumpster = store.distinguished_folder(mailbox_id, RECOVERABLE_DELETIONS)
    if dumpster is None:
        return item_ids
    hidden = set(store.folder_items(mailbox_id, dumpster.id))
    return [i for i in item_ids if i not in hidden]


__all__ = ["ItemChanges", "change_key_version", "visible_items"]
