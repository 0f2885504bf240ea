"""How often a process reports to the fleet, and what its silence means.

A `migrator run` beats its `workers` row (and its `runs` row) every `beat_seconds`: at most
5 s, a third of the lease for leases under 15 s. That bounds how old `migrator workers` can
be, and how long a newcomer waits for the others to give up part of the shared ceiling. The
leases of the accounts in hand are renewed every third of the lease, as before.

From the others' side, a row whose heartbeat is older than three beats is *stale* (the
process hangs, is frozen or has lost the database: it may still hold leases), and older than
the lease *gone*: whatever it held has expired and is taken over; a `runs` row left running
by it is marked interrupted by whoever notices first.
"""

from __future__ import annotations

BEAT_MAX_S = 5.0


def beat_seconds(lease_seconds: float) -> float:
    return max(1.0, min(BEAT_MAX_S, lease_seconds / 3))


def renew_seconds(lease_seconds: float) -> float:
    """How often the leases of the accounts in hand are renewed."""
    return max(1.0, lease_seconds / 3)


def stale_after(lease_seconds: float) -> float:
    return min(float(lease_seconds), 3 * beat_seconds(lease_seconds))


def gone_after(lease_seconds: float) -> float:
    return float(lease_seconds)
