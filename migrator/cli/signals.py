"""Stop requests for long commands: the first Ctrl-C or SIGTERM asks the workers to finish or
abandon their current chunk; a second Ctrl-C exits at once (the ledger keeps the state
consistent either way: in-flight rows are resolved against the target on the next run). A
reader of the output that goes away (`migrator run | head`) is a stop request too."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from migrator.model.errors import EXIT_SIGINT, EXIT_SIGTERM


@dataclass
class StopRequest:
    event: threading.Event = field(default_factory=threading.Event)
    exit_code: int | None = None


@contextmanager
def graceful_stop() -> Iterator[StopRequest]:
    request = StopRequest()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
        if request.event.is_set() and signum == signal.SIGINT:
            sys.stderr.write("second interrupt: exiting now; run again to resume\n")
            sys.stderr.flush()
            os._exit(EXIT_SIGINT)
        request.exit_code = code
        request.event.set()
        sys.stderr.write("stopping: finishing the current chunks (Ctrl-C again to exit at once)\n")
        sys.stderr.flush()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class OutputGuard:
    """Wraps the progress display handed to the engine so that its output cannot fail a worker:
    when the reader of the output goes away (BrokenPipeError), the run is asked to stop as on
    SIGTERM and later output is dropped. The command then ends as a closed pipe ends every
    command (cli/errors.py: quietly, exit 141)."""

    def __init__(self, inner: Any, stop: StopRequest) -> None:
        self._inner = inner
        self._stop = stop
        self._lock = threading.Lock()
        self.closed = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if self.closed:
                return None
            try:
                return attr(*args, **kwargs)
            except BrokenPipeError:
                with self._lock:
                    self.closed = True
                    self._stop.event.set()
                return None

        # kept: the next call finds it without __getattr__ (a run calls these per account)
        self.__dict__[name] = guarded
        return guarded
