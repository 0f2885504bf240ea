"""Deliberate crashes at named points of the chunk protocol, for the crash-safety tests.

`MIGRATOR_CRASH_AT=upload:3` makes the process SIGKILL itself right after the third chunk
upload returned (before the ledger records it). Points: begin_chunk (in-flight rows
committed), upload (target has the items, ledger not yet), finish_chunk (ledger committed).
Random kills from outside cover every other instant; these pin down the narrow windows.
Unset in production: the check is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import threading

_SPEC = os.environ.get("MIGRATOR_CRASH_AT", "")
_POINT, _, _COUNT = _SPEC.partition(":")
_AFTER = int(_COUNT) if _COUNT.isdigit() else 1
_seen = 0
_lock = threading.Lock()


def reached(point: str) -> None:
    global _seen
    if not _POINT or point != _POINT:
        return
    with _lock:
        _seen += 1
        if _seen >= _AFTER:
            os.kill(os.getpid(), signal.SIGKILL)
