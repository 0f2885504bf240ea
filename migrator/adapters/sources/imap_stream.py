"""A message's raw bytes read from IMAP in partial ranges, so memory stays bounded.

Each refill asks for `BODY.PEEK[]<offset.length>`: PEEK so reading never sets \\Seen, and a
range so a 40 MB message never sits in memory whole (only one range at a time does).
"""

from __future__ import annotations

import io
from collections.abc import Callable

from migrator.model.errors import SourceError
from migrator.model.reasons import Reason

DEFAULT_RANGE = 1024 * 1024

# fetch(offset, length) -> the bytes of that range (fewer at the end, b"" past it)
RangeFetcher = Callable[[int, int], bytes]


class ImapMessageStream(io.RawIOBase):
    """Reads ranges until a short one; then checks the total against the announced size.

    A total that differs from RFC822.SIZE means the server cut the message short or sent
    something else (Dovecot sends an empty body for a message another session expunged):
    `SourceError(Reason.CHANGED)` then, never a silently truncated message.
    """

    def __init__(
        self,
        fetch_range: RangeFetcher,
        expected_size: int,
        describe: str,
        range_size: int = DEFAULT_RANGE,
    ):
        super().__init__()
        self._fetch_range = fetch_range
        self._expected_size = expected_size
        self._describe = describe
        self._range_size = range_size
        self._offset = 0  # next byte to fetch from the server
        self._buffer = memoryview(b"")
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._buffer and not self._eof:
            self._refill()
        count = min(len(target), len(self._buffer))
        target[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]  # a view: no copy of the rest of the range
        return count

    def _refill(self) -> None:
        chunk = self._fetch_range(self._offset, self._range_size)
        self._offset += len(chunk)
        # only a short range ends the message: RFC822.SIZE is what the server announced, and a
        # server that miscounts must not make us cut a message short
        if len(chunk) < self._range_size:
            self._eof = True
            if self._offset != self._expected_size:
                raise SourceError(
                    f"{self._describe}: the server announced {self._expected_size} bytes "
                    f"but sent {self._offset}",
                    reason=Reason.CHANGED,
                    hint="the message was probably deleted or changed on the server; "
                    "list the folder again",
                )
        self._buffer = memoryview(chunk)

    def close(self) -> None:
        self._buffer = memoryview(b"")
        super().close()
