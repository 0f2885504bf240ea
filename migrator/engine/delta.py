"""What a delta pass carries besides new mail: users' changes in the source since the last pass.

The ledger keeps, per message, the flags the target was last given. A pass compares the source's
flags with them and carries only the difference (read, flagged, answered/forwarded, keywords),
so a change made in the target since is never overwritten by a source that did not change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from migrator.model.mail import Flags

# The order changes are told in ("12 read, 3 flagged, 4 moved, 2 deleted").
KINDS = (
    "read", "unread", "flagged", "unflagged", "answered", "unanswered", "forwarded", "unforwarded",
    "labelled", "moved", "deleted", "kept", "folders renamed",
)  # fmt: skip


def flag_kinds(before: Flags, after: Flags) -> Counter[str]:
    """How a flag change is counted: one message can be read and flagged at once."""
    kinds: Counter[str] = Counter()
    for attr, on, off in (
        ("seen", "read", "unread"),
        ("flagged", "flagged", "unflagged"),
        ("answered", "answered", "unanswered"),
        ("forwarded", "forwarded", "unforwarded"),
    ):
        was, now = getattr(before, attr), getattr(after, attr)
        if was != now:
            kinds[on if now else off] += 1
    others = {k for k in after.keywords if k.casefold() != "$forwarded"} ^ {
        k for k in before.keywords if k.casefold() != "$forwarded"
    }
    if others:
        kinds["labelled"] += 1
    return kinds


def describe(changes: Mapping[str, int]) -> str:
    """ "12 read, 3 flagged, 4 moved, 2 deleted" (kinds with none left out); "" for none."""
    known = [f"{changes[k]:,} {k}" for k in KINDS if changes.get(k)]
    other = [f"{n:,} {k}" for k, n in sorted(changes.items()) if k not in KINDS and n]
    return ", ".join(known + other)
