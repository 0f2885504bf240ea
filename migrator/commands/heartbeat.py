"""A command's `runs` row stays "running" only while its process beats it.

Every command that records a run (discover, run, retry, verify) beats its row every few
seconds (model/heartbeat.py) from a thread of its own; when the process dies (SIGKILL, a crash,
its host goes down) the beats stop, and after a lease whoever notices first, on any host,
marks the run interrupted (Store.close_dead_runs).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING

from migrator.model.errors import StateError
from migrator.model.heartbeat import beat_seconds

if TYPE_CHECKING:
    from migrator.store import Store


@contextmanager
def keep_run_alive(store: Store, run_id: int, lease_seconds: float) -> Iterator[None]:
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(beat_seconds(lease_seconds)):
            # the database is away: the run lapses if it stays away, as it should
            with suppress(StateError):
                store.beat_run(run_id, lease_seconds)

    thread = threading.Thread(target=beat, name=f"run-{run_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
