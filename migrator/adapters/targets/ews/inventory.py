"""List a folder's items with their source keys, read straight from FindItem's XML.

exchangelib turns every FindItem answer into a full Message object, parsing each of the
class's fields in turn; for a listing that only needs the item id and one extended property,
that parsing costs several times the rest of `verify`. This FindItem keeps exchangelib's
request building, paging and error handling, and reads the two values from the XML itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from exchangelib.fields import FieldPath
from exchangelib.items import Item
from exchangelib.services import FindItem
from exchangelib.util import TNS

from .properties import SOURCE_KEY_PROPERTY_NAME, SOURCE_KEY_PROPERTY_SET

_ITEM_ID = f"{{{TNS}}}ItemId"
_PARENT = f"{{{TNS}}}ParentFolderId"
_EXTENDED = f"{{{TNS}}}ExtendedProperty"
_URI = f"{{{TNS}}}ExtendedFieldURI"
_VALUE = f"{{{TNS}}}Value"


class KeyedFindItem(FindItem):  # type: ignore[misc]
    """FindItem whose answers are (item id, source key or None, parent folder id) triples."""

    def _elem_to_obj(self, elem: Any) -> tuple[str | None, str | None, str | None]:
        item_id = elem.find(_ITEM_ID)
        parent = elem.find(_PARENT)
        key = None
        for prop in elem.iterfind(_EXTENDED):
            uri = prop.find(_URI)
            if (
                uri is not None
                and uri.get("PropertyName") == SOURCE_KEY_PROPERTY_NAME
                and (uri.get("PropertySetId") or "").lower() == SOURCE_KEY_PROPERTY_SET
            ):
                key = prop.findtext(_VALUE)
                break
        return (
            item_id.get("Id") if item_id is not None else None,
            key,
            parent.get("Id") if parent is not None else None,
        )


def keyed_items(account: Any, folders: list[Any], source_key_field: Any, page_size: int) -> Iterator[Any]:
    """Every item of `folders` (one level each) as (id, source key, folder id), or exceptions
    for bad answers. Several folders go in one request: Exchange answers each in its own
    response message, and each item names its folder."""
    yield from KeyedFindItem(account=account, page_size=page_size).call(
        folders=folders,
        additional_fields={FieldPath(field=source_key_field), FieldPath(field=Item.get_field_by_fieldname("parent_folder_id"))},
        restriction=None,
        order_fields=None,
        shape="IdOnly",
        query_string=None,
        depth="Shallow",
        calendar_view=None,
        max_items=None,
        offset=0,
    )
