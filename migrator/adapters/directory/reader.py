"""Searching the directory: paged, streaming, values decoded, names as the caller wrote them.

A server that stops searches at a size limit (a stock OpenLDAP: 500, paged searches too) is
read in parts, each a search the server answers cheaply:
1. by subtree: the children that have children of their own (one one-level search for
   `(hasSubordinates=TRUE)`), each searched on its own, recursively where one is still over
   the limit; the entry itself and its leaf children in a base and a one-level search;
2. where a part is still over the limit with no subtree left to split (a flat OU): a virtual
   list view, if the rootDSE offers server side sorting and VLV (the server sorts once,
   windows are read from that);
3. else by the first characters of the naming attribute (split.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ldap3 import BASE, LEVEL, SUBTREE, Connection
from ldap3.core.exceptions import LDAPException, LDAPInvalidFilterError
from ldap3.operation.search import parse_filter

from migrator.model.account import DirectoryEntry
from migrator.model.errors import DirectoryError
from migrator.model.plan import DirectorySettings

from . import ber, errors, split
from .capabilities import Capabilities, read_capabilities
from .connection import connect

log = logging.getLogger(__name__)

PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"  # RFC 2696 simple paged results control
_SPECIAL_SELECTORS = frozenset({"*", "+", "1.1"})
_HAS_CHILDREN = "(hasSubordinates=TRUE)"  # RFC 3045's operational attribute; slapd filters on it
# VLV needs a sort; the naming attributes (uid, cn, ou) have no ordering rule of their own
_ORDERING_RULE = "caseIgnoreOrderingMatch"
# Parts packed from a sample aim at this share of the size limit: an estimate a little high
# costs one more search (the part is cut and split), one a little low costs nothing.
_FILL = 0.9
# a search of many prefixes costs the server a test of each for every candidate entry
_MAX_PREFIXES = 40
_UNSEEN_SHARE = 0.25  # sample values a continuation the sample did not show counts for


def open_directory(settings: DirectorySettings, password: str | None) -> DirectoryReader:
    """Connect (and bind) to the directory the settings name; fails fast with DirectoryError."""
    conn = connect(settings, password)
    capabilities = Capabilities() if settings.is_ldif else read_capabilities(conn)
    return DirectoryReader(settings, conn, capabilities)


def decode_value(raw: bytes | str) -> str:
    """UTF-8 text; bytes that are not UTF-8 become backslash escapes ("\\xff"), and so does
    NUL ("\\x00"), which PostgreSQL text cannot hold.

    Backslash escapes (not surrogateescape) so every value can be written to the state
    database, logs and reports as is; such a value is visibly damaged, never silently dropped.
    """
    text = raw if isinstance(raw, str) else raw.decode("utf-8", errors="backslashreplace")
    return text.replace("\x00", "\\x00")


class _SizeLimited(Exception):
    """The server stopped a search at its size limit after `returned` entries (`dns`)."""

    def __init__(self, returned: int, dns: list[str]) -> None:
        super().__init__(returned)
        self.returned = returned
        self.dns = dns


@dataclass(frozen=True)
class _Query:
    filter: str
    request: list[str]  # attributes asked of the server
    names: dict[str, str]  # lower-cased -> as the caller wrote them
    want_all: bool


@dataclass(frozen=True)
class _Region:
    base: str
    scope: str  # ldap3's BASE, LEVEL or SUBTREE

    def describe(self) -> str:
        return {BASE: "the entry", LEVEL: "the children of", SUBTREE: "the subtree of"}[
            self.scope
        ] + f" {self.base}"


class _Tally:
    """Entries per unit of sample weight: measured on the prefix parts read whole so far, and
    at least what the parts the server cut show (a cut part holds more than its limit)."""

    def __init__(self) -> None:
        self._entries = 0
        self._weight = 0.0
        self._at_least = 0.0

    def add(self, entries: int, weight: float) -> None:
        if weight > 0:
            self._entries += entries
            self._weight += weight

    def cut(self, limit: int, weight: float) -> None:
        if weight > 0:
            self._at_least = max(self._at_least, limit / weight)

    @property
    def ratio(self) -> float | None:
        measured = self._entries / self._weight if self._weight > 0 else 0.0
        return max(measured, self._at_least) or None


class DirectoryReader:
    """An open directory. Use as a context manager, or call close().

    One search at a time: a server keeps one paged-results state per connection, so finish
    (or drop) one search's iterator before starting the next.
    """

    def __init__(
        self,
        settings: DirectorySettings,
        connection: Connection,
        capabilities: Capabilities | None = None,
    ) -> None:
        self.settings = settings
        self.capabilities = capabilities or Capabilities()
        self._conn: Connection | None = connection
        # what the last search needed (for logs, tests and benchmarks)
        self.pages_fetched = 0  # requests
        self.paging_used = False  # did it page (False after a fallback)
        self.split_parts = 0  # prefix parts searched (split.py)
        self.subtree_searches = 0  # searches of one entry, its children or a subtree
        self.vlv_windows = 0  # windows of a virtual list view read
        self.size_limit: int | None = None  # entries the server returned before cutting, if it did
        self._paging_refused: str | None = None
        self._vlv_refused: str | None = None
        self._container_cache: dict[str, list[str] | None] = {}
        self._subordinates_filter: bool | None = None  # does the server evaluate hasSubordinates
        self._plain_limit: int | None = None  # where the server cut a plain (unpaged) search

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
        query = _Query(
            search_filter, attributes or ["1.1"], names, "*" in attributes
        )  # "1.1": DNs only
        self.pages_fetched, self.paging_used, self.split_parts = 0, True, 0
        self.subtree_searches, self.vlv_windows, self.size_limit = 0, 0, None
        self._plain_limit = None
        self._paging_refused = None
        if self.capabilities.paged is False:
            self.paging_used = False  # the rootDSE does not list it: no request to be refused
        seen: set[str] = set()  # DNs yielded, so an entry found again in a part is not repeated
        yield from self._gather(conn, query, _Region(self.settings.base, SUBTREE), seen)
        if self.size_limit is not None:
            log.info(
                "%s: read in parts under a size limit of %d: %d subtree searches, %d VLV windows, "
                "%d prefix parts, %d requests",
                self.url, self.size_limit, self.subtree_searches, self.vlv_windows,
                self.split_parts,
                self.pages_fetched,
            )  # fmt: skip

    def _gather(
        self, conn: Connection, query: _Query, region: _Region, seen: set[str]
    ) -> Iterator[DirectoryEntry]:
        """Every entry of `region` that the query selects, in as few searches as the size
        limit allows: the region at once; else its subtrees; else a VLV; else by prefix."""
        paged = self._page_parts()
        try:
            yield from _unseen(self._one_search(conn, region, query.filter, query, paged), seen)
            return
        except _SizeLimited as cut:
            sample = cut.dns
            self._note_cut(cut.returned, paged)
        if not paged and self._page_parts():
            # the server lets paged searches go further than plain ones (size.prtotal): the
            # region may fit in one of those
            try:
                yield from _unseen(self._one_search(conn, region, query.filter, query, True), seen)
                return
            except _SizeLimited as cut:
                sample = cut.dns
        if region.scope == SUBTREE:
            containers = self._containers(conn, region.base)
            if containers:
                # the entry itself, its own children, then each child's subtree: every part is
                # a search slapd answers by walking that part only
                for part in (_Region(region.base, BASE), _Region(region.base, LEVEL)):
                    self.subtree_searches += 1
                    yield from self._gather(conn, query, part, seen)
                for dn in containers:
                    self.subtree_searches += 1
                    yield from self._gather(conn, query, _Region(dn, SUBTREE), seen)
                return
        if self.capabilities.vlv and not self._vlv_refused:
            read_all = yield from self._by_vlv(conn, query, region, seen, sample)
            if read_all:
                return
        yield from self._by_prefix(conn, query, region, seen, sample)

    def _page_parts(self) -> bool:
        """Page this search? The first one, yes. After a cut, parts are plain searches unless
        paging has been seen to reach further: slapd answers a plain search of a small subtree
        by walking that subtree, but a paged one by testing every candidate entry of the
        filter in the whole database (measured: 1 ms against 40 ms for an OU of 50 people
        among 100,000)."""
        if not self.paging_used:
            return False
        if self.size_limit is None:
            return True
        return self._plain_limit is not None and self._plain_limit < self.size_limit

    def _part_limit(self) -> int | None:
        """How many entries a part may hold: what the server returned before cutting the
        kind of search (paged or plain) parts are read with."""
        return self.size_limit if self._page_parts() else (self._plain_limit or self.size_limit)

    def _note_cut(self, returned: int, paged: bool) -> None:
        if self.size_limit is None:
            log.warning(
                "%s: the server stops a search at %d entries (its size limit); reading the rest "
                "in parts (subtrees first)", self.url, returned,
            )  # fmt: skip
        if paged or self.size_limit is None:
            self.size_limit = max(self.size_limit or 0, returned)
        if not paged:
            self._plain_limit = max(self._plain_limit or 0, returned)

    def _containers(self, conn: Connection, base: str) -> list[str] | None:
        """The children of `base` that have children of their own; None when the server
        cannot say (it does not evaluate hasSubordinates in a filter). Kept for the reader's
        life: discovery's three searches walk the same tree."""
        if base in self._container_cache:
            return self._container_cache[base]
        found: list[str] | None = None
        if self._subordinates_filter is not False:
            listing = _Query(_HAS_CHILDREN, ["1.1"], {}, False)
            found = [entry.dn for entry in self._gather(conn, listing, _Region(base, LEVEL), set())]
            if not found and self._subordinates_filter is None:
                # `base` has children (a search under it was cut): a server that evaluates
                # the filter returns base itself to the same filter
                this = list(
                    self._one_search(conn, _Region(base, BASE), _HAS_CHILDREN, listing, False)
                )
                self._subordinates_filter = bool(this)
                if not this:
                    log.info(
                        "%s: the server does not evaluate hasSubordinates; no split by subtree",
                        self.url,
                    )
                    found = None
            elif found:
                self._subordinates_filter = True
        self._container_cache[base] = found
        return found

    def _by_vlv(
        self, conn: Connection, query: _Query, region: _Region, seen: set[str], sample: list[str]
    ) -> Generator[DirectoryEntry, None, bool]:
        """The region through a virtual list view (the server sorts once, we read windows of
        it). False when the server refuses it or the view changed under us (the caller then
        reads by prefix; entries already yielded are not repeated)."""
        attribute = split.naming_attribute(sample)
        window = max(1, min(self.settings.page_size, self._part_limit() or self.settings.page_size))
        sort = (ber.SORT_REQUEST_OID, True, ber.sort_request(attribute, _ORDERING_RULE))
        offset, count, context, walked = 1, 0, None, set()
        while True:
            view = (
                ber.VLV_REQUEST_OID,
                True,
                ber.vlv_request(0, window - 1, offset, count, context),
            )
            result, response = self._request(
                conn, region, query.filter, query.request, False, None, [sort, view]
            )
            self.pages_fetched += 1
            self.vlv_windows += 1
            answer, problem = _vlv_answer(result)
            if problem is not None:
                self._vlv_refused = problem
                log.warning(
                    "%s: virtual list view refused (%s); reading by prefix instead",
                    self.url,
                    problem,
                )
                return False
            assert answer is not None
            for item in response:
                if item.get("type") == "searchResEntry":
                    entry = _to_entry(item, query.names, query.want_all)
                    walked.add(entry.dn)
                    if entry.dn not in seen:
                        seen.add(entry.dn)
                        yield entry
            count, context = answer.content_count, answer.context
            offset = answer.target_position + window
            if offset > count:
                break
        if len(walked) < count:
            log.warning(
                "%s: the virtual list view of %s held %d entries, %d were read (the directory "
                "changed meanwhile?); reading by prefix to be sure", self.url, region.describe(),
                count, len(walked),
            )  # fmt: skip
            return False
        return True

    def _by_prefix(
        self, conn: Connection, query: _Query, region: _Region, seen: set[str], sample: list[str]
    ) -> Iterator[DirectoryEntry]:
        attribute = split.naming_attribute(sample)
        tally = _Tally()
        yield from self._split(
            conn, query, region, seen, attribute, split.Part(), 1.0, sample, tally
        )

    def _split(
        self, conn: Connection, query: _Query, region: _Region, seen: set[str], attribute: str,
        part: split.Part, weight: float, sample: list[str], tally: _Tally,
    ) -> Iterator[DirectoryEntry]:  # fmt: skip
        values = [v for dn in sample if (v := split.rdn_value(dn, attribute)) is not None]
        kids = split.children(part, values)
        if not kids:
            raise errors.size_limit_error(
                self.settings, self.size_limit or 0, paging_refused=self._paging_refused,
                paged=self.paging_used, part=part.describe(attribute),
            )  # fmt: skip
        shares, total = split.sample_shares(part, kids, values)
        if self._part_limit():
            tally.cut(self._part_limit() or 0, weight)
        # a continuation the sample does not show still holds some entries, likely few
        weights = [weight * max(share, _UNSEEN_SHARE) / max(1, total) for share in shares]
        for group, group_weight in self._groups(part, kids, weights, tally):
            self.split_parts += 1
            returned, paged = 0, self._page_parts()
            try:
                for entry in self._one_search(
                    conn, region, group.filter(query.filter, attribute), query, paged
                ):
                    returned += 1
                    if entry.dn not in seen:
                        seen.add(entry.dn)
                        yield entry
            except _SizeLimited as cut:
                self._note_cut(cut.returned, paged)
                log.debug(
                    "part %s: cut (estimate %.0f)",
                    group.describe(attribute),
                    group_weight * (tally.ratio or 0),
                )
                yield from self._split(
                    conn, query, region, seen, attribute, group, group_weight, cut.dns, tally
                )
                continue
            log.debug(
                "part %s: %d entries (estimate %.0f)",
                group.describe(attribute),
                returned,
                group_weight * (tally.ratio or 0),
            )
            tally.add(returned, group_weight)

    def _groups(
        self, part: split.Part, kids: list[split.Part], weights: list[float], tally: _Tally
    ) -> Iterator[tuple[split.Part, float]]:
        """The searches for `part`'s children: the ones the sample says are small packed
        together up to most of the size limit (first fit, largest first), the last one taking
        the rest of `part` too. Packing needs the ratio of entries to sample weight: measured
        on the parts read so far, and at least what the cut parts show (too low at first: a
        group is then cut, and split again with a better ratio)."""
        pending = sorted(zip(weights, range(len(kids)), strict=True))
        emitted: list[split.Part] = []
        while pending:
            if tally.ratio is None or not self._part_limit():
                bins = [[pending.pop(0)]]
            else:
                bins = _first_fit(
                    pending, _FILL * (self._part_limit() or 0) / tally.ratio, _MAX_PREFIXES
                )
                pending = []
                if len(bins) == 1 and not emitted and len(bins[0]) > 1:
                    # `part` was cut, so its children cannot all fit in one search
                    bins = [bins[0][::2], bins[0][1::2]]
            for members in bins:
                weight = sum(w for w, _ in members)
                if not pending and members is bins[-1] and emitted:
                    # the last group also takes what no child holds (values equal to the prefix,
                    # continuations the sample did not show, entries without the attribute)
                    yield split.rest(part, emitted), weight
                    return
                group = split.union([kids[i] for _, i in members])
                emitted.append(group)
                yield group, weight
        yield split.rest(part, emitted), 0.0

    def _one_search(
        self,
        conn: Connection,
        region: _Region,
        search_filter: str,
        query: _Query,
        page: bool = True,
    ) -> Iterator[DirectoryEntry]:
        """One search, paged (when `page`) while the server allows it; _SizeLimited (after
        yielding what came) when the server stops it at its size limit."""
        cookie, returned, pages, dns = None, 0, 0, []
        while True:
            paged = self.paging_used and page
            result, response = self._request(
                conn, region, search_filter, query.request, paged, cookie
            )
            code = result.get("result") if result else None
            if paged and self.pages_fetched == 0 and code in errors.PAGING_REFUSED:
                # A server that will not page may still hold fewer entries than its size
                # limit: ask once more without paging; a truncated answer is split in parts.
                self._paging_refused = errors.result_text(result)
                log.warning(
                    "%s refused paged results (%s); searching without paging",
                    self.url,
                    self._paging_refused,
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
                    entry = _to_entry(item, query.names, query.want_all)
                    dns.append(entry.dn)
                    yield entry
            if code == errors.SIZE_LIMIT_EXCEEDED:
                raise _SizeLimited(returned, dns)
            cookie = _cookie(result) if paged else None
            if not cookie:
                log.debug("%s: %d entries in %d request(s)", self.url, returned, pages)
                return

    def _request(
        self,
        conn: Connection,
        region: _Region,
        search_filter: str,
        attributes: list[str],
        paged: bool,
        cookie: bytes | None,
        controls: list[tuple[str, bool, bytes]] | None = None,
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        try:
            conn.search(
                region.base,
                search_filter,
                search_scope=region.scope,
                attributes=attributes,
                paged_size=self.settings.page_size if paged else None,
                paged_cookie=cookie,
                controls=controls,
            )
        except LDAPInvalidFilterError as exc:
            raise errors.filter_error(self.settings, search_filter, exc) from None
        except LDAPException as exc:
            raise errors.lost_error(self.settings, exc) from None
        except Exception as exc:  # ldap3 fails with anything (KeyError...) on a garbled answer
            raise errors.not_ldap_error(self.settings, exc) from None
        return conn.result, conn.response or []


def _first_fit(
    items: list[tuple[float, int]], room: float, most: int
) -> list[list[tuple[float, int]]]:
    """Items (weight, index) in bins of at most `room` and `most` items each (an item over
    `room` alone), the bin with the largest items last: it also takes the rest of the part,
    which the sample says little about."""
    bins: list[list[tuple[float, int]]] = []
    loads: list[float] = []
    for item in sorted(items, reverse=True):
        for n, load in enumerate(loads):
            if load + item[0] <= room and len(bins[n]) < most:
                bins[n].append(item)
                loads[n] += item[0]
                break
        else:
            bins.append([item])
            loads.append(item[0])
    return bins[::-1]


def _unseen(entries: Iterator[DirectoryEntry], seen: set[str]) -> Iterator[DirectoryEntry]:
    for entry in entries:
        if entry.dn not in seen:
            seen.add(entry.dn)
            yield entry


def _vlv_answer(result: dict[str, Any] | None) -> tuple[ber.VlvResponse | None, str | None]:
    """The VLV response of a window, or why there is none to use."""
    code = result.get("result") if result else None
    if code != 0:
        return None, errors.result_text(result)
    controls = (result or {}).get("controls") or {}
    try:
        sort = controls.get(ber.SORT_RESPONSE_OID)
        if sort is not None and ber.sort_result(bytes(sort.get("value") or b"")) != 0:
            return None, "the server could not sort the entries"
        view = controls.get(ber.VLV_RESPONSE_OID)
        if view is None:
            return None, "no virtual list view in the answer"
        answer = ber.vlv_response(bytes(view.get("value") or b""))
    except ber.BerError as exc:
        return None, f"unreadable control ({exc})"
    if answer.result != 0:
        return None, f"virtual list view result {answer.result}"
    return answer, None


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
