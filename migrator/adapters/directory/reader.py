"""Searching the directory: paged, streaming, values decoded, names as the caller wrote them."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from ldap3 import SUBTREE, Connection
from ldap3.core.exceptions import LDAPException, LDAPInvalidFilterError
from ldap3.operation.search import parse_filter

from migrator.model.account import DirectoryEntry
from migrator.model.errors import DirectoryError
from migrator.model.plan import DirectorySettings

from . import errors, split
from .connection import connect

log = logging.getLogger(__name__)

PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"  # RFC 2696 simple paged results control
_SPECIAL_SELECTORS = frozenset({"*", "+", "1.1"})


def open_directory(settings: DirectorySettings, password: str | None) -> DirectoryReader:
    """Connect (and bind) to the directory the settings name; fails fast with DirectoryError."""
    return DirectoryReader(settings, connect(settings, password))


def decode_value(raw: bytes | str) -> str:
    """UTF-8 text; bytes that are not UTF-8 become backslash escapes ("\\xff"), and so does
    NUL ("\\x00"), which PostgreSQL text cannot hold.

    Backslash escapes (not surrogateescape) so every value can be written to the state
    database, logs and reports as is; such a value is visibly damaged, never silently dropped.
    """
    text = raw if isinstance(raw, str) else raw.decode("utf-8", errors="backslashreplace")
    return text.replace("\x00", "\\x00")


class _SizeLimited(Exception):
    """The server stopped a search at its size limit after `returned` entries."""

    def __init__(self, returned: int) -> None:
        super().__init__(returned)
        self.returned = returned


class DirectoryReader:
    """An open directory. Use as a context manager, or call close().

    One search at a time: a server keeps one paged-results state per connection, so finish
    (or drop) one search's iterator before starting the next.
    """

    def __init__(self, settings: DirectorySettings, connection: Connection) -> None:
        self.settings = settings
        self._conn: Connection | None = connection
        self.pages_fetched = 0  # requests the last search needed (for logs and benchmarks)
        self.paging_used = False  # did the last search page (False after a fallback)
        self.split_parts = 0  # searches in parts the last search needed (server size limit)
        self._paging_refused: str | None = None

    @property
    def url(self) -> str:
        return self.settings.url

    def search(self, filter: str, attributes: list[str]) -> Iterator[DirectoryEntry]:
        """Every entry under settings.base that `filter` selects, one at a time.

        The filter is checked now (DirectoryError if malformed); the server is asked page by
        page (settings.page_size) as the caller consumes the iterator, so memory stays flat
        however big the directory. Each entry has exactly the requested attribute names as
        keys (absent ones map to []), matched case-insensitively to what the server returns.
        """
        if self._conn is None:
            raise DirectoryError(f"{self.url}: the directory connection is closed")
        try:
            parse_filter(
                filter, None, auto_escape=False, auto_encode=True, validator=None, check_names=False
            )
        except LDAPInvalidFilterError as exc:
            raise errors.filter_error(self.settings, filter, exc) from None
        except Exception as exc:  # anything else the parser raises about the filter
            raise errors.filter_error(self.settings, filter, exc) from None
        return self._entries(self._conn, filter, list(attributes))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # if the server went away first, nothing is left to release
            with contextlib.suppress(Exception):
                conn.unbind()

    def __enter__(self) -> DirectoryReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- internals ---------------------------------------------------------------------

    def _entries(
        self, conn: Connection, search_filter: str, attributes: list[str]
    ) -> Iterator[DirectoryEntry]:
        names = {name.lower(): name for name in attributes if name not in _SPECIAL_SELECTORS}
        want_all = "*" in attributes
        request = attributes or ["1.1"]  # "1.1": no attributes, DNs only (RFC 4511)
        self.pages_fetched, self.paging_used, self.split_parts = 0, True, 0
        self._paging_refused = None
        seen: set[str] = set()  # DNs yielded, so an entry found again in a part is not repeated
        try:
            for entry in self._one_search(conn, search_filter, request, names, want_all):
                seen.add(entry.dn)
                yield entry
            return
        except _SizeLimited as cut:
            returned = cut.returned
        attribute = split.naming_attribute(seen)
        log.warning(
            "%s: the server stops a search at %d entries (its size limit); reading the rest in "
            "parts by the first characters of %s",
            self.url, returned, attribute,
        )  # fmt: skip
        yield from self._parts(conn, search_filter, request, names, want_all, attribute, "", seen)

    def _parts(
        self, conn: Connection, search_filter: str, request: list[str], names: dict[str, str],
        want_all: bool, attribute: str, prefix: str, seen: set[str],
    ) -> Iterator[DirectoryEntry]:  # fmt: skip
        for part in split.parts(search_filter, attribute, prefix):
            self.split_parts += 1
            try:
                for entry in self._one_search(conn, part.filter, request, names, want_all):
                    if entry.dn not in seen:
                        seen.add(entry.dn)
                        yield entry
            except _SizeLimited as cut:
                if part.rest or len(part.prefix) >= split.MAX_PREFIX:
                    raise errors.size_limit_error(
                        self.settings, cut.returned, paging_refused=self._paging_refused,
                        paged=self.paging_used, part=part.describe(attribute),
                    ) from None  # fmt: skip
                yield from self._parts(conn, search_filter, request, names, want_all, attribute, part.prefix, seen)

    def _one_search(
        self, conn: Connection, search_filter: str, request: list[str], names: dict[str, str], want_all: bool
    ) -> Iterator[DirectoryEntry]:
        """One search, paged while the server allows it; _SizeLimited (after yielding what came)
        when the server stops it at its size limit."""
        cookie, returned, pages = None, 0, 0
        while True:
            paged = self.paging_used
            result, response = self._request(conn, search_filter, request, paged, cookie)
            code = result.get("result") if result else None
            if paged and self.pages_fetched == 0 and code in errors.PAGING_REFUSED:
                # A server that will not page may still hold fewer entries than its size
                # limit: ask once more without paging; a truncated answer is split in parts.
                self._paging_refused = errors.result_text(result)
                log.warning(
                    "%s refused paged results (%s); searching without paging", self.url, self._paging_refused
                )
                self.paging_used = False
                continue
            self.pages_fetched += 1
            pages += 1
            if code not in (0, errors.SIZE_LIMIT_EXCEEDED):
                raise errors.search_error(self.settings, search_filter, result)
            for item in response:
                if item.get("type") == "searchResEntry":
                    returned += 1
                    yield _to_entry(item, names, want_all)
            if code == errors.SIZE_LIMIT_EXCEEDED:
                raise _SizeLimited(returned)
            cookie = _cookie(result) if paged else None
            if not cookie:
                log.debug("%s: %d entries in %d request(s)", self.url, returned, pages)
                return

    def _request(
        self,
        conn: Connection,
        search_filter: str,
        attributes: list[str],
        paged: bool,
        cookie: bytes | None,
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        try:
            conn.search(
                self.settings.base,
                search_filter,
                search_scope=SUBTREE,
                attributes=attributes,
                paged_size=self.settings.page_size if paged else None,
                paged_cookie=cookie,
            )
        except LDAPInvalidFilterError as exc:
            raise errors.filter_error(self.settings, search_filter, exc) from None
        except LDAPException as exc:
            raise errors.lost_error(self.settings, exc) from None
        except Exception as exc:  # ldap3 fails with anything (KeyError...) on a garbled answer
            raise errors.not_ldap_error(self.settings, exc) from None
        return conn.result, conn.response or []


def _paged_control(result: dict[str, Any] | None) -> dict[str, Any] | None:
    control: dict[str, Any] | None = ((result or {}).get("controls") or {}).get(PAGED_RESULTS_OID)
    return control


def _cookie(result: dict[str, Any] | None) -> bytes | None:
    control = _paged_control(result)
    if not control:
        return None
    cookie = (control.get("value") or {}).get("cookie")
    return cookie or None


def _to_entry(item: dict[str, Any], names: dict[str, str], want_all: bool) -> DirectoryEntry:
    attributes: dict[str, list[str]] = {name: [] for name in names.values()}
    for key, values in (item.get("raw_attributes") or {}).items():
        base = key.split(";", 1)[0].lower()  # "cn;lang-es" counts as cn
        target = names.get(base)
        if target is None:
            if not want_all:
                continue
            target = key
        attributes.setdefault(target, []).extend(decode_value(v) for v in values)
    return DirectoryEntry(dn=decode_value(str(item.get("dn", ""))), attributes=attributes)
