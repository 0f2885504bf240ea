"""Splitting a search the server cuts at its size limit into searches that stay under it.

A stock OpenLDAP (`olcSizeLimit: 500`, Debian's default) caps every search at 500 entries, a
paged one too unless `size.prtotal` is raised; many directories cannot be reconfigured for a
migration. The same entries can still be read in parts: the first characters of the naming
attribute (uid in `uid=ana,ou=people,...`) partition them, and a part still over the limit is
split one character further. A "rest" part catches values starting with anything else
(accents, punctuation) and entries without the attribute, so the parts together hold every
entry; an entry in two parts (several values) is yielded once by the reader.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

# Substring filters match case-insensitively for uid and cn (caseIgnore* rules); ".", "-" and
# "_" join names in uids (juan.perez) and need no escaping in a filter. Spaces are left to the
# rest part: substring matching folds them.
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789.-_"
# Each level costs len(ALPHABET) searches for one crowded prefix only; values this long that
# still share a prefix past the limit are not names any more, and the search gives up clearly.
MAX_PREFIX = 24
DEFAULT_ATTRIBUTE = "uid"
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")


@dataclass(frozen=True)
class Part:
    filter: str
    prefix: str  # what the part's values start with
    rest: bool = False  # the values starting with prefix and then no letter or digit: not split further

    def describe(self, attribute: str) -> str:
        if not self.rest:
            return f"{attribute}={self.prefix}*"
        if self.prefix:
            return f"{attribute}={self.prefix}* not followed by a letter, digit, '.', '-' or '_'"
        return f"entries whose {attribute} does not start with a letter, digit, '.', '-' or '_' (or that have none)"


def naming_attribute(dns: Iterable[str]) -> str:
    """The attribute most of these DNs are named by (their first RDN), else uid."""
    names: Counter[str] = Counter()
    for dn in dns:
        first = dn.split(",", 1)[0].split("+", 1)[0]
        name = first.split("=", 1)[0].strip()
        if "=" in first and _ATTRIBUTE_NAME.match(name):
            names[name.lower()] += 1
    return names.most_common(1)[0][0] if names else DEFAULT_ATTRIBUTE


def wrapped(search_filter: str) -> str:
    text = search_filter.strip()
    return text if text.startswith("(") else f"({text})"


def parts(search_filter: str, attribute: str, prefix: str = "") -> list[Part]:
    """The filter narrowed to values starting with prefix + each character, and the rest."""
    base = wrapped(search_filter)
    children = [Part(f"(&{base}({attribute}={prefix}{c}*))", prefix + c) for c in ALPHABET]
    others = "".join(f"({attribute}={prefix}{c}*)" for c in ALPHABET)
    within = f"({attribute}={prefix}*)" if prefix else ""
    rest = Part(f"(&{base}{within}(!(|{others})))", prefix, rest=True)
    return [*children, rest]
