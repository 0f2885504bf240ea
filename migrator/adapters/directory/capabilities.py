"""What the server says it can do: the controls its rootDSE lists (RFC 4512 section 5.1).

Read once per connection. A rootDSE that cannot be read (access rules, a server that hides it)
says nothing: paging is then tried and given up on refusal, sorting and VLV are not used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ldap3 import BASE, Connection
from ldap3.core.exceptions import LDAPException

from .ber import SORT_REQUEST_OID, VLV_REQUEST_OID

log = logging.getLogger(__name__)

PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"  # RFC 2696


@dataclass(frozen=True)
class Capabilities:
    controls: frozenset[str] | None = None  # None: the server did not say

    @property
    def paged(self) -> bool | None:
        return None if self.controls is None else PAGED_RESULTS_OID in self.controls

    @property
    def vlv(self) -> bool:
        """Server side sorting and virtual list views, both offered (a VLV needs a sort)."""
        return self.controls is not None and {SORT_REQUEST_OID, VLV_REQUEST_OID} <= self.controls


def read_capabilities(conn: Connection) -> Capabilities:
    try:
        conn.search("", "(objectClass=*)", search_scope=BASE, attributes=["supportedControl"])
    except LDAPException as exc:
        log.debug("rootDSE not readable: %s", exc)
        return Capabilities()
    entries = [item for item in conn.response or [] if item.get("type") == "searchResEntry"]
    if not conn.result or conn.result.get("result") != 0 or not entries:
        return Capabilities()
    raw: list[bytes | str] = next(
        (
            values
            for name, values in (entries[0].get("raw_attributes") or {}).items()
            if name.lower() == "supportedcontrol"
        ),
        [],
    )
    if not raw:
        return Capabilities()  # an empty list says as little as none
    controls = frozenset(
        v.decode("ascii", "replace") if isinstance(v, bytes) else str(v) for v in raw
    )
    log.debug("server controls: %s", ", ".join(sorted(controls)))
    return Capabilities(controls)
