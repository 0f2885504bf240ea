"""Deliberate crashes at named points of the chunk protocol, for the crash-safety tests.

`MIGRATOR_CRASH_AT=upload:3` makes the process SIGKILL itself right after the third chunk
upload returned (before the ledger records it). Points: begin_chunk (in-flight rows
committed), before_upload (the lease was confirmed, the request is about to leave), upload
(target has the items, ledger not yet), finish_chunk (ledger committed). A third part `:stop`
freezes the process (SIGSTOP) instead, as a VM pause would: the tests thaw it with SIGCONT.
Random kills from outside cover every other instant; these pin down the narrow windows.
Unset in production: the check is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import threading

_SPEC = os.environ.get("MIGRATOR_CRASH_AT", "")
_POINT, _, _REST = _SPEC.partition(":")
_COUNT, _, _ACTION = _REST.partition(":")
_AFTER = int(_COUNT) if _COUNT.isdigit() else 1
_SIGNAL = signal.SIGSTOP if _ACTION == "stop" else signal.SIGKILL
_seen = 0
_lock = threading.Lock()


def reached(point: str) -> None:
    global _seen
    if not _POINT or point != _POINT:
        return
    with _lock:
        _seen += 1
        fire = _seen == _AFTER if _SIGNAL == signal.SIGSTOP else _seen >= _AFTER
    if fire:  # outside the lock: a frozen process must not hold it when thawed
        # Sent to this very thread: the kernel stops (or kills) it on the way back from the
        # call, before it runs one more instruction. kill(getpid()) lets the kernel pick
        # another thread to take the signal, and this one ran on meanwhile: a "frozen" worker
        # sometimes sent its upload before it stopped, which made the tests' race go either way.
        signal.pthread_kill(threading.get_ident(), _SIGNAL)
