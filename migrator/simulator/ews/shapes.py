"""Response shapes (FolderShape/ItemShape) and the XML of folders and items under them."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from lxml import etree

from . import ids
from .conversion import element_for, regenerate
from .locales import ELEMENT_BY_CLASS, ELEMENT_BY_DISTINGUISHED
from .props import (
    MSGFLAG_UNSENT,
    PR_CLIENT_SUBMIT_TIME,
    PR_MESSAGE_DELIVERY_TIME,
    PR_MESSAGE_FLAGS,
    PropRef,
    parse_ref,
    value_xml,
)
from .soap import T_NS, attr, esc
from .store import FolderRow, ItemRow, PropValue

_FOLDER_BASE = {
    "IdOnly": frozenset({"folder:FolderId"}),
    "Default": frozenset(
        {
            "folder:FolderId",
            "folder:DisplayName",
            "folder:TotalCount",
            "folder:ChildFolderCount",
            "folder:UnreadCount",
        }
    ),
    "AllProperties": frozenset(
        {
            "folder:FolderId",
            "folder:ParentFolderId",
            "folder:FolderClass",
            "folder:DisplayName",
            "folder:TotalCount",
            "folder:ChildFolderCount",
            "folder:UnreadCount",
            "folder:EffectiveRights",
            "folder:DistinguishedFolderId",
        }
    ),
}
_ITEM_DEFAULT = frozenset(
    {
        "item:ItemId",
        "item:ParentFolderId",
        "item:ItemClass",
        "item:Subject",
        "item:DateTimeReceived",
        "item:Size",
        "item:Categories",
        "item:IsDraft",
        "item:DateTimeSent",
        "item:DateTimeCreated",
        "message:IsRead",
        "item:HasAttachments",
    }
)
_ITEM_BASE = {
    "IdOnly": frozenset({"item:ItemId"}),
    "Default": _ITEM_DEFAULT,
    "AllProperties": _ITEM_DEFAULT,
}
_EFFECTIVE_RIGHTS = (
    "<t:EffectiveRights><t:CreateAssociated>true</t:CreateAssociated>"
    "<t:CreateContents>true</t:CreateContents><t:CreateHierarchy>true</t:CreateHierarchy>"
    "<t:Delete>true</t:Delete><t:Modify>true</t:Modify><t:Read>true</t:Read>"
    "<t:ViewPrivateItems>true</t:ViewPrivateItems></t:EffectiveRights>"
)


@dataclass
class Shape:
    fields: frozenset[str]
    extended: list[PropRef] = field(default_factory=list)

    def has(self, name: str) -> bool:
        return name in self.fields


def parse_shape(elem: etree._Element | None, *, folder: bool) -> Shape:
    base_map = _FOLDER_BASE if folder else _ITEM_BASE
    if elem is None:
        return Shape(fields=base_map["IdOnly"])
    base = elem.findtext(f"{{{T_NS}}}BaseShape") or "IdOnly"
    fields = set(base_map.get(base, base_map["IdOnly"]))
    extended: list[PropRef] = []
    if (elem.findtext(f"{{{T_NS}}}IncludeMimeContent") or "").strip().lower() == "true":
        fields.add("item:MimeContent")
    extra = elem.find(f"{{{T_NS}}}AdditionalProperties")
    if extra is not None:
        for child in extra:
            local = etree.QName(child).localname
            if local == "FieldURI":
                fields.add(child.get("FieldURI", ""))
            elif local == "ExtendedFieldURI":
                extended.append(parse_ref(child))
    return Shape(fields=frozenset(fields), extended=extended)


_WITH_UNREAD = frozenset({"Folder", "TasksFolder", "SearchFolder"})


def folder_id_xml(folder: FolderRow, tag: str = "FolderId") -> str:
    return (
        f'<t:{tag} Id="{ids.encode(ids.FOLDER, folder.mailbox_id, folder.id)}" '
        f'ChangeKey="{ids.change_key(folder.version)}"/>'
    )


def folder_element(folder: FolderRow) -> str:
    if folder.distinguished in ELEMENT_BY_DISTINGUISHED:
        return ELEMENT_BY_DISTINGUISHED[folder.distinguished]
    return ELEMENT_BY_CLASS.get(folder.folder_class or "", "Folder")


def folder_xml(
    folder: FolderRow,
    shape: Shape,
    counts: tuple[int, int, int] | None,
    parent: FolderRow | None,
) -> str:
    """counts: (total, unread, children) when the shape asks for any of them."""
    tag = folder_element(folder)
    parts = [f"<t:{tag}>", folder_id_xml(folder)]
    if shape.has("folder:ParentFolderId") and parent is not None:
        parts.append(folder_id_xml(parent, "ParentFolderId"))
    if shape.has("folder:FolderClass") and folder.folder_class:
        parts.append(f"<t:FolderClass>{esc(folder.folder_class)}</t:FolderClass>")
    if shape.has("folder:DisplayName"):
        parts.append(f"<t:DisplayName>{esc(folder.name)}</t:DisplayName>")
    if counts is not None:
        total, unread, children = counts
        if shape.has("folder:TotalCount"):
            parts.append(f"<t:TotalCount>{total}</t:TotalCount>")
        if shape.has("folder:ChildFolderCount"):
            parts.append(f"<t:ChildFolderCount>{children}</t:ChildFolderCount>")
    if shape.has("folder:EffectiveRights"):
        parts.append(_EFFECTIVE_RIGHTS)
    if shape.has("folder:DistinguishedFolderId") and folder.distinguished:
        parts.append(f"<t:DistinguishedFolderId>{folder.distinguished}</t:DistinguishedFolderId>")
    # UnreadCount belongs to FolderType (Folder, TasksFolder, SearchFolder); calendar and
    # contacts folders have none in the schema
    if counts is not None and shape.has("folder:UnreadCount") and tag in _WITH_UNREAD:
        parts.append(f"<t:UnreadCount>{counts[1]}</t:UnreadCount>")
    parts.append(f"</t:{tag}>")
    return "".join(parts)


def wants_counts(shape: Shape) -> bool:
    return bool(
        shape.fields & {"folder:TotalCount", "folder:ChildFolderCount", "folder:UnreadCount"}
    )


def item_id_xml(item: ItemRow) -> str:
    return (
        f'<t:ItemId Id="{ids.encode(ids.ITEM, item.mailbox_id, item.id)}" '
        f'ChangeKey="{ids.change_key(item.version)}"/>'
    )


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _builtin_prop(item: ItemRow, ref: PropRef) -> str | None:
    """Properties every message has, whether or not the client set them."""
    if ref.tag == PR_MESSAGE_FLAGS:
        return str(item.message_flags)
    if ref.tag == PR_MESSAGE_DELIVERY_TIME:
        return item.received
    if ref.tag == PR_CLIENT_SUBMIT_TIME:
        return item.sent
    return None


def item_xml(item: ItemRow, shape: Shape, props: dict[str, PropValue]) -> str:
    tag = element_for(item.item_class)
    parts = [f"<t:{tag}>"]
    has = shape.fields.__contains__
    if has("item:MimeContent") and item.mime is not None:
        # Exchange writes MIME anew from the item, it keeps none (conversion.py)
        encoded = base64.b64encode(regenerate(item.mime)).decode("ascii")
        parts.append(f'<t:MimeContent CharacterSet="UTF-8">{encoded}</t:MimeContent>')
    parts.append(item_id_xml(item))
    if has("item:ParentFolderId"):
        parts.append(
            f'<t:ParentFolderId Id="{ids.encode(ids.FOLDER, item.mailbox_id, item.folder_id)}" '
            f'ChangeKey="{ids.change_key(1)}"/>'
        )
    if has("item:ItemClass"):
        parts.append(f"<t:ItemClass>{esc(item.item_class)}</t:ItemClass>")
    if has("item:Subject") and item.subject is not None:
        parts.append(f"<t:Subject>{esc(item.subject)}</t:Subject>")
    if has("item:DateTimeReceived"):
        parts.append(f"<t:DateTimeReceived>{item.received}</t:DateTimeReceived>")
    if has("item:Size"):
        parts.append(f"<t:Size>{item.size}</t:Size>")
    if has("item:Categories") and item.categories:
        inner = "".join(f"<t:String>{esc(c)}</t:String>" for c in item.categories)
        parts.append(f"<t:Categories>{inner}</t:Categories>")
    if has("item:IsDraft"):
        parts.append(f"<t:IsDraft>{_bool(bool(item.message_flags & MSGFLAG_UNSENT))}</t:IsDraft>")
    if has("item:DateTimeSent") and item.sent:
        parts.append(f"<t:DateTimeSent>{item.sent}</t:DateTimeSent>")
    if has("item:DateTimeCreated"):
        parts.append(f"<t:DateTimeCreated>{item.created}</t:DateTimeCreated>")
    if has("item:HasAttachments"):
        parts.append(f"<t:HasAttachments>{_bool(item.has_attachments)}</t:HasAttachments>")
    for ref in shape.extended:
        value = _builtin_prop(item, ref)
        if value is None:
            stored = props.get(ref.key)
            value = stored.value if stored is not None else None
        if value is not None:
            parts.append(value_xml(ref, value))
    if has("message:IsRead"):
        parts.append(f"<t:IsRead>{_bool(item.is_read)}</t:IsRead>")
    parts.append(f"</t:{tag}>")
    return "".join(parts)


def folder_attr_id(folder: FolderRow) -> str:
    return attr(ids.encode(ids.FOLDER, folder.mailbox_id, folder.id))
