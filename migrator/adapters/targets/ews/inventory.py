"""List a folder's items with their source keys, read straight from FindItem's XML.

exchangelib turns every FindItem answer into a full Message object, parsing each of the
class's fields in turn; for a listing that only needs the item id and one extended property,
that parsing costs several times the rest of `verify`. This FindItem keeps exchangelib's
request building and error handling, and reads the two values from the XML itself.

It reads them from whatever element an item is answered as. Exchange converts the MIME it is
given, and a meeting request, cancellation or response comes back as t:MeetingRequest,
t:MeetingCancellation or t:MeetingResponse, which exchangelib turns into classes that do not
know our source-key property: through exchangelib's own objects, a meeting request stored
before a crash would not be found, and would be sent again.

Paging is ours. Exchange may answer a page shorter than asked before the end of the view
(EWSFindCountLimit, shared by a caller's concurrent searches: "EWS throttling in Exchange"),
even an empty one for the later folders of a request. exchangelib pages several folders with
one offset, the lowest of their next offsets: the other folders are read again from there
(their items twice), and a folder whose first page came back empty is taken for finished
(its next offset, 0, reads as "no more"). Here each item is listed once (by id), and a folder
is finished only when Exchange says its page includes the last item.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from exchangelib.errors import ErrorExceededFindCountLimit, MalformedResponseError
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


_IS_READ = f"{{{TNS}}}IsRead"
_CATEGORIES = f"{{{TNS}}}Categories"
_STRING = f"{{{TNS}}}String"


def shown_flags(elem: Any) -> tuple[object, ...]:
    """What an item shows of its flags (see EwsTarget.shown): read, flagged, the verb, the
    categories, from a t:Message listed with them."""
    values: dict[str, str | None] = {}
    for prop in elem.iterfind(_EXTENDED):
        uri = prop.find(_URI)
        if uri is not None and uri.get("PropertyTag"):
            values[uri.get("PropertyTag").lower()] = prop.findtext(_VALUE)
    categories = elem.find(_CATEGORIES)
    names = (
        ()
        if categories is None
        else tuple(sorted(s.text or "" for s in categories.iterfind(_STRING)))
    )
    verb = values.get(hex(0x1081))
    return (
        (elem.findtext(_IS_READ) or "").lower() == "true",
        values.get(hex(0x1090)) == "2",
        int(verb) if verb else None,
        names,
    )


class KeyedFindItem(FindItem):  # type: ignore[misc]
    """FindItem whose answers are (item id, source key or None, parent folder id) triples,
    with what the item shows of its flags as a fourth when asked for (`with_flags`)."""

    with_flags = False

    def _get_page(self, message: Any) -> tuple[Any, None]:
        # the RootFolder element itself (or the error): keyed_items reads the paging
        return self._get_element_container(message=message, name=self.paging_container_name), None

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
        found = (
            item_id.get("Id") if item_id is not None else None,
            key,
            parent.get("Id") if parent is not None else None,
        )
        return (*found, shown_flags(elem)) if self.with_flags else found  # type: ignore[return-value]


def keyed_items(
    account: Any,
    folders: list[Any],
    source_key_field: Any,
    page_size: int,
    restriction: Any = None,
    flag_fields: tuple[Any, ...] = (),
) -> Iterator[Any]:
    """Every item of `folders` (one level each) as (id, source key, folder id), or exceptions
    for bad answers; with `restriction` (an exchangelib Restriction), those it matches. Several
    folders go in one request: Exchange answers each in its own response message, and each
    item names its folder. With `flag_fields` (what EwsTarget reads flags from) each item also
    comes with what it shows of its flags."""
    service = KeyedFindItem(account=account, page_size=page_size)
    service.with_flags = bool(flag_fields)
    service.additional_fields = {
        FieldPath(field=source_key_field),
        FieldPath(field=Item.get_field_by_fieldname("parent_folder_id")),
        *(FieldPath(field=f) for f in flag_fields),
    }
    service.shape = "IdOnly"
    next_offsets = dict.fromkeys(range(len(folders)), 0)  # folder position -> where to go on
    seen: set[str] = set()
    while next_offsets:
        order = list(next_offsets)
        offset = min(next_offsets.values())
        payload = service.get_payload(
            folders=[folders[i] for i in order],
            additional_fields=service.additional_fields,
            restriction=restriction,
            order_fields=None,
            query_string=None,
            shape="IdOnly",
            depth="Shallow",
            calendar_view=None,
            page_size=page_size,
            offset=offset,
        )
        pages = [page for page, _ in service._get_elements(payload=payload)]
        if len(pages) != len(order):
            raise MalformedResponseError(f"FindItem answered {len(pages)} folders for {len(order)}")
        progressed = False
        for position, page in zip(order, pages, strict=True):
            if isinstance(page, Exception):
                del next_offsets[position]
                yield page
                continue
            container = page.find(service.element_container_name)
            for elem in (
                [] if container is None else service._get_elements_in_container(container=container)
            ):
                found = service._elem_to_obj(elem)
                item_id = found[0]
                if item_id is not None:
                    if item_id in seen:
                        continue  # read again from a lower offset: listed already
                    seen.add(item_id)
                yield found
            if (page.get("IncludesLastItemInRange") or "").lower() == "true":
                del next_offsets[position]
                progressed = True
                continue
            reached = int(page.get("IndexedPagingOffset") or offset)
            progressed = progressed or reached > offset
            next_offsets[position] = max(reached, offset)
        if not progressed:
            # every folder answered an empty page short of its end: the caller's find budget
            # is spent by its other searches; a later attempt finds it recharged
            raise ErrorExceededFindCountLimit(
                "FindItem pages came back empty before the end of the folders"
            )
