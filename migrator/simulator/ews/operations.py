"""The EWS operations the simulator answers, each turning a parsed request into response XML."""

from __future__ import annotations

import base64
import binascii
import email.errors
import email.utils
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import decode_header, make_header

from lxml import etree

from . import conversion, ids, soap
from .changes import ItemChanges
from .faults import FaultKind
from .limits import Budgets, ExchangeLimits, MailboxLimits
from .props import (
    MSGFLAG_READ,
    MSGFLAG_UNSENT,
    PR_CLIENT_SUBMIT_TIME,
    PR_MESSAGE_DELIVERY_TIME,
    PR_MESSAGE_FLAGS,
    find_uri,
    parse_ref,
    parse_value,
)
from .restriction import compile_restriction, folder_matches
from .shapes import (
    Shape,
    folder_id_xml,
    folder_xml,
    item_id_xml,
    item_xml,
    parse_shape,
    wants_counts,
)
from .soap import M_NS, T_NS, EwsError
from .store import FolderExistsError, FolderRow, MailboxRow, NewItem, PropValue, Store

_T = f"{{{T_NS}}}"
_M = f"{{{M_NS}}}"


def _local(elem: etree._Element) -> str:
    return etree.QName(elem).localname


def _child(elem: etree._Element, local: str) -> etree._Element | None:
    for child in elem:
        if isinstance(child.tag, str) and _local(child) == local:
            return child
    return None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RequestContext:
    """Who is calling and on whose behalf, for one SOAP request."""

    user: str
    header: etree._Element | None
    anchor: str | None
    impersonated: MailboxRow | None = None
    # find results charged to the caller's EWSFindCountLimit budget, released once answered
    find_charged: int = 0
    # the request meets ErrorInternalServerError (inner ErrorServerBusy) after this fraction
    # of its items (a fault, see Faults.internal_busy_rate)
    internal_busy: float | None = None


@dataclass
class Policy:
    """What the operations read of the simulator's settings, per request."""

    limits: Callable[[], ExchangeLimits | None]  # None: lenient, no Exchange limits
    budgets: Budgets
    max_message_bytes: Callable[[], int | None]  # Faults.max_message_bytes, every mailbox
    mailbox_limits: Callable[[int], MailboxLimits]  # by mailbox row id
    short_page: Callable[[int], int]  # a page of n entries, maybe cut short (a fault)
    count_fault: Callable[[FaultKind], None]
    count_refusal: Callable[[str], None]


_REQUEST_TARGETS = ("FolderIds", "ParentFolderIds", "ItemIds", "SourceIds", "Folders", "Items")


def _targets(request: etree._Element) -> int:
    """How many response messages a request gets: one per folder, item or id it names."""
    for name in _REQUEST_TARGETS:
        container = _child(request, name)
        if container is not None:
            return max(1, sum(1 for c in container if isinstance(c.tag, str)))
    return 1


class Operations:
    def __init__(self, store: Store, policy: Policy) -> None:
        self._store = store
        self._policy = policy
        self._handlers: dict[str, Callable[[etree._Element, RequestContext], str]] = {
            "ConvertId": self.convert_id,
            "GetFolder": self.get_folder,
            "FindFolder": self.find_folder,
            "CreateFolder": self.create_folder,
            "CreateItem": self.create_item,
            "FindItem": self.find_item,
            "GetItem": self.get_item,
        }
        # changes to existing items and their modes (UpdateItem, MoveItem, DeleteItem)
        self._handlers.update(ItemChanges(self).handlers())

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def dispatch(self, operation: str, request: etree._Element, ctx: RequestContext) -> str:
        handler = self._handlers.get(operation)
        if handler is None:
            raise EwsError(
                "ErrorInvalidRequest", f"The simulator does not implement {operation}.", fault=True
            )
        if operation != "ConvertId":
            ctx.impersonated = self._impersonated(ctx)
        if ctx.internal_busy is not None and operation != "CreateItem":
            # nothing of it is carried out; CreateItem meets it part-way (see create_item)
            busy = soap.internal_server_busy()
            return soap.response(operation, [soap.error(operation, busy)] * _targets(request))
        return handler(request, ctx)

    # --- mailbox routing ---------------------------------------------------------------------

    def _impersonated(self, ctx: RequestContext) -> MailboxRow | None:
        if ctx.header is None:
            return None
        imp = ctx.header.find(f"{_T}ExchangeImpersonation")
        if imp is None:
            return None
        sid = imp.find(f"{_T}ConnectingSID")
        address = None
        if sid is not None:
            for local in ("PrimarySmtpAddress", "SmtpAddress", "PrincipalName"):
                found = sid.findtext(f"{_T}{local}")
                if found:
                    address = found.strip()
                    break
        if not address:
            raise EwsError("ErrorInvalidRequest", "ConnectingSID names no user", fault=True)
        mailbox = self._store.mailbox_by_address(address)
        if mailbox is None:
            raise EwsError("ErrorNonExistentMailbox", fault=True, values={"SmtpAddress": address})
        if not mailbox.allows(ctx.user):
            raise EwsError("ErrorImpersonateUserDenied", fault=True)
        return mailbox

    def _check_access(self, mailbox: MailboxRow, ctx: RequestContext) -> None:
        if ctx.impersonated is not None and ctx.impersonated.id == mailbox.id:
            return
        if not mailbox.allows(ctx.user):
            raise EwsError("ErrorAccessDenied")

    def _mailbox_by_address(self, address: str, ctx: RequestContext) -> MailboxRow:
        mailbox = self._store.mailbox_by_address(address)
        if mailbox is None:
            raise EwsError("ErrorNonExistentMailbox", values={"SmtpAddress": address})
        self._check_access(mailbox, ctx)
        return mailbox

    def _default_mailbox(self, ctx: RequestContext) -> MailboxRow:
        if ctx.impersonated is not None:
            return ctx.impersonated
        # Without impersonation Exchange opens the caller's own mailbox; X-AnchorMailbox only
        # routes, but a client that sends it means that mailbox.
        return self._mailbox_by_address(ctx.anchor or ctx.user, ctx)

    def _folder(self, elem: etree._Element, ctx: RequestContext) -> FolderRow:
        """The folder a t:FolderId or t:DistinguishedFolderId names."""
        kind = _local(elem)
        if kind == "DistinguishedFolderId":
            address = elem.findtext(f"{_T}Mailbox/{_T}EmailAddress")
            if address and (
                ctx.impersonated is None or address.lower() != ctx.impersonated.address.lower()
            ):
                mailbox = self._mailbox_by_address(address.strip(), ctx)
            else:
                mailbox = self._default_mailbox(ctx)
            name = elem.get("Id", "")
            folder = self._store.distinguished_folder(mailbox.id, name)
            if folder is None:
                raise EwsError("ErrorFolderNotFound")
            return folder
        if kind in ("FolderId", "ParentFolderId"):
            try:
                oid = ids.decode(elem.get("Id", ""), ids.FOLDER)
            except ids.MalformedIdError as e:
                raise EwsError("ErrorInvalidIdMalformed") from e
            folder = self._store.folder(oid.row_id)
            if folder is None or folder.mailbox_id != oid.mailbox_id:
                raise EwsError("ErrorFolderNotFound")
            owner = self._store.mailbox_by_id(folder.mailbox_id)
            assert owner is not None
            self._check_access(owner, ctx)
            return folder
        raise EwsError("ErrorInvalidRequest", f"{kind} is not a folder id", fault=True)

    def _folder_ids(self, container: etree._Element | None) -> list[etree._Element]:
        if container is None:
            raise EwsError("ErrorSchemaValidation", "The request names no folder.", fault=True)
        return [c for c in container if isinstance(c.tag, str)]

    # --- ConvertId ---------------------------------------------------------------------------

    def convert_id(self, request: etree._Element, ctx: RequestContext) -> str:
        destination = request.get("DestinationFormat", "EwsId")
        messages = []
        for source in self._folder_ids(_child(request, "SourceIds")):
            text = source.get("Id", "")
            if source.get("Format") == "EwsId" and destination == "EwsId":
                try:
                    ids.decode(text, ids.ITEM)
                except ids.MalformedIdError:
                    try:
                        ids.decode(text, ids.FOLDER)
                    except ids.MalformedIdError:
                        messages.append(
                            soap.error("ConvertId", EwsError("ErrorInvalidIdMalformed"))
                        )
                        continue
                alternate = (
                    '<m:AlternateId xsi:type="t:AlternateIdType" Format="EwsId" '
                    f"Id={soap.attr(text)} "
                    f"Mailbox={soap.attr(source.get('Mailbox', ''))}/>"
                )
                messages.append(soap.success("ConvertId", alternate))
            else:
                # Only our own EWS ids mean anything here; the version probe's DUMMY lands here.
                messages.append(soap.error("ConvertId", EwsError("ErrorInvalidIdMalformed")))
        return soap.response("ConvertId", messages)

    # --- folders -----------------------------------------------------------------------------

    def _render_folder(self, folder: FolderRow, shape: Shape) -> str:
        counts = self._store.folder_counts(folder.id) if wants_counts(shape) else None
        parent = None
        if folder.parent_id is not None and shape.has("folder:ParentFolderId"):
            parent = self._store.folder(folder.parent_id)
        return folder_xml(folder, shape, counts, parent)

    def get_folder(self, request: etree._Element, ctx: RequestContext) -> str:
        shape = parse_shape(_child(request, "FolderShape"), folder=True)
        messages = []
        for elem in self._folder_ids(_child(request, "FolderIds")):
            try:
                folder = self._folder(elem, ctx)
            except EwsError as e:
                if e.fault:
                    raise
                messages.append(soap.error("GetFolder", e))
                continue
            rendered = self._render_folder(folder, shape)
            messages.append(soap.success("GetFolder", f"<m:Folders>{rendered}</m:Folders>"))
        return soap.response("GetFolder", messages)

    def _find_cap(self, restricted: bool) -> int | None:
        limits = self._policy.limits()
        if limits is None:
            return None
        return limits.restricted_find_count_limit if restricted else limits.find_count_limit

    def _grant(self, ctx: RequestContext, entries: int, cap: int | None) -> int:
        """How many of the `entries` a page may return: EWSFindCountLimit charges every entry
        a find holds for the caller until the answer is sent, across the caller's concurrent
        finds ("EWS throttling in Exchange": a paged request past the budget gets a partial
        page; a request that finds the budget spent, an error until it recharges). Under the
        short_page_rate fault a page is cut short anyway."""
        if entries == 0:
            return 0
        entries = self._policy.short_page(entries)
        if cap is None:
            return entries
        granted = self._policy.budgets.charge_find(ctx.user, entries, cap)
        if granted == 0 and ctx.find_charged == 0:
            # spent by the caller's other searches before this request began
            self._policy.count_refusal("find_count_limit")
            raise EwsError("ErrorExceededFindCountLimit")
        # spent by this request's earlier folders: a partial page, empty if need be
        ctx.find_charged += granted
        return granted

    @staticmethod
    def _page(request: etree._Element, view_name: str, total: int) -> tuple[int, int | None]:
        view = _child(request, view_name)
        if view is None:
            return 0, None
        limit_text = view.get("MaxEntriesReturned")
        limit = int(limit_text) if limit_text else None
        offset = int(view.get("Offset", "0"))
        if view.get("BasePoint", "Beginning") == "End":
            offset = max(0, total - offset - (limit or 0))
        return offset, limit

    @staticmethod
    def _root_folder(offset: int, count: int, total: int, container: str, inner: str) -> str:
        last = "true" if offset + count >= total else "false"
        return (
            f'<m:RootFolder IndexedPagingOffset="{offset + count}" TotalItemsInView="{total}" '
            f'IncludesLastItemInRange="{last}"><t:{container}>{inner}</t:{container}></m:RootFolder>'
        )

    def find_folder(self, request: etree._Element, ctx: RequestContext) -> str:
        deep = request.get("Traversal", "Shallow") == "Deep"
        shape = parse_shape(_child(request, "FolderShape"), folder=True)
        messages = []
        for elem in self._folder_ids(_child(request, "ParentFolderIds")):
            try:
                parent = self._folder(elem, ctx)
            except EwsError as e:
                if e.fault:
                    raise
                messages.append(soap.error("FindFolder", e))
                continue
            children = self._store.child_folders(parent, deep)
            restriction = _child(request, "Restriction")
            restricted = restriction is not None and len(restriction) > 0
            if restriction is not None and len(restriction):
                children = [f for f in children if folder_matches(restriction[0], f)]
            offset, limit = self._page(request, "IndexedPageFolderView", len(children))
            cap = self._find_cap(restricted)
            if cap is not None:
                limit = cap if limit is None else min(limit, cap)
            page = children[offset : None if limit is None else offset + limit]
            try:
                page = page[: self._grant(ctx, len(page), cap)]
            except EwsError as e:
                messages.append(soap.error("FindFolder", e))
                continue
            inner = "".join(self._render_folder(f, shape) for f in page)
            messages.append(
                soap.success(
                    "FindFolder",
                    self._root_folder(offset, len(page), len(children), "Folders", inner),
                )
            )
        return soap.response("FindFolder", messages)

    def create_folder(self, request: etree._Element, ctx: RequestContext) -> str:
        parent_ids = self._folder_ids(_child(request, "ParentFolderId"))
        folders = _child(request, "Folders")
        try:
            parent = self._folder(parent_ids[0], ctx)
        except EwsError as e:
            if e.fault:
                raise
            count = len(folders) if folders is not None else 1
            return soap.response("CreateFolder", [soap.error("CreateFolder", e)] * count)
        messages = []
        for spec in [] if folders is None else [f for f in folders if isinstance(f.tag, str)]:
            name = (spec.findtext(f"{_T}DisplayName") or "").strip()
            folder_class = spec.findtext(f"{_T}FolderClass")
            if folder_class is None:
                folder_class = {
                    "CalendarFolder": "IPF.Appointment",
                    "ContactsFolder": "IPF.Contact",
                    "TasksFolder": "IPF.Task",
                }.get(_local(spec))
            if not name:
                err = EwsError("ErrorSchemaValidation", "A folder needs a DisplayName.")
                messages.append(soap.error("CreateFolder", err))
                continue
            try:
                created = self._store.create_folder(parent, name, folder_class)
            except FolderExistsError:
                messages.append(soap.error("CreateFolder", EwsError("ErrorFolderExists")))
                continue
            tag = "Folder" if _local(spec) == "Folder" else _local(spec)
            messages.append(
                soap.success(
                    "CreateFolder",
                    f"<m:Folders><t:{tag}>{folder_id_xml(created)}</t:{tag}></m:Folders>",
                )
            )
        return soap.response("CreateFolder", messages)

    # --- items -------------------------------------------------------------------------------

    def _parse_item(
        self, spec: etree._Element, folder: FolderRow, now: str, max_bytes: int | None
    ) -> NewItem:
        mime_elem = spec.find(f"{_T}MimeContent")
        mime = b""
        if mime_elem is not None and mime_elem.text:
            try:
                mime = base64.b64decode(mime_elem.text, validate=False)
            except (binascii.Error, ValueError) as e:
                raise EwsError("ErrorMimeContentConversionFailed") from e
        if max_bytes is not None and len(mime) > max_bytes:
            self._policy.count_fault(FaultKind.MESSAGE_TOO_LARGE)
            raise EwsError("ErrorMessageSizeExceeded")
        headers = _raw_headers(mime)
        subject = spec.findtext(f"{_T}Subject")
        if subject is None and b"subject" in headers:
            subject = _decode_header(headers[b"subject"])
        sent = None
        if headers.get(b"date"):
            try:
                parsed = email.utils.parsedate_to_datetime(
                    headers[b"date"].decode("ascii", "replace")
                )
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=UTC)
                sent = parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            except (TypeError, ValueError, IndexError):
                sent = None
        props: list[PropValue] = []
        flags: int | None = None
        received = now
        for prop in spec.findall(f"{_T}ExtendedProperty"):
            uri = find_uri(prop)
            if uri is None:
                raise EwsError(
                    "ErrorSchemaValidation", "ExtendedProperty without ExtendedFieldURI", fault=True
                )
            ref = parse_ref(uri)
            value = parse_value(ref, prop)
            if ref.tag == PR_MESSAGE_FLAGS:
                flags = int(value)
            elif ref.tag == PR_MESSAGE_DELIVERY_TIME:
                received = value
            elif ref.tag == PR_CLIENT_SUBMIT_TIME:
                sent = value
            else:
                props.append(PropValue(ref.key, ref.type, value))
        # Exchange marks a message created from MIME without PR_MESSAGE_FLAGS as an unsent draft.
        if flags is None:
            flags = MSGFLAG_UNSENT
        # exchangelib always sends IsRead (false by default) after the extended properties, so
        # a message counts as read when either IsRead or MSGFLAG_READ says so; PR_MESSAGE_FLAGS
        # is then kept in step with the read state, as Exchange does.
        is_read_text = (spec.findtext(f"{_T}IsRead") or "").strip().lower()
        is_read = is_read_text in ("true", "1") or bool(flags & MSGFLAG_READ)
        flags = (flags & ~MSGFLAG_READ) | (MSGFLAG_READ if is_read else 0)
        categories_elem = spec.find(f"{_T}Categories")
        categories = (
            []
            if categories_elem is None
            else [c.text or "" for c in categories_elem.findall(f"{_T}String")]
        )
        # Exchange converts the MIME into an item: its class, size and attachments follow the
        # content (conversion.py); a class the client names explicitly is kept
        converted = conversion.convert(mime)
        return NewItem(
            folder_id=folder.id,
            mime=mime,
            subject=subject,
            is_read=is_read,
            message_flags=flags,
            categories=categories,
            received=received,
            sent=sent,
            created=now,
            props=props,
            item_class=spec.findtext(f"{_T}ItemClass") or converted.item_class,
            size=converted.size,
            has_attachments=converted.has_attachments,
        )

    def create_item(self, request: etree._Element, ctx: RequestContext) -> str:
        disposition = request.get("MessageDisposition", "SaveOnly")
        saved = _child(request, "SavedItemFolderId")
        items = _child(request, "Items")
        specs = [] if items is None else [i for i in items if isinstance(i.tag, str)]
        try:
            if disposition != "SaveOnly":
                raise EwsError(
                    "ErrorInvalidOperation",
                    "The simulator only saves items (MessageDisposition=SaveOnly).",
                )
            if saved is not None:
                folder = self._folder(self._folder_ids(saved)[0], ctx)
            else:
                # SaveOnly without a folder saves to Drafts, as Exchange does.
                drafts = self._store.distinguished_folder(self._default_mailbox(ctx).id, "drafts")
                assert drafts is not None
                folder = drafts
        except EwsError as e:
            if e.fault:
                raise
            return soap.response("CreateItem", [soap.error("CreateItem", e)] * max(1, len(specs)))
        now = _now()
        limits = self._policy.mailbox_limits(folder.mailbox_id)
        # MaxReceiveSize of the mailbox, or the simulator-wide fault setting if lower
        max_bytes = min(
            (
                b
                for b in (self._policy.max_message_bytes(), limits.max_receive_bytes)
                if b is not None
            ),
            default=None,
        )
        quota = limits.prohibit_send_receive_bytes
        size = self._store.mailbox_size(folder.mailbox_id) if quota is not None else 0
        busy_from = len(specs) if ctx.internal_busy is None else int(ctx.internal_busy * len(specs))
        parsed: list[NewItem | EwsError] = []
        for index, spec in enumerate(specs):
            if index >= busy_from:
                parsed.append(soap.internal_server_busy())
                continue
            # A mailbox at or over ProhibitSendReceiveQuota takes nothing more; one below it
            # takes the next item whatever its size (the quota is checked, not reserved).
            # Set-Mailbox -ProhibitSendReceiveQuota (Microsoft Learn); the answer's wording is
            # the one quoted in exchangelib issue #457. Exchange's size is a cached figure, so
            # a real mailbox may take a little more than this before it refuses.
            if quota is not None and size >= quota:
                self._policy.count_refusal("quota")
                parsed.append(EwsError("ErrorQuotaExceeded"))
                continue
            try:
                item = self._parse_item(spec, folder, now, max_bytes)
            except EwsError as e:
                if e.fault:
                    raise
                parsed.append(e)
                continue
            parsed.append(item)
            size += item.size
        new_items = [p for p in parsed if isinstance(p, NewItem)]
        new_ids = iter(self._store.insert_items(folder.mailbox_id, new_items))
        messages = []
        for p in parsed:
            if isinstance(p, EwsError):
                messages.append(soap.error("CreateItem", p, "<m:Items/>"))
                continue
            item_id = next(new_ids)
            encoded = ids.encode(ids.ITEM, folder.mailbox_id, item_id)
            # answered as what the MIME became: a meeting request is a t:MeetingRequest
            tag = conversion.element_for(p.item_class)
            messages.append(
                soap.success(
                    "CreateItem",
                    f'<m:Items><t:{tag}><t:ItemId Id="{encoded}" ChangeKey="{ids.change_key(1)}"/>'
                    f"</t:{tag}></m:Items>",
                )
            )
        return soap.response("CreateItem", messages)

    def _render_items(self, item_ids: list[int], shape: Shape) -> dict[int, str]:
        rows = self._store.items_by_id(item_ids, with_mime=shape.has("item:MimeContent"))
        props = self._store.props_by_item(list(rows)) if shape.extended else {}
        return {i: item_xml(row, shape, props.get(i, {})) for i, row in rows.items()}

    def find_item(self, request: etree._Element, ctx: RequestContext) -> str:
        if request.get("Traversal", "Shallow") not in ("Shallow", "Associated", "SoftDeleted"):
            raise EwsError(
                "ErrorInvalidRequest", "FindItem supports Shallow traversal only.", fault=True
            )
        shape = parse_shape(_child(request, "ItemShape"), folder=False)
        where, params = "1", list[object]()
        restriction = _child(request, "Restriction")
        if restriction is not None and len(restriction):
            where, params = compile_restriction(restriction[0])
        cap = self._find_cap(where != "1")
        messages = []
        for elem in self._folder_ids(_child(request, "ParentFolderIds")):
            try:
                folder = self._folder(elem, ctx)
            except EwsError as e:
                if e.fault:
                    raise
                messages.append(soap.error("FindItem", e))
                continue
            view = _child(request, "IndexedPageItemView")
            offset = int(view.get("Offset", "0")) if view is not None else 0
            limit_text = view.get("MaxEntriesReturned") if view is not None else None
            limit = int(limit_text) if limit_text else None
            if cap is not None:
                limit = cap if limit is None else min(limit, cap)
            total, page = self._store.find_item_ids(folder.id, where, params, offset, limit)
            try:
                page = page[: self._grant(ctx, len(page), cap)]
            except EwsError as e:
                messages.append(soap.error("FindItem", e))
                continue
            rendered = self._render_items(page, shape)
            inner = "".join(rendered[i] for i in page if i in rendered)
            messages.append(
                soap.success(
                    "FindItem", self._root_folder(offset, len(page), total, "Items", inner)
                )
            )
        return soap.response("FindItem", messages)

    def _item_ref(self, elem: etree._Element, ctx: RequestContext) -> int:
        try:
            oid = ids.decode(elem.get("Id", ""), ids.ITEM)
        except ids.MalformedIdError as e:
            raise EwsError("ErrorInvalidIdMalformed") from e
        owner = self._store.mailbox_by_id(oid.mailbox_id)
        if owner is None:
            raise EwsError("ErrorItemNotFound")
        self._check_access(owner, ctx)
        return oid.row_id

    def get_item(self, request: etree._Element, ctx: RequestContext) -> str:
        shape = parse_shape(_child(request, "ItemShape"), folder=False)
        refs: list[int | EwsError] = []
        for elem in self._folder_ids(_child(request, "ItemIds")):
            try:
                refs.append(self._item_ref(elem, ctx))
            except EwsError as e:
                if e.fault:
                    raise
                refs.append(e)
        rendered = self._render_items([r for r in refs if isinstance(r, int)], shape)
        messages = []
        for ref in refs:
            if isinstance(ref, int) and ref in rendered:
                messages.append(soap.success("GetItem", f"<m:Items>{rendered[ref]}</m:Items>"))
            else:
                err = ref if isinstance(ref, EwsError) else EwsError("ErrorItemNotFound")
                messages.append(soap.error("GetItem", err, "<m:Items/>"))
        return soap.response("GetItem", messages)


def _raw_headers(mime: bytes) -> dict[bytes, bytes]:
    """First occurrence of each header in the MIME header block, unfolded, as raw bytes."""
    end = len(mime)
    for marker in (b"\r\n\r\n", b"\n\n"):
        found = mime.find(marker)
        if found != -1:
            end = min(end, found)
    headers: dict[bytes, bytes] = {}
    name = b""
    for line in mime[:end].splitlines():
        if line[:1] in (b" ", b"\t") and name:
            headers[name] += b" " + line.strip()
            continue
        key, sep, value = line.partition(b":")
        if not sep:
            name = b""
            continue
        name = key.strip().lower()
        if name in headers:
            name = b""  # keep the first occurrence only
            continue
        headers[name] = value.strip()
    return headers


def _decode_header(raw: bytes) -> str:
    """Header text: RFC 2047 words decoded; raw 8-bit read as UTF-8, else Windows-1252."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("cp1252", "replace")
    try:
        return str(make_header(decode_header(text)))
    except (UnicodeError, LookupError, ValueError, email.errors.HeaderParseError):
        return text


__all__ = ["Operations", "RequestContext", "item_id_xml"]
