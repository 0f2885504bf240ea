"""Whether the process behind a worker name ("host:pid") is gone, for leases and runs.

A dead process of this host frees what it held at once (a SIGKILL, a crash); one of another
host, or one we may not signal, counts as alive until its lease expires.
"""

from __future__ import annotations

import os
import socket


def process_gone(owner: str | None) -> bool:
    """True when `owner` (host:pid) ran on this host and its process no longer exists."""
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
