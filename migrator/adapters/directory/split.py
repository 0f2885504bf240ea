"""Splitting a search the server cuts at its size limit into searches that stay under it, by
the first characters of an attribute's values (the last resort: see reader.py for the order).

A stock OpenLDAP (`olcSizeLimit: 500`, Debian's default) caps every search at 500 entries, a
paged one too unless `size.prtotal` is raised. When a part of the directory holds more entries
than that and neither its subtrees nor a virtual list view can split it, the values of the
naming attribute (uid in `uid=ana,ou=people,...`) can: a part is "values starting with one of
these prefixes, but with none of those". Without a substring index every such part makes
slapd test every candidate entry, so what matters is how few parts there are:

- a part is split by the next characters its sample shows (`jo` -> `joa`, `jos`); one many
  sample values share is extended to what they all share (`jos` -> `jose.` at once), and one
  *rest* part takes everything else under the old prefix (values equal to it, continuations
  the sample did not show, entries without the attribute); a rest part that is cut again is
  split by every letter, digit, `.`, `-` and `_` as well;
- the entries a cut search returned are a sample of what it selects: continuations the sample
  says are small are searched together, in one search of several prefixes, sized by the ratio
  of entries to sample share the parts read so far show (reader.py);
- the parts together select exactly what the search selects, by construction (the rest part
  is the complement the server itself evaluates), whatever the attribute's matching rules;
  the sample only decides how well they are balanced;
- a part whose sample shows no continuation cannot be split (600 entries with one cn): that is
  an error naming the part, never a short list.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from .filters import escape_filter_value

DEFAULT_ATTRIBUTE = "uid"
# Substring filters match case-insensitively for uid, cn and ou (caseIgnore* rules); ".", "-"
# and "_" join names in uids (juan.perez). Other characters are split on when a sample shows them.
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789.-_"
# A continuation is extended to what its sample values share (jos -> jose.) only when this many
# show it: fewer say little about the entries the sample did not return.
_EXTEND_FROM = 8
# A prefix longer than this that still selects more than the size limit is not a name any more.
MAX_PREFIX = 256
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
_ESCAPE = re.compile(rb"\\([0-9A-Fa-f]{2}|.)", re.DOTALL)


@dataclass(frozen=True)
class Part:
    """Values starting with one of `prefixes` (any value when empty) and with none of `excluded`."""

    prefixes: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()

    def filter(self, search_filter: str, attribute: str) -> str:
        terms = [wrapped(search_filter)]
        if self.prefixes:
            terms.append(_any(attribute, self.prefixes))
        if self.excluded:
            terms.append(f"(!{_any(attribute, self.excluded)})")
        return terms[0] if len(terms) == 1 else f"(&{''.join(terms)})"

    def selects(self, value: str) -> bool:
        """Would this part hold `value` (compared as children() compares, case-folded)?"""
        folded = value.casefold()
        inside = not self.prefixes or any(folded.startswith(p) for p in self.prefixes)
        return inside and not any(folded.startswith(x) for x in self.excluded)

    def describe(self, attribute: str) -> str:
        within = " or ".join(f"{attribute}={p}*" for p in self.prefixes) or f"every {attribute}"
        if not self.excluded:
            return within
        others = ", ".join(f"{x}*" for x in self.excluded)
        return f"{within} except {others} (values with no other continuation, or no {attribute})"


def children(part: Part, values: Iterable[str]) -> list[Part]:
    """The parts `part` splits into: one per continuation of its prefixes its sample shows,
    each extended to the longest prefix its sample values share when enough of them do; the
    caller adds the rest part (rest()). A part that already leaves some continuations to
    others (a rest part, cut again) gets one per character of ALPHABET too: its sample was
    not fair (a directory loaded in alphabetical order returns its first 500 names first).
    Empty when there is nothing to split by (every value equals a prefix).
    """
    active = [p for p in part.prefixes if not any(p.startswith(x) for x in part.excluded)]
    if len(active) > 1:
        # several prefixes searched together were too many: first apart again, each with
        # the share of the new sample it holds
        return [Part((p,), tuple(x for x in part.excluded if x.startswith(p))) for p in active]
    if part.prefixes and not active:
        return []
    starts = tuple(active) or ("",)
    groups: dict[str, list[str]] = {}
    for value in values:
        folded = value.casefold()
        if not part.selects(folded):
            continue  # the server matched it by rules of its own; the rest part keeps it
        start = next((p for p in starts if folded.startswith(p)), None)
        if start is not None and len(folded) > len(start):
            groups.setdefault(folded[: len(start) + 1], []).append(folded)
    found = []
    for start in starts:
        if len(start) >= MAX_PREFIX:
            continue
        # every letter only where the sample has proved unfair: a rest part (one with
        # exclusions) that was cut again
        letters = {start + c for c in ALPHABET} if part.excluded else set()
        for key in sorted(letters | {k for k in groups if k.startswith(start)}):
            if any(key.startswith(x) for x in part.excluded):
                continue  # left to another part already
            sampled = groups.get(key, [])
            prefix = _common_prefix(sampled)[:MAX_PREFIX] if len(sampled) >= _EXTEND_FROM else key
            # what the part already leaves to other parts stays left to them
            found.append(Part((prefix,), tuple(x for x in part.excluded if x.startswith(prefix))))
    return found


def rest(part: Part, split_into: Iterable[Part]) -> Part:
    """What `part` selects and none of `split_into` does."""
    return Part(
        part.prefixes, part.excluded + tuple(p for child in split_into for p in child.prefixes)
    )


def union(parts: list[Part]) -> Part:
    """One part for several children of one part: their prefixes are distinct continuations
    (none starts with another), so each exclusion concerns its own prefix only."""
    return Part(
        tuple(p for part in parts for p in part.prefixes),
        tuple(x for part in parts for x in part.excluded),
    )


def sample_shares(
    part: Part, split_into: list[Part], values: Iterable[str]
) -> tuple[list[int], int]:
    """How many of the sample values each of `split_into` holds, and how many `part` holds."""
    counts = [0] * len(split_into)
    total = 0
    for value in values:
        if not part.selects(value):
            continue
        total += 1
        for i, child in enumerate(split_into):
            if child.selects(value):
                counts[i] += 1
                break
    return counts, total


def naming_attribute(dns: Iterable[str]) -> str:
    """The attribute most of these DNs are named by (their first RDN), else uid."""
    names: Counter[str] = Counter()
    for dn in dns:
        first = dn.split(",", 1)[0].split("+", 1)[0]
        name = first.split("=", 1)[0].strip()
        if "=" in first and _ATTRIBUTE_NAME.match(name):
            names[name.lower()] += 1
    return names.most_common(1)[0][0] if names else DEFAULT_ATTRIBUTE


def rdn_value(dn: str, attribute: str) -> str | None:
    """The value of `attribute` in the DN's first RDN (unescaped), if it names the entry by it.

    The server guarantees an RDN value is among the entry's values of that attribute, so the
    DNs of a cut search are a sample of the values even when the attribute was not asked for.
    """
    wanted = attribute.lower()
    for ava in _split_unescaped(_split_unescaped(dn, ",")[0], "+"):
        name, sep, value = ava.partition("=")
        if sep and name.strip().lower() == wanted:
            return _unescape(value.strip())
    return None


def wrapped(search_filter: str) -> str:
    text = search_filter.strip()
    return text if text.startswith("(") else f"({text})"


def _any(attribute: str, prefixes: tuple[str, ...]) -> str:
    terms = [f"({attribute}={escape_filter_value(p)}*)" for p in prefixes]
    return terms[0] if len(terms) == 1 else f"(|{''.join(terms)})"


def _common_prefix(values: list[str]) -> str:
    low, high = min(values), max(values)  # the shortest common prefix of all is theirs
    n = 0
    while n < min(len(low), len(high)) and low[n] == high[n]:
        n += 1
    return low[:n]


def _split_unescaped(text: str, separator: str) -> list[str]:
    pieces, start, escaped = [], 0, False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == separator:
            pieces.append(text[start:i])
            start = i + 1
    return [*pieces, text[start:]]


def _unescape(value: str) -> str:
    # "\\c3\\a9" is a byte in hex; "\\," "\\+" ... stand for the character itself
    raw = _ESCAPE.sub(
        lambda m: bytes([int(m.group(1), 16)]) if len(m.group(1)) == 2 else m.group(1),
        value.encode(),
    )
    return raw.decode("utf-8", errors="replace")
